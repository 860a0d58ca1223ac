-- Fills as the venue lists them (`GET /orders/{id}` fills[]), one row per fill id: a fill listed
-- again is not recorded again. `fee` is NULL when the venue did not report one.
CREATE TABLE fills (
    client_order_id TEXT NOT NULL,
    fill_id         TEXT NOT NULL,
    quantity        TEXT NOT NULL,
    price           TEXT NOT NULL,
    fee             TEXT,
    filled_at       TEXT,
    recorded_at     TEXT NOT NULL,
    PRIMARY KEY (client_order_id, fill_id)
);

-- Fees booked for an order so far (reported fees, and an estimate for fills whose fee is not
-- known yet); corrections book the difference. `fills_settled_at`: the venue's fill list was read
-- after the order ended, so its fees are final.
ALTER TABLE orders ADD COLUMN fees_booked TEXT NOT NULL DEFAULT '0';
ALTER TABLE orders ADD COLUMN fills_settled_at TEXT;
CREATE INDEX orders_unsettled ON orders (updated_at)
    WHERE fills_settled_at IS NULL AND average_price IS NOT NULL;
-- Orders that ended before this migration keep the fees they were booked with.
UPDATE orders SET fills_settled_at = updated_at
    WHERE status IN ('filled', 'cancelled', 'rejected', 'expired');

-- Fees per symbol (realized PnL net of fees is realized_pnl - fees), and the gross realized PnL of
-- the position since it was last opened from flat.
ALTER TABLE positions ADD COLUMN fees TEXT NOT NULL DEFAULT '0';
ALTER TABLE positions ADD COLUMN episode_realized TEXT NOT NULL DEFAULT '0';

-- Every position that went back to flat (or reversed), by our fills, and what the venue's
-- `position.closed` said about it: both views are kept, checked or not.
CREATE TABLE closed_positions (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol         TEXT NOT NULL,
    side           TEXT NOT NULL,          -- long | short
    entry_price    TEXT NOT NULL,
    realized_pnl   TEXT NOT NULL,          -- ours, gross of fees
    closed_at      TEXT NOT NULL,
    venue_realized TEXT,                   -- position.closed realizedPnl, once matched
    venue_seq      INTEGER,                -- the inbox event that carried it
    drift          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX closed_positions_unmatched ON closed_positions (symbol, seq) WHERE venue_realized IS NULL;

-- The fee rates of the running configuration ('' = every symbol not listed), rewritten at each
-- start: fills whose fee the venue does not report are charged this many basis points.
CREATE TABLE fee_rates (
    symbol  TEXT PRIMARY KEY,
    fee_bps TEXT NOT NULL
);
