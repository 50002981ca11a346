-- Safeguarding incidents (issue 8): the record a concern becomes, following
-- the response flowchart of the school's online safety policy.
--
-- Nothing here is ever deleted by sheepdog: a record past its retention
-- date is listed for review (R7), and its fate is a person's decision.

CREATE TABLE incidents (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    -- INC-2026-0007: what staff, the police and the LADO quote.
    reference TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL,
    summary TEXT NOT NULL,
    description TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    device TEXT,
    location TEXT,
    urgency TEXT NOT NULL CHECK (urgency IN ('routine', 'today', 'immediate')),
    origin TEXT NOT NULL CHECK (origin IN ('concern', 'alert', 'event')),
    alert_id BIGINT REFERENCES monitoring_alerts(id),
    event_id BIGINT,
    -- Whom the concern is about decides who may read it (R4).
    about TEXT NOT NULL CHECK (about IN ('pupil', 'staff', 'headteacher', 'other')),
    route TEXT NOT NULL CHECK (route IN ('dsl', 'headteacher', 'chair_of_governors')),
    -- The flowchart's first question: undecided, illegal or internal.
    path TEXT NOT NULL CHECK (path IN ('undecided', 'illegal', 'internal')),
    illegal_kind TEXT,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    outcome TEXT,
    closing_review TEXT,
    closed_at TEXT,
    closed_by TEXT,
    retention_rule TEXT NOT NULL,
    retain_until TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX incidents_by_school ON incidents (school_id, status, occurred_at);
CREATE INDEX incidents_retention ON incidents (school_id, retain_until);

-- Who an incident involves. `person_id` is empty for someone the school
-- does not hold a record of (described in `description`).
CREATE TABLE incident_people (
    id {id},
    incident_id BIGINT NOT NULL REFERENCES incidents(id),
    person_id BIGINT REFERENCES people(id),
    description TEXT,
    role TEXT NOT NULL CHECK (role IN ('involved', 'subject', 'witness'))
);
CREATE INDEX incident_people_by_person ON incident_people (person_id, incident_id);
CREATE INDEX incident_people_by_incident ON incident_people (incident_id);

-- Everything that happens on an incident after it is opened: the illegal
-- path's fixed steps, the record of review, actions, external referrals,
-- parents and carers informed, notes, closing and reopening. `data` is the
-- entry's JSON; `due_at` and `done_at` are kept as columns so that overdue
-- actions and referrals can be found without reading every entry.
CREATE TABLE incident_entries (
    id {id},
    incident_id BIGINT NOT NULL REFERENCES incidents(id),
    kind TEXT NOT NULL CHECK (kind IN ('step', 'review', 'action', 'referral', 'parent_contact', 'note', 'path', 'close', 'reopen')),
    data TEXT NOT NULL,
    at TEXT NOT NULL,
    due_at TEXT,
    done_at TEXT,
    done_by TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX incident_entries_by_incident ON incident_entries (incident_id, at);
CREATE INDEX incident_entries_open ON incident_entries (kind, done_at, due_at);

-- Evidence, sealed (XChaCha20-Poly1305) with the deployment's evidence key;
-- the SHA-256 of the original is taken at upload and checked on every
-- opening. Who opened it is in the audit log (entity `evidence`), which is
-- the chain of custody.
CREATE TABLE incident_evidence (
    id {id},
    incident_id BIGINT NOT NULL REFERENCES incidents(id),
    file_name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    nonce TEXT NOT NULL,
    sealed {blob} NOT NULL,
    description TEXT,
    uploaded_by TEXT NOT NULL,
    uploaded_at TEXT NOT NULL
);
CREATE INDEX incident_evidence_by_incident ON incident_evidence (incident_id);
