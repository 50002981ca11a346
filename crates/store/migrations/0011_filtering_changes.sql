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
