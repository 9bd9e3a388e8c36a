-- Every rejected message keeps its own quarantine row.
--
-- `origin` is the input a rejected bar or row came in: a Redis stream entry id, a `file:line`, or
-- '' when the source has no finer identity. In the key, the same bad bar sent three times leaves
-- three rows (before, the key (run_id, ticker, ts, reason) collapsed them into one while the
-- metrics counted three), and a message redelivered after a crash still leaves one.
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS origin TEXT NOT NULL DEFAULT '';
ALTER TABLE quarantine DROP CONSTRAINT IF EXISTS quarantine_pkey;
ALTER TABLE quarantine ADD PRIMARY KEY (run_id, ticker, ts, reason, origin);
