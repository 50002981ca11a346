-- Core records. `{id}` becomes the dialect's auto-numbered primary key;
-- everything else is SQL that SQLite and PostgreSQL read alike. Times are
-- UTC RFC 3339 text with a fixed width, so they sort as text.

CREATE TABLE schools (
    id {id},
    urn TEXT UNIQUE,
    name TEXT NOT NULL,
    timezone TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE people (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    kind TEXT NOT NULL CHECK (kind IN ('pupil', 'staff', 'parent', 'governor', 'visitor')),
    external_id TEXT,
    upn TEXT,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    date_of_birth TEXT,
    year_group TEXT,
    class_name TEXT,
    email TEXT,
    active BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (school_id, upn),
    UNIQUE (school_id, kind, external_id)
);
CREATE INDEX people_by_name ON people (school_id, family_name, given_name);

CREATE TABLE staff_roles (
    person_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (person_id, role)
);

CREATE TABLE guardianships (
    parent_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    pupil_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    relationship TEXT NOT NULL,
    parental_responsibility BIGINT NOT NULL,
    contact_priority BIGINT,
    PRIMARY KEY (parent_id, pupil_id)
);

CREATE TABLE groups (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('filtering', 'year', 'class', 'custom')),
    filtering_profile TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (school_id, name)
);

CREATE TABLE group_members (
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    person_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, person_id)
);

CREATE TABLE devices (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    name TEXT NOT NULL,
    mac TEXT,
    address TEXT,
    owner_id BIGINT REFERENCES people(id),
    group_id BIGINT REFERENCES groups(id),
    ownership TEXT NOT NULL CHECK (ownership IN ('school', 'byod', 'guest')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (school_id, name)
);

CREATE TABLE accounts (
    id {id},
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    person_id BIGINT REFERENCES people(id),
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE account_roles (
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- NULL: the role holds across every school of the deployment (a trust).
    school_id BIGINT REFERENCES schools(id),
    role TEXT NOT NULL
);
CREATE UNIQUE INDEX account_roles_unique ON account_roles (account_id, COALESCE(school_id, 0), role);

-- Append-only: each row's hash covers its content and the previous row's
-- hash, and audit_anchor holds the newest (seq, hash), so an edited,
-- deleted or truncated history is detected by `sheepdog audit verify`.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT,
    before_state TEXT,
    after_state TEXT,
    reason TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_entity ON audit_log (entity, entity_id);

CREATE TABLE audit_anchor (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    touched_at TEXT NOT NULL
);
INSERT INTO audit_anchor (id, seq, hash, touched_at) VALUES (1, 0, '', '');
