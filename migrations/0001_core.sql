-- findashpro core schema: the audit trail, signals (time-partitioned), orders, fills, positions,
-- ml_metrics. Every write is idempotent through natural keys (ON CONFLICT DO NOTHING).

CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGSERIAL PRIMARY KEY,
    event_type  TEXT        NOT NULL,
    data        JSONB       NOT NULL,
    actor       TEXT        NOT NULL DEFAULT current_user,
    origin_ip   INET,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The database itself keeps audit_log append-only.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS audit_log_no_update_delete ON audit_log;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Signals: a TimescaleDB hypertable when the extension is installed, else native yearly range
-- partitions (1990-2040) plus a default partition.
DO $$
BEGIN
    IF to_regclass('signals') IS NULL THEN
        IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            CREATE TABLE signals (
                run_id           TEXT             NOT NULL,
                ticker           TEXT             NOT NULL,
                time             TIMESTAMPTZ      NOT NULL,
                action           TEXT             NOT NULL,
                confidence       DOUBLE PRECISION NOT NULL,
                predicted_return DOUBLE PRECISION,
                execution_status TEXT             NOT NULL DEFAULT 'pending',
                PRIMARY KEY (run_id, ticker, time)
            );
            PERFORM create_hypertable('signals', 'time');
        ELSE
            CREATE TABLE signals (
                run_id           TEXT             NOT NULL,
                ticker           TEXT             NOT NULL,
                time             TIMESTAMPTZ      NOT NULL,
                action           TEXT             NOT NULL,
                confidence       DOUBLE PRECISION NOT NULL,
                predicted_return DOUBLE PRECISION,
                execution_status TEXT             NOT NULL DEFAULT 'pending',
                PRIMARY KEY (run_id, ticker, time)
            ) PARTITION BY RANGE (time);
            FOR y IN 1990..2040 LOOP
                EXECUTE format(
                    'CREATE TABLE signals_%s PARTITION OF signals FOR VALUES FROM (%L) TO (%L)',
                    y, make_date(y, 1, 1), make_date(y + 1, 1, 1));
            END LOOP;
            CREATE TABLE signals_default PARTITION OF signals DEFAULT;
        END IF;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS orders (
    run_id        TEXT             NOT NULL,
    order_id      BIGINT           NOT NULL,
    time          TIMESTAMPTZ      NOT NULL,
    ticker        TEXT             NOT NULL,
    side          TEXT             NOT NULL,
    intent        TEXT             NOT NULL,
    size_fraction DOUBLE PRECISION,
    status        TEXT             NOT NULL,
    reason        TEXT             NOT NULL,
    PRIMARY KEY (run_id, order_id)
);

CREATE TABLE IF NOT EXISTS fills (
    run_id     TEXT             NOT NULL,
    order_id   BIGINT           NOT NULL,
    time       TIMESTAMPTZ      NOT NULL,
    ticker     TEXT             NOT NULL,
    side       TEXT             NOT NULL,
    quantity   DOUBLE PRECISION NOT NULL,
    price      DOUBLE PRECISION NOT NULL,
    commission DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, order_id)
);

CREATE TABLE IF NOT EXISTS positions (
    run_id      TEXT             NOT NULL,
    ticker      TEXT             NOT NULL,
    time        TIMESTAMPTZ      NOT NULL,
    quantity    DOUBLE PRECISION NOT NULL,
    entry_price DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, ticker, time)
);

CREATE TABLE IF NOT EXISTS ml_metrics (
    run_id     TEXT        NOT NULL,
    model_id   TEXT        NOT NULL,
    trained_at TIMESTAMPTZ NOT NULL,
    model      TEXT        NOT NULL,
    metrics    JSONB       NOT NULL,
    PRIMARY KEY (run_id, model_id, model)
);
