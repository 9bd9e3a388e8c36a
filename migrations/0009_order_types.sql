-- Order types, time in force, brackets and partial fills (issue #17). An order now says how it is
-- priced (market, limit, stop, stop_limit, with its limit and stop prices), how long it works
-- (day, gtc, ioc), which entry a bracket leg protects (parent_id), and how many shares it filled
-- before it ended (an order that expired or was cancelled may have filled in part). An order may
-- fill in several parts: a fill is keyed by its order and its part number (seq, from 1).
ALTER TABLE orders
    ADD COLUMN IF NOT EXISTS order_type      TEXT             NOT NULL DEFAULT 'market',
    ADD COLUMN IF NOT EXISTS limit_price     DOUBLE PRECISION,
    ADD COLUMN IF NOT EXISTS stop_price      DOUBLE PRECISION,
    ADD COLUMN IF NOT EXISTS time_in_force   TEXT             NOT NULL DEFAULT 'day',
    ADD COLUMN IF NOT EXISTS parent_id       BIGINT,
    ADD COLUMN IF NOT EXISTS filled_quantity DOUBLE PRECISION NOT NULL DEFAULT 0;

ALTER TABLE fills ADD COLUMN IF NOT EXISTS seq INTEGER NOT NULL DEFAULT 1;
ALTER TABLE fills DROP CONSTRAINT IF EXISTS fills_pkey;
ALTER TABLE fills ADD PRIMARY KEY (run_id, order_id, seq);

-- Orders written before this migration filled whole, in one fill.
UPDATE orders o SET filled_quantity = f.quantity
  FROM fills f
 WHERE f.run_id = o.run_id AND f.order_id = o.order_id AND o.status = 'filled'
   AND o.filled_quantity = 0;
