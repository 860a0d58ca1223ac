-- Trading state per scope: '' is the whole account, otherwise a symbol. No row means active.
CREATE TABLE trading_state (
    scope  TEXT PRIMARY KEY,
    state  TEXT NOT NULL,          -- active | reducing | halted
    reason TEXT NOT NULL,
    since  TEXT NOT NULL,
    set_by TEXT NOT NULL           -- operator | daily_loss | drawdown | margin_ratio | alert
);

-- system.maintenance windows; a notice with the same key updates its window.
CREATE TABLE maintenance_windows (
    window_key    TEXT PRIMARY KEY,
    start_at      TEXT NOT NULL,
    end_at        TEXT NOT NULL,
    services      TEXT NOT NULL,   -- JSON array
    description   TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    reconciled_at TEXT             -- set when a full reconciliation completed after end + settle
);

-- Size factors from system.alert; scope '' applies to every symbol.
CREATE TABLE size_scales (
    scope  TEXT PRIMARY KEY,
    factor TEXT NOT NULL,
    until  TEXT NOT NULL,
    reason TEXT NOT NULL
);

-- Realized PnL per booked fill, for the daily realized-loss limit.
CREATE TABLE realized_pnl (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    at              TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    amount          TEXT NOT NULL,
    client_order_id TEXT NOT NULL
);
CREATE INDEX realized_pnl_by_time ON realized_pnl (at);

-- Small named values the risk manager keeps (the equity peak).
CREATE TABLE risk_values (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

ALTER TABLE venue_positions ADD COLUMN margin_ratio TEXT;

-- Protective exits: an entry carries the stop and target taken from its signal; once it has
-- filled, a stop-loss (type stop) and a take-profit (type limit) are placed as children.
ALTER TABLE orders ADD COLUMN role TEXT NOT NULL DEFAULT 'entry';  -- entry | stop_loss | take_profit
ALTER TABLE orders ADD COLUMN parent_client_order_id TEXT;
ALTER TABLE orders ADD COLUMN stop_price TEXT;
ALTER TABLE orders ADD COLUMN protect_stop TEXT;
ALTER TABLE orders ADD COLUMN protect_target TEXT;
ALTER TABLE orders ADD COLUMN protection_done INTEGER NOT NULL DEFAULT 0;
