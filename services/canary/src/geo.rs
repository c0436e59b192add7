//! The geo-derived fingerprint signals (CANARY.md §11): the source country from a
//! MaxMind-format country database (`DECNET_CANARY_GEOIP_DB`, §14), how far the browser's
//! UTC offset is from any offset in force in that country (`tz_mismatch_zones`), and whether
//! the browser's languages fit it (`lang_country_mismatch`).
//!
//! The country → time zones and language → countries tables ship with the crate
//! (`data/geo/`, each file's header says where it comes from) and are parsed once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// `CC zone zone …`, one line per country (from the tz database's `zone.tab` and
/// `zone1970.tab`).
const COUNTRY_ZONES: &str = include_str!("../data/geo/country-zones.txt");

/// `lang CC CC …`, one line per language subtag.
const LANGUAGE_COUNTRIES: &str = include_str!("../data/geo/language-countries.txt");

/// A MaxMind-format country database (GeoLite2-Country / GeoIP2-Country layout:
/// `country.iso_code`, falling back to `registered_country.iso_code`). City and Enterprise
/// databases carry the same fields and work too.
pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl fmt::Debug for Geo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = self.reader.metadata();
        f.debug_struct("Geo")
            .field("database_type", &meta.database_type)
            .field("ip_version", &meta.ip_version)
            .field("node_count", &meta.node_count)
            .finish()
    }
}

impl Geo {
    /// Read the whole database at `path` into memory. The error names the file.
    pub fn open(path: &Path) -> Result<Geo, String> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| format!("GeoIP database {}: {e}", path.display()))?;
        Ok(Geo { reader })
    }

    /// The database's `database_type` (`GeoLite2-Country`, …), for the startup log.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// The ISO 3166 alpha-2 code (upper case) of `ip`'s country: `country.iso_code`, else
    /// `registered_country.iso_code`. None when the database has no record for the address
    /// (or no country in it, or cannot look it up: an IPv6 address in an IPv4 database).
    /// IPv4-mapped IPv6 addresses are looked up as the IPv4 address.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let ip = ip.to_canonical();
        let found = self.reader.lookup(ip).ok()?;
        if !found.has_data() {
            return None;
        }
        let code = |field: &str| -> Option<String> {
            let code: &str = found
                .decode_path(&maxminddb::path![field, "iso_code"])
                .ok()
                .flatten()?;
            (code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()))
                .then(|| code.to_ascii_uppercase())
        };
        code("country").or_else(|| code("registered_country"))
    }
}

/// Country code → the zones of the tz database in it, those chrono-tz knows.
static ZONES: LazyLock<HashMap<&'static str, Vec<Tz>>> = LazyLock::new(|| {
    table_lines(COUNTRY_ZONES)
        .filter_map(|(country, zones)| {
            let zones: Vec<Tz> = zones.filter_map(|z| z.parse().ok()).collect();
            (!zones.is_empty()).then_some((country, zones))
        })
        .collect()
});

/// The language table: subtag → countries, and every country it names.
struct Languages {
    spoken_in: HashMap<&'static str, HashSet<&'static str>>,
    countries: HashSet<&'static str>,
}

static LANGUAGES: LazyLock<Languages> = LazyLock::new(|| {
    let spoken_in: HashMap<&'static str, HashSet<&'static str>> = table_lines(LANGUAGE_COUNTRIES)
        .map(|(lang, countries)| (lang, countries.collect()))
        .collect();
    let countries = spoken_in.values().flatten().copied().collect();
    Languages {
        spoken_in,
        countries,
    }
});

/// The non-comment lines of a shipped table: first word, then the rest.
fn table_lines(
    text: &'static str,
) -> impl Iterator<Item = (&'static str, std::str::SplitWhitespace<'static>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words))
        })
}

/// Whole hours between the browser's UTC offset (`offset_minutes` = −tz.off, i.e. minutes
/// EAST of UTC) and the nearest UTC offset in force at `at` in any zone of `country`; None
/// for a country with no known zone.
///
/// "Whole hours" is the distance rounded down: ⌊|difference in minutes| / 60⌋. So a gap of
/// less than an hour, which only the :30 and :45 zones produce (a browser at UTC+6 for India
/// at UTC+5:30), counts as 0, and 90 minutes counts as 1. A browser at UTC+1 for the United
/// States in January is 6 (nearest is UTC−5), in July 5 (UTC−4).
pub fn tz_mismatch_zones(offset_minutes: i64, country: &str, at: DateTime<Utc>) -> Option<i64> {
    let zones = ZONES.get(country.trim().to_ascii_uppercase().as_str())?;
    let browser = offset_minutes.saturating_mul(60);
    let instant = at.naive_utc();
    zones
        .iter()
        .map(|tz| {
            let there = i64::from(
                tz.offset_from_utc_datetime(&instant)
                    .fix()
                    .local_minus_utc(),
            );
            browser.saturating_sub(there).saturating_abs()
        })
        .min()
        .map(|seconds| seconds / 3600)
}

/// CANARY.md §11: true when no language in `languages` (BCP 47 tags like `en-US`, `pt-BR`,
/// `zh-Hant-TW`; `_` is accepted for `-`, case does not matter) has `country` as its region
/// AND the primary language (first entry's language subtag) is not spoken in `country` (the
/// shipped language→countries table); None when `languages` is empty, the country is
/// unknown to the table, or — unless a region matched — the primary language is malformed or
/// unknown to the table (no basis to call it foreign).
pub fn lang_country_mismatch(languages: &[&str], country: &str) -> Option<bool> {
    let first = languages.first()?;
    let country = country.trim().to_ascii_uppercase();
    let table = &*LANGUAGES;
    if !table.countries.contains(country.as_str()) {
        return None;
    }
    if languages
        .iter()
        .any(|tag| region(tag).is_some_and(|r| r.eq_ignore_ascii_case(&country)))
    {
        return Some(false);
    }
    let primary = language(first)?.to_ascii_lowercase();
    let spoken_in = table.spoken_in.get(primary.as_str())?;
    Some(!spoken_in.contains(country.as_str()))
}

/// The subtags of a language tag.
fn subtags(tag: &str) -> impl Iterator<Item = &str> {
    tag.trim().split(['-', '_'])
}

/// The primary language subtag of a tag (2–8 letters), if it has one.
fn language(tag: &str) -> Option<&str> {
    let lang = subtags(tag).next()?;
    ((2..=8).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_alphabetic())).then_some(lang)
}

/// The region subtag of a tag when it is a country (two letters): RFC 5646's
/// `language[-extlang][-script][-region]`. A numeric region (`es-419`) is no country.
fn region(tag: &str) -> Option<&str> {
    let mut rest = subtags(tag);
    language(rest.next()?)?;
    for sub in rest {
        let alpha = sub.bytes().all(|b| b.is_ascii_alphabetic());
        match sub.len() {
            // extlang (`zh-yue-HK`) or script (`zh-Hant-TW`): the region may follow.
            3 | 4 if alpha => continue,
            2 if alpha => return Some(sub),
            _ => return None,
        }
    }
    None
}
