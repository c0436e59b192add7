-- probe-relay's table (SMTP.md §9.3, STORAGE.md §4.10): one row per quarantined message a
-- relay-mode decoy announced, whatever the redeliveries, and the slot it took among the first
-- N per (decoy, attacker address). The unique keys are the limit: two replicas, a restart or
-- a redelivery can never take a slot twice or relay one message twice. Skipped rows hold a
-- NULL slot, and NULLs never collide in a unique index. Times are UTC text in one form,
-- YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time order.

CREATE TABLE probe_relay (
    id              TEXT NOT NULL PRIMARY KEY,
    decky_id        TEXT NOT NULL CHECK (length(decky_id) <= 63),
    attacker_ip     TEXT NOT NULL,
    stored_as       TEXT NOT NULL,
    slot            INTEGER CHECK (slot IS NULL OR slot >= 1),
    status          TEXT NOT NULL CHECK (status IN ('claimed', 'in_flight', 'sent', 'failed',
                        'unknown', 'skipped')),
    reason          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT,
    -- Which instance may send, and until when; a lapsed lease may be taken over.
    lease_owner     TEXT,
    lease_until     TEXT,
    upstream_host   TEXT,
    upstream_port   INTEGER CHECK (upstream_port IS NULL OR upstream_port BETWEEN 1 AND 65535),
    tls             TEXT CHECK (tls IS NULL OR tls IN ('starttls', 'implicit', 'none')),
    smtp_code       INTEGER,
    smtp_reply      TEXT CHECK (smtp_reply IS NULL OR length(smtp_reply) <= 256),
    rcpt_count      INTEGER NOT NULL DEFAULT 0 CHECK (rcpt_count >= 0),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    finished_at     TEXT,
    UNIQUE (decky_id, stored_as),
    UNIQUE (decky_id, attacker_ip, slot),
    CHECK (status <> 'skipped' OR slot IS NULL),
    -- finished_at is set exactly when the status is terminal.
    CHECK ((finished_at IS NOT NULL) = (status IN ('sent', 'failed', 'unknown', 'skipped')))
);
