-- The canary service's tables (CANARY.md): the tokens it minted and the hits on them.

CREATE TABLE canary_token (
    uuid              UUID NOT NULL PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('http', 'dns', 'aws_passive')),
    generator         TEXT NOT NULL,
    decky_name        TEXT NOT NULL CHECK (char_length(decky_name) <= 63),
    -- Where on the decoy the token was placed: an absolute path.
    placement_path    TEXT NOT NULL CHECK (left(placement_path, 1) = '/'),
    -- The callback secret as minted, and the key a callback is looked up by.
    slug              TEXT NOT NULL UNIQUE,
    slug_key          TEXT NOT NULL UNIQUE CHECK (slug_key = lower(slug)),
    mint_uuid         UUID,
    fingerprint_nonce TEXT CHECK (fingerprint_nonce IS NULL OR fingerprint_nonce ~ '^[0-9a-f]{16}$'),
    state             TEXT NOT NULL DEFAULT 'planted' CHECK (state IN ('planted', 'failed', 'revoked')),
    memo              TEXT CHECK (memo IS NULL OR char_length(memo) <= 512),
    created_by        TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    placed_at         TIMESTAMPTZ,
    last_triggered_at TIMESTAMPTZ,
    trigger_count     BIGINT NOT NULL DEFAULT 0 CHECK (trigger_count >= 0),
    last_error        TEXT,
    revoked_at        TIMESTAMPTZ,
    revoked_by        TEXT,
    revoke_reason     TEXT,
    CHECK (state <> 'revoked' OR revoked_at IS NOT NULL)
);
CREATE INDEX canary_token_decky_state ON canary_token (decky_name, state);

-- Append-only but for repeat_count, which the flood guard bumps instead of adding a row.
CREATE TABLE canary_trigger (
    uuid              UUID NOT NULL PRIMARY KEY,
    token_uuid        UUID NOT NULL REFERENCES canary_token (uuid),
    occurred_at       TIMESTAMPTZ NOT NULL,
    channel           TEXT NOT NULL CHECK (channel IN ('http', 'dns')),
    method            TEXT CHECK (method IS NULL OR method IN ('GET', 'HEAD')),
    src_ip            TEXT NOT NULL,
    peer_ip           TEXT NOT NULL,
    -- No foreign key to attacker: those rows are the tagger's, written on its own schedule.
    attacker_uuid     UUID NOT NULL,
    user_agent        TEXT CHECK (user_agent IS NULL OR char_length(user_agent) <= 1024),
    request_path      TEXT CHECK (request_path IS NULL OR char_length(request_path) <= 2048),
    dns_qname         TEXT CHECK (dns_qname IS NULL OR dns_qname = lower(dns_qname)),
    headers           JSONB CHECK (headers IS NULL OR char_length(headers::text) <= 16384),
    hit_kind          TEXT NOT NULL CHECK (hit_kind IN ('beacon', 'open', 'fingerprint')),
    fingerprint_state TEXT NOT NULL DEFAULT 'none' CHECK (fingerprint_state IN ('none', 'valid',
                          'invalid_nonce', 'invalid_shape', 'invalid_mint', 'rate_limited',
                          'decode_error', 'oversize', 'chunk_timeout', 'chunk_inconsistent',
                          'chunk_evicted')),
    flags             JSONB NOT NULL DEFAULT '{}',
    suspected_scanner BOOLEAN NOT NULL DEFAULT false,
    scanner_reason    TEXT,
    repeat_count      BIGINT NOT NULL DEFAULT 0 CHECK (repeat_count >= 0),
    fingerprint       JSONB,
    signals           JSONB,
    -- Only a fingerprint that validated is kept.
    CHECK (fingerprint IS NULL OR fingerprint_state = 'valid'),
    CHECK (signals IS NULL OR fingerprint_state = 'valid')
);
CREATE INDEX canary_trigger_token ON canary_trigger (token_uuid, occurred_at);
CREATE INDEX canary_trigger_src_ip ON canary_trigger (src_ip);
