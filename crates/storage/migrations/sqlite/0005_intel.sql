-- The intel service's tables (INTEL.md §3-§4, STORAGE.md §4.6-§4.7): one attacker_intel row
-- per attacker holding every provider's last answer, and the per-provider daily request
-- counters that make quotas hold across restarts and replicas. Times are UTC text in one
-- form, YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time order.

CREATE TABLE attacker_intel (
    uuid                       TEXT NOT NULL PRIMARY KEY,
    -- No FK: intel may see an attacker before the tagger writes its row.
    attacker_uuid              TEXT NOT NULL UNIQUE,
    attacker_ip                TEXT NOT NULL,
    schema_version             INTEGER NOT NULL DEFAULT 1,
    abuseipdb_score            INTEGER CHECK (abuseipdb_score IS NULL OR abuseipdb_score BETWEEN 0 AND 100),
    abuseipdb_categories       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(abuseipdb_categories)),
    abuseipdb_total_reports    INTEGER,
    abuseipdb_is_tor           INTEGER CHECK (abuseipdb_is_tor IS NULL OR abuseipdb_is_tor IN (0, 1)),
    abuseipdb_raw              TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(abuseipdb_raw) AND length(abuseipdb_raw) <= 65536),
    abuseipdb_queried_at       TEXT,
    abuseipdb_retry_at         TEXT,
    greynoise_classification   TEXT CHECK (greynoise_classification IS NULL OR greynoise_classification = lower(greynoise_classification)),
    greynoise_name             TEXT,
    greynoise_tags             TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(greynoise_tags)),
    greynoise_noise            INTEGER CHECK (greynoise_noise IS NULL OR greynoise_noise IN (0, 1)),
    greynoise_riot             INTEGER CHECK (greynoise_riot IS NULL OR greynoise_riot IN (0, 1)),
    greynoise_raw              TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(greynoise_raw) AND length(greynoise_raw) <= 65536),
    greynoise_queried_at       TEXT,
    greynoise_retry_at         TEXT,
    feodo_listed               INTEGER CHECK (feodo_listed IS NULL OR feodo_listed IN (0, 1)),
    feodo_malware_family       TEXT,
    feodo_first_seen           TEXT,
    feodo_raw                  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(feodo_raw) AND length(feodo_raw) <= 65536),
    feodo_queried_at           TEXT,
    feodo_retry_at             TEXT,
    threatfox_listed           INTEGER CHECK (threatfox_listed IS NULL OR threatfox_listed IN (0, 1)),
    threatfox_threat_types     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(threatfox_threat_types)),
    threatfox_ioc_types        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(threatfox_ioc_types)),
    threatfox_malware_families TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(threatfox_malware_families)),
    threatfox_confidence_max   INTEGER CHECK (threatfox_confidence_max IS NULL OR threatfox_confidence_max BETWEEN 0 AND 100),
    threatfox_raw              TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(threatfox_raw) AND length(threatfox_raw) <= 65536),
    threatfox_queried_at       TEXT,
    threatfox_retry_at         TEXT,
    scores                     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(scores)),
    aggregate_verdict          TEXT CHECK (aggregate_verdict IS NULL OR aggregate_verdict IN ('malicious', 'suspicious', 'benign', 'unknown')),
    aggregate_score            REAL CHECK (aggregate_score IS NULL OR (aggregate_score >= 0 AND aggregate_score <= 1)),
    verdict_digest             TEXT,
    providers_ok               TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(providers_ok)),
    providers_failed           TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(providers_failed)),
    providers_skipped          TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(providers_skipped)),
    cached_at                  TEXT,
    expires_at                 TEXT,
    retry_at                   TEXT,
    last_error                 TEXT
);
CREATE INDEX attacker_intel_expires_at ON attacker_intel (expires_at);
CREATE INDEX attacker_intel_retry_at ON attacker_intel (retry_at) WHERE retry_at IS NOT NULL;
CREATE INDEX attacker_intel_aggregate_verdict ON attacker_intel (aggregate_verdict);

CREATE TABLE intel_quota (
    provider TEXT NOT NULL CHECK (provider IN ('abuseipdb', 'greynoise', 'feodo', 'threatfox')),
    day_utc  TEXT NOT NULL,
    used     INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (provider, day_utc)
);
