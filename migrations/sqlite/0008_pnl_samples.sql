-- The market price the bot last read for a symbol it holds (`GET /market/price/{symbol}`), so
-- unrealized PnL has one mark everywhere (console, API, dashboard), fresher than the last fill.
CREATE TABLE marks (
    symbol TEXT PRIMARY KEY,
    price  TEXT NOT NULL,
    at     TEXT NOT NULL
);

-- PnL taken at regular times (`[admin] pnl_sample_secs`): the dashboard's curve. Totals over every
-- symbol; `unrealized` at the marks above; pruned after `[inbox] retention_days`.
CREATE TABLE pnl_samples (
    at         TEXT PRIMARY KEY,
    realized   TEXT NOT NULL,
    unrealized TEXT NOT NULL,
    fees       TEXT NOT NULL
);
