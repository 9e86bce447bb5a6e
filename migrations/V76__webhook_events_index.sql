-- V76: a range stub's webhook events are found by an index, not by reading the range.
--
-- app.webhook_changes_in (V75) reads the webhook events among a range stub's seqs: every
-- server's wake-up listener calls it for every transaction too large to announce (bulk
-- writes), and a primary-key range scan read every event of the range to find the few (if
-- any) of public.webhooks. A partial index holds only those: an event of any other table
-- adds no index entry, only the predicate test.
CREATE INDEX events_webhooks_seq_idx ON app.events (seq) WHERE table_name = 'webhooks';
COMMENT ON INDEX app.events_webhooks_seq_idx IS
    'The events of public.webhooks by seq: a range stub''s webhook changes (app.webhook_changes_in).';
