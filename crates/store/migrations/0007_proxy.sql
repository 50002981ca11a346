-- Proxy (issue 5): "report wrongly blocked" from the block page, kept for
-- the technicians. A report quotes the block's reference number, which
-- leads to the decision event; like events, it carries no foreign keys, so
-- a report outlives the device or person it came from.
CREATE TABLE block_reports (
    id {id},
    at TEXT NOT NULL,
    reference TEXT NOT NULL,
    client TEXT NOT NULL,
    person_id BIGINT,
    group_name TEXT,
    site TEXT NOT NULL,
    category TEXT,
    comment TEXT NOT NULL,
    -- 'open' until a technician has looked at it, then 'closed'.
    status TEXT NOT NULL CHECK (status IN ('open', 'closed'))
);
CREATE INDEX block_reports_by_time ON block_reports (at);
