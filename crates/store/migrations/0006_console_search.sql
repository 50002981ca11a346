-- Log search in the console (issue 7, F6 and F13). A search by domain must
-- find every name under it, a suffix match, which no index serves on the
-- name as written; so each event also keeps its host with the labels
-- reversed and a closing dot (`www.example.com` → `com.example.www.`),
-- where "example.com and everything under it" is the prefix
-- `com.example.`, an index range. `{bytewise}` compares bytes on both
-- databases, so that range means the same on PostgreSQL whatever the
-- database's locale.
ALTER TABLE decision_events ADD COLUMN host_key TEXT {bytewise};
CREATE INDEX decision_events_by_host ON decision_events (host_key, at);
CREATE INDEX decision_events_by_device ON decision_events (device_id, at);
CREATE INDEX decision_events_by_group ON decision_events (group_name, at);
CREATE INDEX decision_events_by_category ON decision_events (category, at);
CREATE INDEX decision_events_by_action ON decision_events (action, at);
-- Search terms are on a small share of events: a partial index keeps the
-- scan for a term to those rows.
CREATE INDEX decision_events_with_term ON decision_events (at) WHERE search_term IS NOT NULL;
