-- Cancel-and-replace at the venue (issue #17). A bracket leg re-priced after a further part of
-- its entry filled is recorded as a new order whose `replaces` names the client order id of the
-- leg it replaces; `fdp broker` sends it as the venue's replace of that order (Alpaca's PATCH, a
-- new order id; IBKR's modify, the same one) once the old one is accepted, and ends the old one
-- then. `state` gains `paper` (a row routed to the paper broker by `failover = "paper"`).
ALTER TABLE broker_orders ADD COLUMN IF NOT EXISTS replaces TEXT;
