-- Deposits and withdrawals as the venue reported them (account.deposit_received,
-- account.withdrawal_processed).
CREATE TABLE account_transactions (
    transaction_id TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    asset          TEXT NOT NULL,
    amount         TEXT NOT NULL,
    method         TEXT,
    status         TEXT,
    occurred_at    TEXT,
    event_seq      INTEGER NOT NULL
);

-- Retention prunes processed events by age.
CREATE INDEX inbox_by_received ON inbox (status, received_at);
