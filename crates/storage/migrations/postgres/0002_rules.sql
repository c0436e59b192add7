-- The rule store's tables (STORAGE.md): each rule's current definition and its operator
-- state.

CREATE TABLE ttp_rule (
    rule_id        TEXT NOT NULL PRIMARY KEY CHECK (rule_id ~ '^R[0-9]{4}$'),
    rule_version   INTEGER NOT NULL CHECK (rule_version >= 1),
    sha256         TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    source         TEXT NOT NULL CHECK (char_length(source) <= 524288),
    -- Relative to the rules directory, so a store outlives where one host keeps its files.
    source_path    TEXT NOT NULL CHECK (source_path <> '' AND left(source_path, 1) <> '/'),
    attack_release TEXT NOT NULL,
    -- 1 + the largest seq, taken in each change's write transaction (tombstones included),
    -- so readers can follow changes in order.
    seq            BIGINT NOT NULL UNIQUE CHECK (seq >= 1),
    updated_at     TIMESTAMPTZ NOT NULL,
    updated_by     TEXT NOT NULL CHECK (updated_by ~ '^rulestore/.'),
    -- A tombstone keeps the last definition, so a deletion can still say what it removed.
    deleted        BOOLEAN NOT NULL DEFAULT false
);

-- No row means enabled with no ceiling.
CREATE TABLE ttp_rule_state (
    rule_id        TEXT NOT NULL PRIMARY KEY REFERENCES ttp_rule (rule_id),
    state          TEXT NOT NULL CHECK (state IN ('enabled', 'disabled', 'clipped')),
    confidence_max DOUBLE PRECISION CHECK (confidence_max IS NULL OR (confidence_max >= 0 AND confidence_max <= 1)),
    expires_at     TIMESTAMPTZ,
    reason         TEXT CHECK (reason IS NULL OR char_length(reason) <= 500),
    set_by         TEXT NOT NULL CHECK (char_length(set_by) > 0),
    set_at         TIMESTAMPTZ NOT NULL,
    CHECK ((state = 'clipped') = (confidence_max IS NOT NULL)),
    CHECK (state = 'enabled' OR reason IS NOT NULL)
);
CREATE INDEX ttp_rule_state_expires_at ON ttp_rule_state (expires_at) WHERE expires_at IS NOT NULL;
