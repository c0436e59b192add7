-- The tagger's tables (STORAGE.md §4.1-§4.3) and the shared outbox (§4.11).
-- Times are UTC text in one form, YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time order.

CREATE TABLE attacker (
    uuid          TEXT NOT NULL PRIMARY KEY,
    ip            TEXT,
    identity_uuid TEXT,
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL,
    CHECK (last_seen >= first_seen)
);
CREATE INDEX attacker_ip ON attacker (ip);
CREATE INDEX attacker_last_seen ON attacker (last_seen);
CREATE INDEX attacker_identity ON attacker (identity_uuid);

CREATE TABLE identity (
    identity_uuid TEXT NOT NULL PRIMARY KEY,
    campaign_uuid TEXT,
    merged_into   TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CHECK (merged_into IS NULL OR merged_into <> identity_uuid)
);
CREATE INDEX identity_campaign ON identity (campaign_uuid);
CREATE INDEX identity_merged_into ON identity (merged_into);

CREATE TABLE ttp_tag (
    uuid             TEXT NOT NULL PRIMARY KEY,
    source_kind      TEXT NOT NULL CHECK (source_kind IN ('command', 'http_request', 'auth_attempt',
                         'session', 'email', 'canary', 'canary_fingerprint', 'intel', 'credential',
                         'identity', 'fingerprint', 'ipv6_leak')),
    source_id        TEXT NOT NULL CHECK (length(source_id) <= 256),
    attacker_uuid    TEXT REFERENCES attacker (uuid),
    identity_uuid    TEXT,
    session_id       TEXT CHECK (session_id IS NULL OR length(session_id) <= 128),
    decky_id         TEXT CHECK (decky_id IS NULL OR length(decky_id) <= 63),
    tactic           TEXT NOT NULL,
    technique_id     TEXT NOT NULL,
    sub_technique_id TEXT,
    confidence       REAL NOT NULL CHECK (confidence >= 0.3 AND confidence <= 1),
    rule_id          TEXT NOT NULL,
    rule_version     INTEGER NOT NULL CHECK (rule_version >= 1),
    evidence         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(evidence) AND length(evidence) <= 4096),
    attack_release   TEXT NOT NULL,
    mitre_url        TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    CHECK (attacker_uuid IS NOT NULL OR identity_uuid IS NOT NULL),
    CHECK (source_kind <> 'identity' OR attacker_uuid IS NULL)
);
CREATE INDEX ttp_tag_attacker ON ttp_tag (attacker_uuid, technique_id, created_at);
CREATE INDEX ttp_tag_identity ON ttp_tag (identity_uuid, technique_id, created_at);
CREATE INDEX ttp_tag_session ON ttp_tag (session_id, technique_id, created_at);
CREATE INDEX ttp_tag_created_at ON ttp_tag (created_at);

CREATE TABLE bus_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    service    TEXT NOT NULL,
    subject    TEXT NOT NULL,
    msg_id     TEXT NOT NULL CHECK (length(msg_id) < 256),
    headers    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(headers)),
    body       BLOB NOT NULL,
    created_at TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error TEXT
);
CREATE INDEX bus_outbox_service ON bus_outbox (service, id);
