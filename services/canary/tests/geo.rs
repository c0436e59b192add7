//! The geo-derived signals (CANARY.md §11, §14): country lookups in a MaxMind-format
//! database written here by a minimal MMDB writer, the time-zone distance, the language fit,
//! and the shipped tables.

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Utc};
use decnet_canary::geo::{Geo, lang_country_mismatch, tz_mismatch_zones};

/// A minimal writer of the MaxMind DB format (version 2.0): a binary search tree of nodes
/// with 24, 28 or 32-bit records, 16 zero bytes, a data section of maps, strings, arrays and
/// unsigned integers, then `\xAB\xCD\xEFMaxMind.com` and the metadata map.
mod mmdb {
    use std::net::IpAddr;

    /// A data-section value.
    pub(crate) enum Value {
        Str(&'static str),
        U16(u16),
        U32(u32),
        U64(u64),
        Map(Vec<(&'static str, Value)>),
        Array(Vec<Value>),
    }

    /// `{key: value, …}`.
    pub(crate) fn map(entries: Vec<(&'static str, Value)>) -> Value {
        Value::Map(entries)
    }

    /// `{"iso_code": code}`.
    pub(crate) fn iso(code: &'static str) -> Value {
        map(vec![("iso_code", Value::Str(code))])
    }

    /// The control byte(s) of a field: type in the top 3 bits (0 then an extra byte for the
    /// extended types 8..), size in the low 5 (29..31 announce 1..3 more size bytes).
    fn control(out: &mut Vec<u8>, ty: u8, size: usize) {
        let (bits, extra): (u8, Vec<u8>) = if size < 29 {
            (size as u8, Vec::new())
        } else if size < 285 {
            (29, vec![(size - 29) as u8])
        } else if size < 65_821 {
            (30, ((size - 285) as u16).to_be_bytes().to_vec())
        } else {
            (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
        };
        if ty <= 7 {
            out.push((ty << 5) | bits);
        } else {
            out.push(bits);
            out.push(ty - 7);
        }
        out.extend(extra);
    }

    /// An unsigned integer: big-endian, leading zero bytes left out.
    fn uint(out: &mut Vec<u8>, ty: u8, n: u64) {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        control(out, ty, bytes.len() - skip);
        out.extend(&bytes[skip..]);
    }

    pub(crate) fn encode(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Str(s) => {
                control(out, 2, s.len());
                out.extend(s.as_bytes());
            }
            Value::U16(n) => uint(out, 5, u64::from(*n)),
            Value::U32(n) => uint(out, 6, u64::from(*n)),
            Value::U64(n) => uint(out, 9, *n),
            Value::Map(entries) => {
                control(out, 7, entries.len());
                for (key, value) in entries {
                    encode(&Value::Str(key), out);
                    encode(value, out);
                }
            }
            Value::Array(items) => {
                control(out, 11, items.len());
                for item in items {
                    encode(item, out);
                }
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Record {
        Empty,
        Node(usize),
        Data(usize),
    }

    /// A database of `networks` (address, prefix length, record). `ip_version` 6 puts IPv4
    /// networks in the `::/96` subtree, as MaxMind's own databases do.
    pub(crate) fn build(
        record_size: u16,
        ip_version: u16,
        networks: &[(&str, u32, Value)],
    ) -> Vec<u8> {
        let depth: u32 = if ip_version == 6 { 128 } else { 32 };
        let mut data = Vec::new();
        let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
        for (addr, prefix, value) in networks {
            let offset = data.len();
            encode(value, &mut data);
            let ip: IpAddr = addr.parse().expect("a test address");
            let (bits, prefix) = match ip {
                IpAddr::V4(v4) => {
                    let shift = if ip_version == 6 { 96 } else { 0 };
                    (u128::from(u32::from(v4)), prefix + shift)
                }
                IpAddr::V6(v6) => {
                    assert_eq!(ip_version, 6, "IPv6 network in an IPv4 database");
                    (u128::from(v6), *prefix)
                }
            };
            let mut node = 0;
            for i in 0..prefix {
                let bit = ((bits >> (depth - 1 - i)) & 1) as usize;
                if i == prefix - 1 {
                    nodes[node][bit] = Record::Data(offset);
                    break;
                }
                node = match nodes[node][bit] {
                    Record::Node(next) => next,
                    Record::Empty => {
                        nodes.push([Record::Empty; 2]);
                        let next = nodes.len() - 1;
                        nodes[node][bit] = Record::Node(next);
                        next
                    }
                    Record::Data(_) => panic!("overlapping test networks"),
                };
            }
        }
        let count = nodes.len();
        let value = |r: Record| -> u32 {
            let v = match r {
                Record::Empty => count,
                Record::Node(n) => n,
                Record::Data(offset) => count + 16 + offset,
            };
            u32::try_from(v).expect("a small tree")
        };
        let mut out = Vec::new();
        for [left, right] in nodes {
            let (l, r) = (value(left), value(right));
            match record_size {
                24 => {
                    out.extend(&l.to_be_bytes()[1..]);
                    out.extend(&r.to_be_bytes()[1..]);
                }
                28 => {
                    out.extend(&l.to_be_bytes()[1..]);
                    out.push((((l >> 24) & 0x0f) << 4) as u8 | ((r >> 24) & 0x0f) as u8);
                    out.extend(&r.to_be_bytes()[1..]);
                }
                32 => {
                    out.extend(l.to_be_bytes());
                    out.extend(r.to_be_bytes());
                }
                other => panic!("record size {other}"),
            }
        }
        out.extend([0u8; 16]);
        out.extend(data);
        out.extend(b"\xAB\xCD\xEFMaxMind.com");
        let metadata = map(vec![
            ("node_count", Value::U32(count as u32)),
            ("record_size", Value::U16(record_size)),
            ("ip_version", Value::U16(ip_version)),
            ("database_type", Value::Str("Test-Country")),
            ("languages", Value::Array(vec![Value::Str("en")])),
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_767_225_600)),
            (
                "description",
                map(vec![("en", Value::Str("decnet test database"))]),
            ),
        ]);
        encode(&metadata, &mut out);
        out
    }
}

use mmdb::{Value, iso, map};

/// The test networks.
fn networks() -> Vec<(&'static str, u32, Value)> {
    vec![
        (
            "198.51.100.0",
            24,
            map(vec![
                ("continent", map(vec![("code", Value::Str("NA"))])),
                (
                    "country",
                    map(vec![
                        ("iso_code", Value::Str("US")),
                        ("names", map(vec![("en", Value::Str("United States"))])),
                    ]),
                ),
                ("registered_country", iso("US")),
            ]),
        ),
        // Only the registered country is known.
        (
            "203.0.113.0",
            24,
            map(vec![("registered_country", iso("DE"))]),
        ),
        // Where the two differ, `country` wins.
        (
            "192.0.2.128",
            25,
            map(vec![
                ("country", iso("CA")),
                ("registered_country", iso("US")),
            ]),
        ),
        // A record with no country at all.
        (
            "192.0.2.0",
            25,
            map(vec![("continent", map(vec![("code", Value::Str("EU"))]))]),
        ),
        // Lower-case codes come back upper-case.
        ("100.64.0.0", 10, map(vec![("country", iso("gb"))])),
        ("2001:db8::", 32, map(vec![("country", iso("JP"))])),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the test database");
    path
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a test address")
}

#[test]
fn countries_from_a_maxmind_database_of_every_record_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    for record_size in [24, 28, 32] {
        let path = write(
            dir.path(),
            &format!("country-{record_size}.mmdb"),
            &mmdb::build(record_size, 6, &networks()),
        );
        let geo = Geo::open(&path).unwrap_or_else(|e| panic!("record size {record_size}: {e}"));
        assert_eq!(geo.database_type(), "Test-Country");
        let country = |s: &str| geo.country(ip(s));
        assert_eq!(
            country("198.51.100.7").as_deref(),
            Some("US"),
            "{record_size}"
        );
        assert_eq!(country("198.51.100.255").as_deref(), Some("US"));
        assert_eq!(country("203.0.113.9").as_deref(), Some("DE"), "registered");
        assert_eq!(
            country("192.0.2.200").as_deref(),
            Some("CA"),
            "country first"
        );
        assert_eq!(country("192.0.2.1"), None, "a record without a country");
        assert_eq!(country("100.127.255.254").as_deref(), Some("GB"));
        assert_eq!(country("2001:db8:1::1").as_deref(), Some("JP"));
        // IPv4-mapped IPv6 (a dual-stack listener's peer) is the IPv4 address.
        assert_eq!(country("::ffff:198.51.100.7").as_deref(), Some("US"));
        // Unknown addresses.
        assert_eq!(country("198.51.101.1"), None);
        assert_eq!(country("8.8.8.8"), None);
        assert_eq!(country("2001:db9::1"), None);
        assert_eq!(country("::1"), None);
    }
}

#[test]
fn an_ipv4_database_answers_ipv4_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nets = vec![
        ("198.51.100.0", 24, map(vec![("country", iso("US"))])),
        (
            "203.0.113.0",
            24,
            map(vec![("registered_country", iso("DE"))]),
        ),
    ];
    let path = write(dir.path(), "v4.mmdb", &mmdb::build(24, 4, &nets));
    let geo = Geo::open(&path).expect("open");
    assert_eq!(geo.country(ip("198.51.100.1")).as_deref(), Some("US"));
    assert_eq!(geo.country(ip("203.0.113.1")).as_deref(), Some("DE"));
    assert_eq!(geo.country(ip("::ffff:203.0.113.1")).as_deref(), Some("DE"));
    assert_eq!(
        geo.country(ip("2001:db8::1")),
        None,
        "no IPv6 in the database"
    );
    assert_eq!(geo.country(ip("10.0.0.1")), None);
}

#[test]
fn a_file_that_is_no_database_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "not-a-db.mmdb",
        b"just some text, no metadata marker\n",
    );
    let err = Geo::open(&path).expect_err("not a database");
    assert!(err.contains(&path.display().to_string()), "{err}");

    let missing = dir.path().join("missing.mmdb");
    let err = Geo::open(&missing).expect_err("no such file");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 instant")
}

#[test]
fn tz_distance_to_the_nearest_offset_in_force() {
    let winter = at("2026-01-15T12:00:00Z");
    let summer = at("2026-07-15T12:00:00Z");
    // Berlin in winter (UTC+1) for Germany.
    assert_eq!(tz_mismatch_zones(60, "DE", winter), Some(0));
    // The same browser for the United States: in January the US zones of the tz database run
    // from UTC−5 (New York, Detroit, Indiana, Kentucky) to UTC−10 (Honolulu, Adak); UTC−4 is
    // Puerto Rico's, but PR is its own country code. Nearest is −5 ⇒ 6 hours.
    assert_eq!(tz_mismatch_zones(60, "US", winter), Some(6));
    // In July New York is on UTC−4 ⇒ 5.
    assert_eq!(tz_mismatch_zones(60, "US", summer), Some(5));
    assert_eq!(tz_mismatch_zones(-240, "US", summer), Some(0), "EDT");
    assert_eq!(tz_mismatch_zones(-240, "PR", winter), Some(0));
    // Moscow (UTC+3) for Germany in July (CEST, UTC+2).
    assert_eq!(tz_mismatch_zones(180, "DE", summer), Some(1));
    // The far side of the world: UTC+9 for Germany in winter.
    assert_eq!(tz_mismatch_zones(540, "DE", winter), Some(8));
    // Russia spans UTC+2 to UTC+12: any of those is no mismatch.
    assert_eq!(tz_mismatch_zones(720, "RU", winter), Some(0));
    // Whole hours round down: India is UTC+5:30.
    assert_eq!(tz_mismatch_zones(330, "IN", winter), Some(0));
    assert_eq!(tz_mismatch_zones(360, "IN", winter), Some(0), "30 minutes");
    assert_eq!(tz_mismatch_zones(420, "IN", winter), Some(1), "90 minutes");
    // Case does not matter.
    assert_eq!(tz_mismatch_zones(60, "de", winter), Some(0));
    // Unknown countries, and uninhabited ones without a zone.
    assert_eq!(tz_mismatch_zones(60, "ZZ", winter), None);
    assert_eq!(tz_mismatch_zones(60, "BV", winter), None);
    assert_eq!(tz_mismatch_zones(60, "", winter), None);
    // Absurd offsets do not overflow.
    assert!(tz_mismatch_zones(i64::MAX, "DE", winter).is_some());
    assert!(tz_mismatch_zones(i64::MIN, "DE", winter).is_some());
}

#[test]
fn languages_against_the_source_country() {
    assert_eq!(lang_country_mismatch(&["en-US", "en"], "US"), Some(false));
    assert_eq!(lang_country_mismatch(&["ru-RU", "ru"], "US"), Some(true));
    // English is not a language of Germany in the table.
    assert_eq!(lang_country_mismatch(&["en-GB"], "DE"), Some(true));
    assert_eq!(lang_country_mismatch(&["en"], "DE"), Some(true));
    // German is spoken in Austria.
    assert_eq!(lang_country_mismatch(&["de-DE"], "AT"), Some(false));
    assert_eq!(lang_country_mismatch(&["pt-BR"], "PT"), Some(false));
    assert_eq!(lang_country_mismatch(&[], "US"), None);
    // Any entry naming the country as its region is enough, whatever the primary language.
    assert_eq!(
        lang_country_mismatch(&["fr-FR", "de-AT"], "AT"),
        Some(false)
    );
    assert_eq!(lang_country_mismatch(&["en-DE"], "DE"), Some(false));
    assert_eq!(lang_country_mismatch(&["eo", "en-DE"], "DE"), Some(false));
    // Scripts and extlangs come before the region; numeric regions are no country.
    assert_eq!(lang_country_mismatch(&["zh-Hant-TW"], "TW"), Some(false));
    assert_eq!(lang_country_mismatch(&["zh-Hant-TW"], "DE"), Some(true));
    assert_eq!(lang_country_mismatch(&["zh-yue-HK"], "HK"), Some(false));
    assert_eq!(lang_country_mismatch(&["es-419"], "MX"), Some(false));
    assert_eq!(lang_country_mismatch(&["es-419"], "DE"), Some(true));
    // Only the first entry is the primary language.
    assert_eq!(lang_country_mismatch(&["ru", "de"], "DE"), Some(true));
    // Case and `_` do not matter.
    assert_eq!(lang_country_mismatch(&["EN-us"], "us"), Some(false));
    assert_eq!(lang_country_mismatch(&["pt_BR"], "BR"), Some(false));
    assert_eq!(lang_country_mismatch(&["nb-NO"], "SE"), Some(true));
    assert_eq!(lang_country_mismatch(&["no"], "NO"), Some(false));
    assert_eq!(lang_country_mismatch(&["fil"], "PH"), Some(false));
    // Unknown countries, unknown or malformed primary languages: no basis to judge.
    assert_eq!(lang_country_mismatch(&["en-US"], "ZZ"), None);
    assert_eq!(lang_country_mismatch(&["en"], "AQ"), None);
    assert_eq!(lang_country_mismatch(&["eo"], "DE"), None);
    assert_eq!(lang_country_mismatch(&["*"], "DE"), None);
    assert_eq!(lang_country_mismatch(&[""], "DE"), None);
}

const COUNTRY_ZONES: &str = include_str!("../data/geo/country-zones.txt");
const LANGUAGE_COUNTRIES: &str = include_str!("../data/geo/language-countries.txt");

fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
}

#[test]
fn the_shipped_tables_are_whole() {
    let now = at("2026-03-01T00:00:00Z");
    let mut countries = Vec::new();
    for row in rows(COUNTRY_ZONES) {
        let (country, zones) = row.split_first().expect("a row");
        assert!(
            country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()),
            "{country}"
        );
        assert!(!zones.is_empty(), "{country} without zones");
        for zone in zones {
            assert!(
                zone.parse::<chrono_tz::Tz>().is_ok(),
                "{country}: chrono-tz does not know {zone}"
            );
        }
        assert!(tz_mismatch_zones(0, country, now).is_some(), "{country}");
        countries.push(*country);
    }
    assert!(countries.len() > 240, "{}", countries.len());

    // Every inhabited country of the zone table has languages.
    for country in &countries {
        let judged = lang_country_mismatch(&["en"], country);
        assert_eq!(judged.is_none(), *country == "AQ", "{country}");
    }
    // Every country the language table names is a real code (or XK, Kosovo).
    let mut languages = Vec::new();
    for row in rows(LANGUAGE_COUNTRIES) {
        let (lang, spoken_in) = row.split_first().expect("a row");
        assert!(!languages.contains(lang), "{lang} twice");
        languages.push(*lang);
        assert!(!spoken_in.is_empty(), "{lang} spoken nowhere");
        for country in spoken_in {
            assert!(
                countries.contains(country) || *country == "XK",
                "{lang}: {country}"
            );
            assert_eq!(
                lang_country_mismatch(&[lang], country),
                Some(false),
                "{lang} in {country}"
            );
        }
    }
    // The most used languages are all there.
    for lang in [
        "en", "es", "pt", "fr", "de", "ru", "zh", "ja", "ko", "ar", "hi", "it", "nl", "pl", "tr",
        "uk", "vi", "id", "th", "fa", "he", "sv", "no", "nb", "da", "fi", "cs", "ro", "hu", "el",
        "bg", "sr", "hr", "sk", "sl", "lt", "lv", "et", "ms", "bn", "ur", "ta", "te", "mr", "sw",
        "tl", "fil", "pa", "gu", "kn", "ml", "am", "ha", "yo", "ig", "zu", "af", "ka", "hy", "az",
        "kk", "uz", "be", "sq", "mk", "bs", "is", "ca", "eu", "gl", "km", "lo", "my", "si", "ne",
        "mn", "ps", "ku",
    ] {
        assert!(languages.contains(&lang), "{lang} missing");
    }
}

/// The geo signals of a fingerprint as the beacon derives them with a database configured: a
/// browser in Moscow's zone speaking Russian, behind a US address, leaking a German address
/// over WebRTC.
#[test]
fn fingerprint_signals_use_the_source_country() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "country.mmdb", &mmdb::build(28, 6, &networks()));
    let geo = Geo::open(&path).expect("the test database opens");
    let automation = decnet_canary::signals::Automation::shipped();
    let ctx = decnet_canary::signals::Context {
        automation: &automation,
        geo: Some(&geo),
        at: at("2026-01-15T12:00:00Z"),
    };
    let fp = serde_json::json!({
        "mint": "m",
        "nav": {"pl": "Win32", "lg": "ru-RU", "lgs": "ru-RU,ru", "wd": false},
        "tz": {"z": "Europe/Moscow", "off": -180},
        "rtc": {"ip": ["203.0.113.9"]},
    });
    let fp = fp.as_object().expect("an object");
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0.0.0";
    let s = decnet_canary::signals::derive(fp, ip("198.51.100.7"), Some(ua), &ctx);
    assert_eq!(s.source_country.as_deref(), Some("US"));
    // UTC+3 against the US's offsets in January (−5 … −10): 8 hours to New York.
    assert_eq!(s.tz_mismatch_zones, Some(8));
    assert_eq!(s.lang_country_mismatch, Some(true));
    assert_eq!(s.webrtc_geo_mismatch, Some(true));
    assert_eq!(
        s.webrtc_mismatch_basis,
        Some(decnet_proto::payload::canary::MismatchBasis::Country)
    );

    // An English speaker in New York's zone behind the same address: nothing stands out.
    let local = serde_json::json!({"mint": "m", "nav": {"lg": "en-US", "lgs": "en-US,en"},
        "tz": {"z": "America/New_York", "off": 300}, "rtc": {"ip": ["198.51.100.40"]}});
    let s = decnet_canary::signals::derive(
        local.as_object().expect("an object"),
        ip("198.51.100.7"),
        Some(ua),
        &ctx,
    );
    assert_eq!(
        (
            s.tz_mismatch_zones,
            s.lang_country_mismatch,
            s.webrtc_geo_mismatch
        ),
        (Some(0), Some(false), Some(false))
    );
}
