-- The intel service's tables (INTEL.md §3-§4, STORAGE.md §4.6-§4.7): one attacker_intel row
-- per attacker holding every provider's last answer, and the per-provider daily request
-- counters that make quotas hold across restarts and replicas. Raw provider answers are
-- JSONB, so their size bound is on their text form.

CREATE TABLE attacker_intel (
    uuid                       UUID NOT NULL PRIMARY KEY,
    -- No FK: intel may see an attacker before the tagger writes its row.
    attacker_uuid              UUID NOT NULL UNIQUE,
    attacker_ip                TEXT NOT NULL,
    schema_version             INTEGER NOT NULL DEFAULT 1,
    abuseipdb_score            INTEGER CHECK (abuseipdb_score IS NULL OR abuseipdb_score BETWEEN 0 AND 100),
    abuseipdb_categories       JSONB NOT NULL DEFAULT '[]',
    abuseipdb_total_reports    INTEGER,
    abuseipdb_is_tor           BOOLEAN,
    abuseipdb_raw              JSONB NOT NULL DEFAULT '{}' CHECK (length(abuseipdb_raw::text) <= 65536),
    abuseipdb_queried_at       TIMESTAMPTZ,
    abuseipdb_retry_at         TIMESTAMPTZ,
    greynoise_classification   TEXT CHECK (greynoise_classification IS NULL OR greynoise_classification = lower(greynoise_classification)),
    greynoise_name             TEXT,
    greynoise_tags             JSONB NOT NULL DEFAULT '[]',
    greynoise_noise            BOOLEAN,
    greynoise_riot             BOOLEAN,
    greynoise_raw              JSONB NOT NULL DEFAULT '{}' CHECK (length(greynoise_raw::text) <= 65536),
    greynoise_queried_at       TIMESTAMPTZ,
    greynoise_retry_at         TIMESTAMPTZ,
    feodo_listed               BOOLEAN,
    feodo_malware_family       TEXT,
    feodo_first_seen           TIMESTAMPTZ,
    feodo_raw                  JSONB NOT NULL DEFAULT '{}' CHECK (length(feodo_raw::text) <= 65536),
    feodo_queried_at           TIMESTAMPTZ,
    feodo_retry_at             TIMESTAMPTZ,
    threatfox_listed           BOOLEAN,
    threatfox_threat_types     JSONB NOT NULL DEFAULT '[]',
    threatfox_ioc_types        JSONB NOT NULL DEFAULT '[]',
    threatfox_malware_families JSONB NOT NULL DEFAULT '[]',
    threatfox_confidence_max   INTEGER CHECK (threatfox_confidence_max IS NULL OR threatfox_confidence_max BETWEEN 0 AND 100),
    threatfox_raw              JSONB NOT NULL DEFAULT '{}' CHECK (length(threatfox_raw::text) <= 65536),
    threatfox_queried_at       TIMESTAMPTZ,
    threatfox_retry_at         TIMESTAMPTZ,
    scores                     JSONB NOT NULL DEFAULT '{}',
    aggregate_verdict          TEXT CHECK (aggregate_verdict IS NULL OR aggregate_verdict IN ('malicious', 'suspicious', 'benign', 'unknown')),
    aggregate_score            DOUBLE PRECISION CHECK (aggregate_score IS NULL OR (aggregate_score >= 0 AND aggregate_score <= 1)),
    verdict_digest             TEXT,
    providers_ok               JSONB NOT NULL DEFAULT '[]',
    providers_failed           JSONB NOT NULL DEFAULT '[]',
    providers_skipped          JSONB NOT NULL DEFAULT '[]',
    cached_at                  TIMESTAMPTZ,
    expires_at                 TIMESTAMPTZ,
    retry_at                   TIMESTAMPTZ,
    last_error                 TEXT
);
CREATE INDEX attacker_intel_expires_at ON attacker_intel (expires_at);
CREATE INDEX attacker_intel_retry_at ON attacker_intel (retry_at) WHERE retry_at IS NOT NULL;
CREATE INDEX attacker_intel_aggregate_verdict ON attacker_intel (aggregate_verdict);

CREATE TABLE intel_quota (
    provider TEXT NOT NULL CHECK (provider IN ('abuseipdb', 'greynoise', 'feodo', 'threatfox')),
    day_utc  DATE NOT NULL,
    used     INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (provider, day_utc)
);
