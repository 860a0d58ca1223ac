-- What a signal's decision reads must not grow with the number of orders ever placed.

-- Working (non-terminal) orders only: the open-order count and every symbol's working exposure
-- scan this small index instead of the whole order history. A query uses it when its WHERE holds
-- the same `status NOT IN (...)` term.
CREATE INDEX orders_working ON orders (status, symbol, role)
    WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired');
-- Orders created in the last minute (the per-minute limit).
CREATE INDEX orders_by_created ON orders (created_at);
-- The newest order of a strategy on a symbol (the cooldown).
CREATE INDEX orders_by_strategy_symbol ON orders (strategy, symbol, created_at);

-- The realized-PnL ledger summed per UTC day (`YYYY-MM-DD`), so the daily loss limit reads one
-- row instead of every fill of the day. Kept in step by the code that writes the ledger, in the
-- same transaction. `amount` is exact decimal text; NULL means "not summed yet": days already in
-- the ledger when this migration ran get NULL and are summed from the ledger, exactly, when read
-- or written next (SQL arithmetic on these texts would go through floating point).
CREATE TABLE realized_daily (
    day    TEXT PRIMARY KEY,
    amount TEXT
);
INSERT INTO realized_daily (day, amount)
    SELECT DISTINCT substr(at, 1, 10), NULL FROM realized_pnl;
