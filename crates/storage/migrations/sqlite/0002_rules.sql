-- The rule store's tables (STORAGE.md): each rule's current definition and its operator
-- state. Times are UTC text in one form, YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time
-- order. GLOB, not LIKE: LIKE ignores ASCII case in SQLite.

CREATE TABLE ttp_rule (
    rule_id        TEXT NOT NULL PRIMARY KEY CHECK (rule_id GLOB 'R[0-9][0-9][0-9][0-9]'),
    rule_version   INTEGER NOT NULL CHECK (rule_version >= 1),
    sha256         TEXT NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    source         TEXT NOT NULL CHECK (length(source) <= 524288),
    -- Relative to the rules directory, so a store outlives where one host keeps its files.
    source_path    TEXT NOT NULL CHECK (source_path <> '' AND source_path NOT GLOB '/*'),
    attack_release TEXT NOT NULL,
    -- 1 + the largest seq, taken in each change's write transaction (tombstones included),
    -- so readers can follow changes in order.
    seq            INTEGER NOT NULL UNIQUE CHECK (seq >= 1),
    updated_at     TEXT NOT NULL,
    updated_by     TEXT NOT NULL CHECK (updated_by GLOB 'rulestore/?*'),
    -- A tombstone keeps the last definition, so a deletion can still say what it removed.
    deleted        INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
);

-- No row means enabled with no ceiling.
CREATE TABLE ttp_rule_state (
    rule_id        TEXT NOT NULL PRIMARY KEY REFERENCES ttp_rule (rule_id),
    state          TEXT NOT NULL CHECK (state IN ('enabled', 'disabled', 'clipped')),
    confidence_max REAL CHECK (confidence_max IS NULL OR (confidence_max >= 0 AND confidence_max <= 1)),
    expires_at     TEXT,
    reason         TEXT CHECK (reason IS NULL OR length(reason) <= 500),
    set_by         TEXT NOT NULL CHECK (length(set_by) > 0),
    set_at         TEXT NOT NULL,
    CHECK ((state = 'clipped') = (confidence_max IS NOT NULL)),
    CHECK (state = 'enabled' OR reason IS NOT NULL)
);
CREATE INDEX ttp_rule_state_expires_at ON ttp_rule_state (expires_at) WHERE expires_at IS NOT NULL;
