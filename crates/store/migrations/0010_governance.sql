-- Governance records (issue 10, G2–G7, M4): acceptable use agreements and
-- their signatures, image consent per purpose, training, the policy
-- register, the yearly filtering and monitoring review, and the asset
-- register. Dates the school writes (a course taken, a review due) are
-- `YYYY-MM-DD`; times the system records are fixed-width UTC text.

-- Files kept with a record: a scanned paper agreement, a training
-- certificate, a certificate of secure deletion.
CREATE TABLE governance_files (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    content {blob} NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Each audience's agreement, versioned: a new version is a new row, and
-- only signatures of the newest version count as current.
CREATE TABLE agreement_templates (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    audience TEXT NOT NULL CHECK (audience IN ('young_pupils', 'older_pupils', 'staff', 'parents', 'community')),
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    published_by TEXT NOT NULL,
    published_at TEXT NOT NULL,
    UNIQUE (school_id, audience, version)
);

CREATE TABLE agreement_signatures (
    id {id},
    template_id BIGINT NOT NULL REFERENCES agreement_templates(id),
    -- Whom the agreement covers.
    person_id BIGINT NOT NULL REFERENCES people(id),
    -- Who signed: the person, or a parent or carer on a pupil's behalf.
    signer_person_id BIGINT REFERENCES people(id),
    signer_name TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('online', 'paper')),
    scan_file_id BIGINT REFERENCES governance_files(id),
    address TEXT,
    signed_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE INDEX agreement_signatures_by_person ON agreement_signatures (person_id, signed_at);

-- The school's image consent purposes; with none stored the shipped list
-- applies.
CREATE TABLE consent_purposes (
    school_id BIGINT NOT NULL REFERENCES schools(id),
    purpose TEXT NOT NULL,
    title TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (school_id, purpose)
);

-- One row per answer; the newest row for a pupil and purpose is in force.
CREATE TABLE image_consents (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    pupil_id BIGINT NOT NULL REFERENCES people(id),
    purpose TEXT NOT NULL,
    granted BIGINT NOT NULL,
    given_by_person_id BIGINT REFERENCES people(id),
    given_by_name TEXT NOT NULL,
    given_on TEXT NOT NULL,
    expires_on TEXT,
    withdrawn_at TEXT,
    withdrawn_by TEXT,
    withdrawal_note TEXT,
    recorded_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX image_consents_by_pupil ON image_consents (pupil_id, purpose, id);

CREATE TABLE training_records (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    person_id BIGINT NOT NULL REFERENCES people(id),
    kind TEXT NOT NULL CHECK (kind IN ('induction', 'online_safety_update', 'dsl_refresher', 'prevent', 'governor')),
    completed_on TEXT NOT NULL,
    provider TEXT NOT NULL,
    evidence_file_id BIGINT REFERENCES governance_files(id),
    expires_on TEXT,
    recorded_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX training_by_person ON training_records (person_id, kind, completed_on);

CREATE TABLE policy_register (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    title TEXT NOT NULL,
    owner TEXT NOT NULL,
    approver TEXT NOT NULL,
    written_on TEXT NOT NULL,
    last_reviewed_on TEXT,
    next_review_on TEXT NOT NULL,
    notes TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (school_id, title)
);

-- The yearly filtering and monitoring review (G5); participants, inputs
-- and decisions are JSON documents of the shapes in governance/policies.rs.
CREATE TABLE filtering_reviews (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    held_on TEXT NOT NULL,
    participants TEXT NOT NULL,
    inputs TEXT NOT NULL,
    decisions TEXT NOT NULL,
    next_review_on TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE assets (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    kind TEXT NOT NULL CHECK (kind IN ('hardware', 'software')),
    tag TEXT NOT NULL,
    description TEXT NOT NULL,
    assigned_person_id BIGINT REFERENCES people(id),
    location TEXT,
    encryption TEXT NOT NULL CHECK (encryption IN ('encrypted', 'not_encrypted', 'not_applicable', 'unknown')),
    licence TEXT,
    status TEXT NOT NULL CHECK (status IN ('in_use', 'in_store', 'disposed')),
    returned_on TEXT,
    disposed_on TEXT,
    disposal_method TEXT,
    certificate_file_id BIGINT REFERENCES governance_files(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (school_id, tag)
);
CREATE INDEX assets_by_person ON assets (assigned_person_id);

-- One reminder email per school and week: overdue training, policies due
-- for review, agreements to renew.
CREATE TABLE governance_reminders (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    period TEXT NOT NULL,
    summary TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    UNIQUE (school_id, period)
);
