-- State that only moves forward is applied only when it is not older than what is held: when the
-- venue said it (a webhook's signed timestamp, or the time of a REST snapshot). NULL: held from
-- before this migration, older than any report.
ALTER TABLE balances ADD COLUMN as_of TEXT;
ALTER TABLE venue_positions ADD COLUMN as_of TEXT;
ALTER TABLE maintenance_windows ADD COLUMN notice_at TEXT;
