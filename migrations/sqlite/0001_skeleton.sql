-- Durable inbox of raw webhook events. A row exists before the venue gets its 200.
CREATE TABLE inbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key   TEXT    NOT NULL UNIQUE,
    event_type   TEXT    NOT NULL,
    received_at  TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    -- pending | processed | deferred | dead
    status       TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    processed_at TEXT
);
CREATE INDEX inbox_by_status ON inbox (status, seq);

-- One decision per (signal, strategy); strategy '' when no strategy trades the symbol.
CREATE TABLE signal_decisions (
    inbox_seq       INTEGER NOT NULL REFERENCES inbox (seq),
    strategy        TEXT    NOT NULL,
    received_at     TEXT    NOT NULL,
    symbol          TEXT    NOT NULL,
    recommendation  TEXT    NOT NULL,
    confidence      INTEGER NOT NULL,
    decision        TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    client_order_id TEXT,
    PRIMARY KEY (inbox_seq, strategy)
);

-- Orders, written as intents before any HTTP call. Decimals are stored as exact text.
CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    venue_order_id  TEXT UNIQUE,
    strategy        TEXT    NOT NULL,
    signal_seq      INTEGER,
    symbol          TEXT    NOT NULL,
    side            TEXT    NOT NULL,
    order_type      TEXT    NOT NULL,
    quantity        TEXT    NOT NULL,
    price           TEXT,
    time_in_force   TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    venue_status    TEXT,
    filled_quantity TEXT    NOT NULL DEFAULT '0',
    average_price   TEXT,
    reject_code     TEXT,
    reject_message  TEXT,
    submit_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX orders_by_status ON orders (status);
CREATE INDEX orders_by_symbol ON orders (symbol, status);

-- Positions as computed locally from our fills.
CREATE TABLE positions (
    symbol        TEXT PRIMARY KEY,
    quantity      TEXT NOT NULL,
    average_price TEXT NOT NULL,
    realized_pnl  TEXT NOT NULL,
    last_price    TEXT,
    updated_at    TEXT NOT NULL
);

-- Positions and balances as the venue last reported them (position.*, account.*).
CREATE TABLE venue_positions (
    symbol         TEXT PRIMARY KEY,
    side           TEXT,
    quantity       TEXT NOT NULL,
    average_price  TEXT,
    unrealized_pnl TEXT,
    mark_price     TEXT,
    realized_pnl   TEXT,
    updated_at     TEXT NOT NULL
);

CREATE TABLE balances (
    asset      TEXT PRIMARY KEY,
    available  TEXT NOT NULL,
    locked     TEXT NOT NULL,
    total      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
