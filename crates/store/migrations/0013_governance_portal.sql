-- Issue 10, the last of it: the guest network's captive portal (M4),
-- sealed governance files, and consent purposes that can be retired.

-- A guest's acceptance of the visitor agreement on the captive portal. The
-- guest is known only by the address they accepted from (and a name, if
-- they gave one); the address leaves the captive state until `expires_at`.
-- `template_id` is the community agreement version shown, or NULL when
-- the school had published none and sheepdog's own text was shown.
CREATE TABLE guest_acceptances (
    id {id},
    school_id BIGINT NOT NULL REFERENCES schools(id),
    template_id BIGINT REFERENCES agreement_templates(id),
    version BIGINT NOT NULL,
    address TEXT NOT NULL,
    name TEXT,
    accepted_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX guest_acceptances_by_expiry ON guest_acceptances (expires_at);

-- Files kept with governance records are sealed with the deployment's
-- evidence key like incident evidence; `nonce` is NULL only for a file
-- kept before this migration, which is served as it was stored.
ALTER TABLE governance_files ADD COLUMN nonce TEXT;

-- A retired purpose leaves the forms and the publish check; the answers
-- recorded for it stay.
ALTER TABLE consent_purposes ADD COLUMN retired_at TEXT;
