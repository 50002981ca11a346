-- Issue 9: the filtering policy file as last applied, so an edit made in
-- the file is put on the change log like one made in the console. Each
-- apply (`sheepdog policy apply`, or an edit found when sheepdog starts)
-- adds a row; the newest row is the copy the next apply is compared with.
-- `policy` is canonical JSON of the policy document (keys sorted), and the
-- item-by-item differences are in the audit log, written in the same
-- transaction as the row.
CREATE TABLE applied_policies (
    id {id},
    policy TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    reason TEXT NOT NULL
);
