-- Dedupe keys now come from signed bytes only: `json:` + SHA-256 of the body's canonical JSON
-- (`raw:` + SHA-256 of the bytes for a body that is not JSON). Events stored before this keep the
-- key they were decided under as their identity (`legacy_key` when their dedupe key is replaced,
-- else the dedupe key itself), so processing one again derives the clientOrderIds it derived
-- before. The ones recent enough for the venue to still retry get the new dedupe key once, at the
-- next start (`Store::rekey_legacy_events`, up to `through_seq`), so a retry that crosses the
-- upgrade is still a duplicate.
ALTER TABLE inbox ADD COLUMN legacy_key TEXT;
-- `X-Webhook-Id` as the venue sent it: shown, never used as a key (the header is not signed).
ALTER TABLE inbox ADD COLUMN webhook_id TEXT;
CREATE TABLE inbox_rekey (through_seq INTEGER NOT NULL);
INSERT INTO inbox_rekey (through_seq) SELECT seq FROM inbox ORDER BY seq DESC LIMIT 1;
