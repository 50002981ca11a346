-- Temporary unblock requests (issue 9, F8): a member of staff asks for a
-- site or URL for a policy group, for a lesson, with a reason and a time
-- frame; an approver decides. An approved request is a time-bound
-- exception that the running policy applies between `starts_at` and
-- `ends_at`, and drops at the end without anyone acting.
CREATE TABLE unblock_requests (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    reference TEXT NOT NULL UNIQUE,
    requested_by TEXT NOT NULL,
    requester_account BIGINT REFERENCES accounts(id),
    target TEXT NOT NULL,
    policy_group TEXT NOT NULL,
    class_name TEXT,
    reason TEXT NOT NULL,
    purpose TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    -- refused: the system turned it down (an illegal category) before any
    -- person saw it; the reason says why.
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'withdrawn', 'refused')),
    decided_by TEXT,
    decided_at TEXT,
    comment TEXT,
    category TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX unblock_requests_by_status ON unblock_requests (school_id, status, ends_at);
CREATE INDEX unblock_requests_by_requester ON unblock_requests (requester_account, created_at);
