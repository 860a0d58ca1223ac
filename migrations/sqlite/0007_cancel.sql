-- A cancel request (DELETE /orders/{orderId}) is durable like an order intent: a restart resumes a
-- cancel in flight instead of forgetting it. `cancel_state`: requested (not sent yet), unknown (sent,
-- outcome not known: ask the venue before sending again), accepted (the order is no longer working
-- at the venue), rejected (the venue refused to cancel a working order; code and message kept).
ALTER TABLE orders ADD COLUMN cancel_state TEXT;
ALTER TABLE orders ADD COLUMN cancel_reason TEXT;
ALTER TABLE orders ADD COLUMN cancel_requested_at TEXT;
ALTER TABLE orders ADD COLUMN cancel_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN cancel_next_at TEXT;
ALTER TABLE orders ADD COLUMN cancel_error TEXT;
ALTER TABLE orders ADD COLUMN cancel_done_at TEXT;
-- Only open cancel requests are indexed.
CREATE INDEX orders_cancel_due ON orders (cancel_next_at) WHERE cancel_next_at IS NOT NULL;
