-- Bars keyed in the order they arrive: (run_id, time, ticker) instead of (run_id, ticker, time).
-- A streaming run records each time's bars of every ticker together, so under the old key every
-- batch inserted into as many leaf pages as it had tickers, and every comparison went through the
-- ticker's text collation; under this one a batch appends to the right edge of the index and
-- compares the time first. Measured on 400,000 rows (200 tickers × 2,000 times, 2,000 rows a
-- COPY): 2.05-2.07 s against 1.34-1.41 s, of which 0.87 s is the table without any index.
-- The restart's replay (`WHERE run_id = $1 AND time <= $2 ORDER BY time, ticker`) reads the
-- index in its own order; the dashboard's last close of one ticker scans back from the newest
-- time. Natural-key idempotence (ON CONFLICT DO NOTHING) is unchanged: the key's columns are.
DO $$
DECLARE
    key TEXT;
BEGIN
    SELECT c.conname INTO key FROM pg_constraint c
     WHERE c.conrelid = 'bars'::regclass AND c.contype = 'p';
    IF key IS NOT NULL AND (
        SELECT array_agg(a.attname ORDER BY k.ord)
          FROM pg_constraint c
          CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
         WHERE c.conrelid = 'bars'::regclass AND c.contype = 'p'
    ) <> ARRAY['run_id', 'time', 'ticker']::name[] THEN
        EXECUTE format('ALTER TABLE bars DROP CONSTRAINT %I', key);
        ALTER TABLE bars ADD CONSTRAINT bars_pkey PRIMARY KEY (run_id, time, ticker);
    END IF;
END
$$;
