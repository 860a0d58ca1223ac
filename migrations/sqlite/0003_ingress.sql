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

-- Only rows that still need work are indexed: marking an event processed then removes one small
-- index entry instead of rewriting an index over every event ever received.
DROP INDEX inbox_by_status;
CREATE INDEX inbox_pending ON inbox (seq) WHERE status = 'pending';
CREATE INDEX inbox_deferred ON inbox (seq) WHERE status = 'deferred';
