-- The canary service's tables (CANARY.md): the tokens it minted and the hits on them.
-- Times are UTC text in one form, YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time
-- order; uuids are lower-case hyphenated text. GLOB, not LIKE: LIKE ignores ASCII case in
-- SQLite.

CREATE TABLE canary_token (
    uuid              TEXT NOT NULL PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('http', 'dns', 'aws_passive')),
    generator         TEXT NOT NULL,
    decky_name        TEXT NOT NULL CHECK (length(decky_name) <= 63),
    -- Where on the decoy the token was placed: an absolute path.
    placement_path    TEXT NOT NULL CHECK (placement_path GLOB '/*'),
    -- The callback secret as minted, and the key a callback is looked up by.
    slug              TEXT NOT NULL UNIQUE,
    slug_key          TEXT NOT NULL UNIQUE CHECK (slug_key = lower(slug)),
    mint_uuid         TEXT,
    fingerprint_nonce TEXT CHECK (fingerprint_nonce IS NULL OR
                          (length(fingerprint_nonce) = 16 AND fingerprint_nonce NOT GLOB '*[^0-9a-f]*')),
    state             TEXT NOT NULL DEFAULT 'planted' CHECK (state IN ('planted', 'failed', 'revoked')),
    memo              TEXT CHECK (memo IS NULL OR length(memo) <= 512),
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    placed_at         TEXT,
    last_triggered_at TEXT,
    trigger_count     INTEGER NOT NULL DEFAULT 0 CHECK (trigger_count >= 0),
    last_error        TEXT,
    revoked_at        TEXT,
    revoked_by        TEXT,
    revoke_reason     TEXT,
    CHECK (state <> 'revoked' OR revoked_at IS NOT NULL)
);
CREATE INDEX canary_token_decky_state ON canary_token (decky_name, state);

-- Append-only but for repeat_count, which the flood guard bumps instead of adding a row.
CREATE TABLE canary_trigger (
    uuid              TEXT NOT NULL PRIMARY KEY,
    token_uuid        TEXT NOT NULL REFERENCES canary_token (uuid),
    occurred_at       TEXT NOT NULL,
    channel           TEXT NOT NULL CHECK (channel IN ('http', 'dns')),
    method            TEXT CHECK (method IS NULL OR method IN ('GET', 'HEAD')),
    src_ip            TEXT NOT NULL,
    peer_ip           TEXT NOT NULL,
    -- No foreign key to attacker: those rows are the tagger's, written on its own schedule.
    attacker_uuid     TEXT NOT NULL,
    user_agent        TEXT CHECK (user_agent IS NULL OR length(user_agent) <= 1024),
    request_path      TEXT CHECK (request_path IS NULL OR length(request_path) <= 2048),
    dns_qname         TEXT CHECK (dns_qname IS NULL OR dns_qname = lower(dns_qname)),
    headers           TEXT CHECK (headers IS NULL OR (json_valid(headers) AND length(headers) <= 16384)),
    hit_kind          TEXT NOT NULL CHECK (hit_kind IN ('beacon', 'open', 'fingerprint')),
    fingerprint_state TEXT NOT NULL DEFAULT 'none' CHECK (fingerprint_state IN ('none', 'valid',
                          'invalid_nonce', 'invalid_shape', 'invalid_mint', 'rate_limited',
                          'decode_error', 'oversize', 'chunk_timeout', 'chunk_inconsistent',
                          'chunk_evicted')),
    flags             TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(flags)),
    suspected_scanner INTEGER NOT NULL DEFAULT 0 CHECK (suspected_scanner IN (0, 1)),
    scanner_reason    TEXT,
    repeat_count      INTEGER NOT NULL DEFAULT 0 CHECK (repeat_count >= 0),
    fingerprint       TEXT CHECK (fingerprint IS NULL OR json_valid(fingerprint)),
    signals           TEXT CHECK (signals IS NULL OR json_valid(signals)),
    -- Only a fingerprint that validated is kept.
    CHECK (fingerprint IS NULL OR fingerprint_state = 'valid'),
    CHECK (signals IS NULL OR fingerprint_state = 'valid')
);
CREATE INDEX canary_trigger_token ON canary_trigger (token_uuid, occurred_at);
CREATE INDEX canary_trigger_src_ip ON canary_trigger (src_ip);
