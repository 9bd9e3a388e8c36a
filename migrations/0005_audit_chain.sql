-- The audit log, tamper-evident and guarded by roles.
--
-- Each row carries `seq` (1, 2, 3, … with no gap), `prev_hash` (the previous row's hash) and `hash`
-- = SHA-256 of the previous hash and the row's fields, set by a trigger under a lock that orders
-- concurrent writers. `fdp audit verify` recomputes every link from the rows' text, outside the
-- database, and reports the first broken one: an edited, deleted or inserted row shows even when
-- the append-only triggers were disabled to do it.
--
-- Roles: `fdp_owner` owns the audit log (only an owner or a superuser can disable its triggers),
-- `fdp_writer` may read everything and write the ledger but only INSERT into the audit log. Runs
-- switch to `fdp_writer` after connecting; connect as a login member of it (not a superuser) to
-- make that binding.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fdp_owner') THEN
        CREATE ROLE fdp_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fdp_writer') THEN
        CREATE ROLE fdp_writer NOLOGIN;
    END IF;
END
$$;
GRANT fdp_writer TO CURRENT_USER;

ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS seq BIGINT;
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS hash TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS audit_log_seq ON audit_log (seq);

-- The text a link hashes: fields joined by the unit separator, the time in UTC to the microsecond.
CREATE OR REPLACE FUNCTION audit_log_link(prev TEXT, r audit_log) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws(E'\x1f',
        prev, r.seq::text, r.event_type, r.data::text, r.actor, coalesce(host(r.origin_ip), ''),
        to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')), 'UTF8')), 'hex')
$$;

CREATE OR REPLACE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq BIGINT;
    last_hash TEXT;
BEGIN
    -- One writer at a time links a row (held to the end of its transaction).
    PERFORM pg_advisory_xact_lock(7382958271);
    SELECT seq, hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, '');
    NEW.hash := audit_log_link(NEW.prev_hash, NEW);
    RETURN NEW;
END
$$;

-- Rows written before this migration are linked once, in id order.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete;
DO $$
DECLARE
    r audit_log;
    prev TEXT := '';
    n BIGINT := 0;
BEGIN
    FOR r IN SELECT * FROM audit_log WHERE seq IS NULL ORDER BY id LOOP
        n := n + 1;
        r.seq := n;
        UPDATE audit_log SET seq = n, prev_hash = prev, hash = audit_log_link(prev, r) WHERE id = r.id;
        prev := audit_log_link(prev, r);
    END LOOP;
END
$$;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete;

DROP TRIGGER IF EXISTS audit_log_chain ON audit_log;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

ALTER TABLE audit_log OWNER TO fdp_owner;
ALTER SEQUENCE audit_log_id_seq OWNER TO fdp_owner;
GRANT USAGE ON SCHEMA public TO fdp_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO fdp_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO fdp_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM fdp_writer;
GRANT SELECT, INSERT ON audit_log TO fdp_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO fdp_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO fdp_writer;
