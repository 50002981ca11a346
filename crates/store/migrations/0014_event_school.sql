-- The school a decision was made for (its device's or signed-in person's),
-- so that a school's own staff in a trust can search their school's log
-- and no other's. Empty for clients nobody registered, which only a
-- trust-wide role sees. No index: a school's search is always bounded by
-- time or by an indexed filter, and every index costs the event writer on
-- each insert (docs/benchmarks.md, DNS, session 6).
ALTER TABLE decision_events ADD COLUMN school_id BIGINT;
