-- An order decided but never sent (a halt, a maintenance window or the reducing state at send
-- time, or an opening order past [venue] max_intent_age_secs) ends `cancelled` with this reason.
ALTER TABLE orders ADD COLUMN dropped_reason TEXT;
