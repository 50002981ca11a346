-- Issue 9: what a technician did with an over-blocking report from the
-- block page: allowed the site for a group (the exception is an approved
-- unblock request, `request_id`) or kept it blocked, with a reason. The
-- change log itself is the audit log (who, when, before, after, reason),
-- read through `Store::filtering_changes`; no second copy is kept.
ALTER TABLE block_reports ADD COLUMN resolution TEXT;
ALTER TABLE block_reports ADD COLUMN resolved_by TEXT;
ALTER TABLE block_reports ADD COLUMN resolved_at TEXT;
ALTER TABLE block_reports ADD COLUMN resolution_reason TEXT;
ALTER TABLE block_reports ADD COLUMN request_id BIGINT;

-- Approvers told of a new request by email: one row per approver, written
-- in the request's transaction, kept until sent; a failure is retried
-- later, so a mail server that is down never blocks or loses a request.
CREATE TABLE request_notices (
    id {id},
    request_id BIGINT NOT NULL REFERENCES unblock_requests(id),
    address TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT
);
CREATE INDEX request_notices_due ON request_notices (sent_at, next_attempt_at);
