//! What the canary rules read, derived from a valid fingerprint (CANARY.md §11): the
//! `fingerprint` block of `canary.<token>.triggered`. The raw fingerprint stays in the
//! database; only these fields travel.

use std::collections::BTreeSet;
use std::net::IpAddr;

use decnet_proto::payload::canary::{FingerprintSignals, MismatchBasis};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use yaml_rust2::{Yaml, YamlLoader};

use crate::net::canonical;

/// The shipped automation catalogue.
const CATALOGUE: &str = include_str!("../data/automation.yaml");

/// Context fields are cut to this many characters (EVENTS.md §4.6).
const CONTEXT_CHARS: usize = 128;

/// One tool of the automation catalogue.
#[derive(Debug, Clone, Default)]
pub struct Tool {
    /// The tool's name (`puppeteer`).
    pub name: String,
    canvas_hashes: Vec<String>,
    audio_sums: Vec<String>,
    webgl_renderers: Vec<String>,
    user_agents: Vec<String>,
}

/// The automation catalogue, in match order.
#[derive(Debug, Clone)]
pub struct Automation(Vec<Tool>);

impl Automation {
    /// The shipped catalogue.
    pub fn shipped() -> Automation {
        Automation::parse(CATALOGUE).expect("the shipped catalogue parses")
    }

    /// Parse a catalogue: a list of `{tool, canvas_hashes, audio_sums, webgl_renderers,
    /// user_agents}`.
    pub fn parse(text: &str) -> Result<Automation, String> {
        let docs =
            YamlLoader::load_from_str(text).map_err(|e| format!("automation catalogue: {e}"))?;
        let Some(Yaml::Array(entries)) = docs.into_iter().next() else {
            return Err("automation catalogue: expected a list of tools".to_owned());
        };
        let strings = |y: &Yaml| -> Vec<String> {
            match y {
                Yaml::Array(items) => items
                    .iter()
                    .filter_map(|i| match i {
                        Yaml::String(s) => Some(s.clone()),
                        Yaml::Real(s) => Some(s.clone()),
                        Yaml::Integer(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let name = e["tool"]
                    .as_str()
                    .ok_or_else(|| format!("automation catalogue: entry {i} has no tool"))?;
                Ok(Tool {
                    name: name.to_owned(),
                    canvas_hashes: strings(&e["canvas_hashes"]),
                    audio_sums: strings(&e["audio_sums"]),
                    webgl_renderers: strings(&e["webgl_renderers"]),
                    user_agents: strings(&e["user_agents"]),
                })
            })
            .collect::<Result<_, String>>()
            .map(Automation)
    }

    fn matching(
        &self,
        canvas: Option<&str>,
        audio: Option<&str>,
        renderer: Option<&str>,
        ua: Option<&str>,
    ) -> Option<&str> {
        self.0
            .iter()
            .find(|t| {
                canvas.is_some_and(|c| t.canvas_hashes.iter().any(|h| h == c))
                    || audio.is_some_and(|a| t.audio_sums.iter().any(|s| s == a))
                    || renderer
                        .is_some_and(|r| t.webgl_renderers.iter().any(|s| r.contains(s.as_str())))
                    || ua.is_some_and(|u| t.user_agents.iter().any(|s| u.contains(s.as_str())))
            })
            .map(|t| t.name.as_str())
    }
}

/// Operating-system families, as far as the signals need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Windows,
    Mac,
    Ios,
    Android,
    Linux,
    ChromeOs,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Windows => "windows",
            Family::Mac => "macos",
            Family::Ios => "ios",
            Family::Android => "android",
            Family::Linux => "linux",
            Family::ChromeOs => "chromeos",
        }
    }
}

fn ua_os(ua: &str) -> Option<Family> {
    if ua.contains("Windows") {
        Some(Family::Windows)
    } else if ua.contains("Android") {
        Some(Family::Android)
    } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        Some(Family::Ios)
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some(Family::Mac)
    } else if ua.contains("CrOS") {
        Some(Family::ChromeOs)
    } else if ua.contains("Linux") || ua.contains("X11") {
        Some(Family::Linux)
    } else {
        None
    }
}

fn platform_os(platform: &str) -> Option<Family> {
    if platform.starts_with("Win") {
        Some(Family::Windows)
    } else if platform.starts_with("Mac") {
        Some(Family::Mac)
    } else if platform.starts_with("iPhone")
        || platform.starts_with("iPad")
        || platform.starts_with("iPod")
    {
        Some(Family::Ios)
    } else if platform.starts_with("Linux") {
        Some(Family::Linux)
    } else {
        None
    }
}

/// A `navigator.platform` and a User-Agent that name different systems. Linux platforms fit
/// Android and ChromeOS (both report `Linux …`).
fn platform_contradicts(platform: Family, ua: Family) -> bool {
    match (platform, ua) {
        (Family::Linux, Family::Linux | Family::Android | Family::ChromeOs) => false,
        (p, u) => p != u,
    }
}

/// The family a WebGL renderer is exclusive to: Direct3D ⇒ Windows, Apple GPU or Metal ⇒
/// Apple, Mali or Adreno ⇒ Android.
fn renderer_os(renderer: &str) -> Option<&'static [Family]> {
    if renderer.contains("Direct3D") || renderer.contains("D3D11") || renderer.contains("D3D9") {
        Some(&[Family::Windows])
    } else if renderer.contains("Apple") || renderer.contains("Metal") {
        Some(&[Family::Mac, Family::Ios])
    } else if renderer.contains("Mali") || renderer.contains("Adreno") {
        Some(&[Family::Android])
    } else {
        None
    }
}

/// `<browser>/<major> <os>`, or `unknown`.
fn ua_signature(ua: Option<&str>) -> String {
    let Some(ua) = ua else {
        return "unknown".to_owned();
    };
    let browsers = [
        ("Edg/", "edge"),
        ("OPR/", "opera"),
        ("Firefox/", "firefox"),
        ("HeadlessChrome/", "chrome"),
        ("Chrome/", "chrome"),
        ("CriOS/", "chrome"),
        ("Version/", "safari"),
    ];
    let browser = browsers.iter().find_map(|(marker, name)| {
        let at = ua.find(marker)? + marker.len();
        let major: String = ua[at..].chars().take_while(char::is_ascii_digit).collect();
        (!major.is_empty()).then(|| format!("{name}/{major}"))
    });
    match (browser, ua_os(ua)) {
        (Some(b), Some(os)) => format!("{b} {}", os.name()),
        _ => "unknown".to_owned(),
    }
}

fn str_at<'a>(fp: &'a Map<String, Value>, block: &str, key: &str) -> Option<&'a str> {
    fp.get(block)?.get(key)?.as_str()
}

fn context(value: Option<&str>) -> Option<String> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(CONTEXT_CHARS).collect())
}

/// Whether an address is one the public internet routes to the browser.
fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The composite id: `id` when it is 64 hex, else SHA-256 of the parts of CANARY.md §6.
fn fingerprint_id(fp: &Map<String, Value>) -> String {
    if let Some(id) = fp.get("id").and_then(Value::as_str)
        && id.len() == 64
        && id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return id.to_ascii_lowercase();
    }
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let get = |block: &str, key: &str| text(fp.get(block).and_then(|b| b.get(key)));
    let size = match (get("scr", "w"), get("scr", "h")) {
        (w, h) if !w.is_empty() && !h.is_empty() => format!("{w}x{h}"),
        _ => String::new(),
    };
    let parts = [
        get("cv", "h"),
        get("au", "h"),
        get("ft", "h"),
        get("gl", "ur"),
        get("nav", "pl"),
        get("nav", "hc"),
        get("tz", "z"),
        size,
    ];
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("|");
    Sha256::digest(joined.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the signals are derived against.
pub struct Context<'a> {
    /// The automation catalogue.
    pub automation: &'a Automation,
    /// The GeoIP country database, when one is configured.
    pub geo: Option<&'a crate::geo::Geo>,
    /// When the fingerprint arrived (the UTC offsets in force then).
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Derive the signals of a valid fingerprint seen from `src_ip` with `user_agent`.
pub fn derive(
    fp: &Map<String, Value>,
    src_ip: IpAddr,
    user_agent: Option<&str>,
    ctx: &Context<'_>,
) -> FingerprintSignals {
    let automation = ctx.automation;
    let source_country = ctx.geo.and_then(|g| g.country(src_ip));
    let ua = user_agent.or_else(|| str_at(fp, "nav", "ua"));
    let platform = str_at(fp, "nav", "pl");
    let renderer = str_at(fp, "gl", "ur").or_else(|| str_at(fp, "gl", "r"));
    let ua_family = ua.and_then(ua_os);
    let platform_ua_inconsistent = match (platform.and_then(platform_os), ua_family) {
        (Some(p), Some(u)) => platform_contradicts(p, u),
        _ => false,
    };
    let ua_webgl_mismatch = match (renderer.and_then(renderer_os), ua_family) {
        (Some(families), Some(u)) => !families.contains(&u),
        _ => false,
    };
    let rtc: Vec<String> = fp
        .get("rtc")
        .and_then(|r| r.get("ip"))
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let distinct: BTreeSet<&str> = rtc.iter().map(String::as_str).collect();
    let public: Vec<IpAddr> = distinct
        .iter()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .filter(|ip| is_public(*ip))
        .map(canonical)
        .collect();
    // By country when GeoIP knows both ends, by address otherwise.
    let (webrtc_geo_mismatch, basis) = match (&source_country, ctx.geo) {
        _ if public.is_empty() => (None, None),
        (Some(country), Some(geo)) => (
            Some(
                public
                    .iter()
                    .any(|ip| geo.country(*ip).is_some_and(|c| c != *country)),
            ),
            Some(MismatchBasis::Country),
        ),
        _ => (
            Some(public.iter().any(|ip| *ip != canonical(src_ip))),
            Some(MismatchBasis::Address),
        ),
    };
    let tz_mismatch_zones = source_country.as_deref().and_then(|country| {
        let off = fp.get("tz")?.get("off")?.as_i64()?;
        crate::geo::tz_mismatch_zones(-off, country, ctx.at)
    });
    let lang_country_mismatch = source_country.as_deref().and_then(|country| {
        let listed = str_at(fp, "nav", "lgs").or_else(|| str_at(fp, "nav", "lg"))?;
        let languages: Vec<&str> = listed
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        crate::geo::lang_country_mismatch(&languages, country)
    });
    let canvas = str_at(fp, "cv", "h");
    let audio = fp.get("au").and_then(|a| a.get("s")).map(|s| match s {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    FingerprintSignals {
        navigator_webdriver: fp.get("nav").and_then(|n| n.get("wd")) == Some(&Value::Bool(true)),
        automation_tool: automation
            .matching(canvas, audio.as_deref(), renderer, ua)
            .map(str::to_owned),
        webrtc_geo_mismatch,
        webrtc_mismatch_basis: basis,
        // Both need a GeoIP country database: null without one.
        tz_mismatch_zones,
        lang_country_mismatch,
        platform_ua_inconsistent,
        ua_webgl_mismatch,
        ua_signature: ua_signature(ua),
        fingerprint_id: fingerprint_id(fp).into(),
        browser_timezone: context(str_at(fp, "tz", "z")),
        browser_language: context(str_at(fp, "nav", "lg")),
        navigator_platform: context(platform),
        webgl_renderer: context(renderer),
        source_country,
        webrtc_address_count: distinct.len() as i64,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> Context<'static> {
        static AUTOMATION: std::sync::LazyLock<Automation> =
            std::sync::LazyLock::new(Automation::shipped);
        Context {
            automation: &AUTOMATION,
            geo: None,
            at: chrono::Utc::now(),
        }
    }

    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

    fn fp(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            other => panic!("a fingerprint is an object: {other}"),
        }
    }

    #[test]
    fn a_headless_browser_with_a_leaking_webrtc_is_seen_for_what_it_is() {
        let f = fp(json!({
            "mint": "m",
            "nav": {"ua": "x", "pl": "Linux x86_64", "lg": "en-US", "wd": true},
            "scr": {"w": 800, "h": 600},
            "tz": {"z": "UTC"},
            "gl": {"r": "WebKit WebGL", "ur": "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device), SwiftShader driver)"},
            "rtc": {"ip": ["192.168.1.20", "203.0.113.77", "203.0.113.77"], "n": 3},
        }));
        let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";
        let s = derive(&f, "198.51.100.7".parse().unwrap(), Some(ua), &ctx());
        assert!(s.navigator_webdriver);
        assert_eq!(s.automation_tool.as_deref(), Some("headless_chrome"));
        assert_eq!(s.webrtc_geo_mismatch, Some(true));
        assert_eq!(s.webrtc_mismatch_basis, Some(MismatchBasis::Address));
        assert_eq!(s.webrtc_address_count, 2);
        assert!(!s.platform_ua_inconsistent && !s.ua_webgl_mismatch);
        assert_eq!(s.ua_signature, "chrome/131 linux");
        assert_eq!(s.fingerprint_id.as_str().len(), 64);
        assert_eq!(s.browser_timezone.as_deref(), Some("UTC"));
        assert_eq!((s.tz_mismatch_zones, s.lang_country_mismatch), (None, None));
    }

    #[test]
    fn platform_and_renderer_contradictions() {
        let mac_on_windows = fp(
            json!({"nav": {"pl": "MacIntel"}, "gl": {"ur": "ANGLE (Intel, Intel(R) UHD Graphics Direct3D11 vs_5_0 ps_5_0, D3D11)"}}),
        );
        let s = derive(
            &mac_on_windows,
            "198.51.100.7".parse().unwrap(),
            Some(CHROME_WIN),
            &ctx(),
        );
        assert!(s.platform_ua_inconsistent);
        assert!(!s.ua_webgl_mismatch, "Direct3D fits Windows");
        assert_eq!(s.ua_signature, "chrome/124 windows");
        assert_eq!(s.webrtc_geo_mismatch, None, "no public WebRTC address");
        let apple_gpu = fp(json!({"nav": {"pl": "Win32"}, "gl": {"ur": "Apple M2"}}));
        let s = derive(
            &apple_gpu,
            "198.51.100.7".parse().unwrap(),
            Some(CHROME_WIN),
            &ctx(),
        );
        assert!(!s.platform_ua_inconsistent && s.ua_webgl_mismatch);
        let android = fp(json!({"nav": {"pl": "Linux armv8l"}, "gl": {"ur": "Adreno (TM) 740"}}));
        let ua = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
        let s = derive(&android, "198.51.100.7".parse().unwrap(), Some(ua), &ctx());
        assert!(!s.platform_ua_inconsistent && !s.ua_webgl_mismatch);
        assert_eq!(s.ua_signature, "chrome/124 android");
    }

    #[test]
    fn the_composite_id_is_taken_or_recomputed() {
        let given = "ab".repeat(32);
        assert_eq!(fingerprint_id(&fp(json!({"id": given}))), given);
        let a = fingerprint_id(&fp(
            json!({"id": "short", "cv": {"h": "c"}, "scr": {"w": 1, "h": 2}}),
        ));
        let b = fingerprint_id(&fp(json!({"cv": {"h": "c"}, "scr": {"w": 1, "h": 2}})));
        assert_eq!(a, b);
        assert_eq!(
            a,
            Sha256::digest(b"c|1x2")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }
}
