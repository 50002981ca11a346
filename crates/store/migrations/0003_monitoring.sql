-- Monitoring (issue 6): alerts raised from keyword hits, and the outbox of
-- notifications owed to the DSL team.
--
-- An alert is one concern about one subject (a person where known, else a
-- device or an address) in one category. Repeats within the throttle window
-- merge into the open alert (occurrences, last_at, the worst grade) rather
-- than flooding the DSL. Event ids point into decision_events without a
-- foreign key, because events are pruned on their own retention schedule;
-- `context` keeps a copy of the surrounding events as seen at the time.
CREATE TABLE monitoring_alerts (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    person_id BIGINT REFERENCES people(id),
    subject TEXT NOT NULL,
    device_id BIGINT REFERENCES devices(id),
    device_name TEXT,
    address TEXT,
    category TEXT NOT NULL,
    grade BIGINT NOT NULL CHECK (grade BETWEEN 1 AND 5),
    matched_text TEXT NOT NULL,
    source TEXT NOT NULL,
    first_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    occurrences BIGINT NOT NULL,
    event_ids TEXT NOT NULL,
    context TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('new', 'acknowledged', 'dismissed', 'escalated')),
    status_reason TEXT,
    status_by TEXT,
    status_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX monitoring_alerts_triage ON monitoring_alerts (school_id, status, grade, last_at);
CREATE INDEX monitoring_alerts_dedup ON monitoring_alerts (school_id, subject, category, last_at);
CREATE INDEX monitoring_alerts_by_person ON monitoring_alerts (person_id, first_at);

-- Written in the same transaction as the alert that needs it, and deleted
-- never: a notification is marked sent, or its failure and next attempt are
-- recorded, so a mail server being down cannot lose an alert.
CREATE TABLE monitoring_notifications (
    id {id},
    alert_id BIGINT NOT NULL REFERENCES monitoring_alerts(id),
    reason TEXT NOT NULL CHECK (reason IN ('new', 'raised')),
    grade BIGINT NOT NULL,
    due_at TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX monitoring_notifications_due ON monitoring_notifications (sent_at, due_at);
