-- DNS and proxy decision events (issue 4). One row per decision, written in
-- batches by the event writer. Events outlive the records they name: a
-- device or person deleted later must not take the history with it, so the
-- ids here carry no foreign keys. `at` is fixed-width UTC text, so text
-- order is time order and retention pruning is a range delete.
CREATE TABLE decision_events (
    id {id},
    at TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('dns', 'proxy')),
    client TEXT NOT NULL,
    device_id BIGINT,
    device_name TEXT,
    person_id BIGINT,
    group_name TEXT,
    target TEXT NOT NULL,
    query_type TEXT,
    action TEXT NOT NULL,
    illegal BIGINT NOT NULL DEFAULT 0,
    category TEXT,
    list_name TEXT,
    rule TEXT,
    upstream_ms BIGINT,
    search_term TEXT
);
CREATE INDEX decision_events_by_time ON decision_events (at);
CREATE INDEX decision_events_by_person ON decision_events (person_id, at);
CREATE INDEX decision_events_by_client ON decision_events (client, at);
