-- Exactly once at the broker (issue #17). An order bound for a venue (Alpaca, Interactive
-- Brokers) is recorded here in the transaction that commits the decision, before anything sends
-- it. Its client order id is derived from the run and the portfolio's order id, never random: a
-- replay after a crash re-decides the same ids, and the key keeps the first record. The broker
-- process (`fdp broker`) sends only recorded rows, marks a row `sending` (committed) before the
-- request leaves, and after a crash asks the venue what it knows under a row's client id before
-- it sends anything.
--
-- state: recorded → sending → accepted | rejected | halted, then filled | cancelled | expired as
-- the venue reports. `cancel_requested` marks an order the portfolio ended that the venue may
-- still be working.
CREATE TABLE IF NOT EXISTS broker_orders (
    run_id           TEXT             NOT NULL,
    client_order_id  TEXT             NOT NULL,
    order_id         BIGINT           NOT NULL,
    decided_at       TIMESTAMPTZ      NOT NULL,
    ticker           TEXT             NOT NULL,
    side             TEXT             NOT NULL,
    intent           TEXT             NOT NULL,
    quantity         DOUBLE PRECISION NOT NULL,
    order_type       TEXT             NOT NULL,
    limit_price      DOUBLE PRECISION,
    stop_price       DOUBLE PRECISION,
    time_in_force    TEXT             NOT NULL,
    state            TEXT             NOT NULL DEFAULT 'recorded',
    venue_order_id   TEXT,
    reason           TEXT,
    filled_quantity  DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_price        DOUBLE PRECISION,
    cancel_requested BOOLEAN          NOT NULL DEFAULT false,
    recorded_at      TIMESTAMPTZ      NOT NULL DEFAULT now(),
    sent_at          TIMESTAMPTZ,
    answered_at      TIMESTAMPTZ,
    PRIMARY KEY (run_id, client_order_id),
    UNIQUE (run_id, order_id)
);
CREATE INDEX IF NOT EXISTS broker_orders_state ON broker_orders (run_id, state);
GRANT SELECT, INSERT, UPDATE, DELETE ON broker_orders TO fdp_writer;

-- What the venue reported: each order's fills (keyed by the cumulative quantity they bring it to,
-- so the same report heard twice is one row) and its end (keyed `end`), and positions adopted by
-- reconciliation (client_order_id `position:<ticker>`, keyed by the time adopted). The live run takes
-- fills and ends from here (`fed_at`) and books them at that time, replaying them after a restart.
CREATE TABLE IF NOT EXISTS broker_events (
    run_id          TEXT             NOT NULL,
    client_order_id TEXT             NOT NULL,
    event_id        TEXT             NOT NULL,
    kind            TEXT             NOT NULL,
    time            TIMESTAMPTZ      NOT NULL,
    quantity        DOUBLE PRECISION,
    price           DOUBLE PRECISION,
    cumulative      DOUBLE PRECISION,
    status          TEXT,
    reason          TEXT,
    -- The event time (epoch seconds) the run booked it at, recorded before it is fed: its own
    -- time, or the run's floor when it came later. NULL until the run takes it.
    fed_at          BIGINT,
    PRIMARY KEY (run_id, client_order_id, event_id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON broker_events TO fdp_writer;
