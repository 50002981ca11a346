-- Monitoring delivery (issue 6): the weekly digest to the DSL, one row per
-- school and ISO week once it has gone out, so a restart in the same week
-- does not send it twice and a server that was down at the hour sends it
-- when it comes back.
CREATE TABLE monitoring_digests (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    week TEXT NOT NULL,
    alerts BIGINT NOT NULL,
    sent_at TEXT NOT NULL,
    UNIQUE (school_id, week)
);
