-- Console sign-in (issue 7): sessions, sign-in throttling, two-factor
-- secrets and recovery codes, API tokens. Session and API tokens and
-- recovery codes are stored only as SHA-256 hashes: they are random and
-- long, so a fast hash is enough, and a copy of the database does not let
-- anyone sign in with them.

CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- 'second_factor', 'enrolment' or 'signed_in'.
    stage TEXT NOT NULL CHECK (stage IN ('second_factor', 'enrolment', 'signed_in')),
    csrf_token TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX console_sessions_by_account ON console_sessions (account_id);

-- Failed sign-ins counted per key: 'user:NAME' or 'address:IP'.
CREATE TABLE sign_in_failures (
    throttle_key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at TEXT NOT NULL
);

CREATE TABLE account_two_factor (
    account_id BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    -- The TOTP secret, base32. The server must read it to check codes.
    secret TEXT NOT NULL,
    confirmed_at TEXT,
    -- The newest 30-second step a code was accepted for, so a code works once.
    last_step BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE recovery_codes (
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at TEXT,
    PRIMARY KEY (account_id, code_hash)
);

CREATE TABLE api_tokens (
    id {id},
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
