//! The artifact generators (CANARY.md §6, §13): golden values, determinism, the hiding of a
//! fingerprint page's constants, the script in Node, and the structure of the DOCX and PDF.

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use decnet_canary::generators::{self, GenerateError, Input};
use decnet_canary::token::{self, TokenKind};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const SLUG: &str = "aaaqeayeaudaocajbifqydiob4";
const OTHER_SLUG: &str = "mfrggzdfmztwq2lknnwg23tpob";
const BASE: &str = "http://canary.example.net:8088/";
const ZONE: &str = "t.example.org";
const SECRET: &str = "test-secret";

/// What the mint code knows about one token.
struct Token {
    slug: String,
    beacon: String,
    mint: Uuid,
    nonce: String,
}

fn token(slug: &str) -> Token {
    Token {
        slug: slug.to_owned(),
        beacon: generators::beacon_url(BASE, slug),
        mint: token::mint_uuid(slug),
        nonce: token::fingerprint_nonce(SECRET, slug),
    }
}

fn input<'a>(t: &'a Token, zone: Option<&'a str>) -> Input<'a> {
    Input {
        slug: &t.slug,
        beacon_url: &t.beacon,
        beacon_host: generators::beacon_host(BASE),
        dns_zone: zone,
        mint_uuid: Some(t.mint),
        nonce: Some(&t.nonce),
    }
}

fn generate(name: &str, t: &Token) -> Vec<u8> {
    generators::generate(name, &input(t, Some(ZONE)))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .bytes
}

fn text(name: &str, t: &Token) -> String {
    String::from_utf8(generate(name, t)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    find(haystack, needle.as_bytes()).is_some()
}

#[test]
fn the_golden_aws_credentials() {
    let t = token(SLUG);
    assert_eq!(
        text("aws_creds", &t),
        "[default]\n\
         aws_access_key_id = AKIA006C73FC27114D6D\n\
         aws_secret_access_key = su2J1OrWZhThoODkCJjPCKhVJhK859Vhmxoe2aJu\n\
         region = us-east-1\n\
         \n\
         [prod]\n\
         aws_access_key_id = AKIA9FE8784A61031CAD\n\
         aws_secret_access_key = ypUqLZolUmwVgBR9B3hm5fdMlj4IGJ9opfcfTCTV\n\
         region = us-west-2\n"
    );
    // The same recipe, recomputed here.
    for (seed, id_line) in [(SLUG.to_owned(), 1), (format!("prod-{SLUG}"), 6)] {
        let id = Sha256::digest(seed.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>();
        let secret = &STANDARD.encode(Sha256::digest(format!("secret:{seed}").as_bytes()))[..40];
        let file = text("aws_creds", &t);
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines[id_line], format!("aws_access_key_id = AKIA{id}"));
        assert_eq!(
            lines[id_line + 1],
            format!("aws_secret_access_key = {secret}")
        );
    }
}

#[test]
fn the_table_of_generators() {
    let rows: Vec<_> = generators::specs()
        .iter()
        .map(|s| {
            (
                s.name,
                s.kind,
                s.token_kind,
                s.default_path,
                s.mode,
                s.age_days,
            )
        })
        .collect();
    let docs = "/home/admin/Documents";
    assert_eq!(
        rows,
        [
            (
                "aws_creds",
                TokenKind::AwsPassive,
                "aws_key",
                "/home/admin/.aws/credentials",
                0o600,
                14
            ),
            (
                "env_file",
                TokenKind::Http,
                "env_file",
                "/home/admin/.env",
                0o600,
                7
            ),
            (
                "git_config",
                TokenKind::Http,
                "git_config",
                "/home/admin/.git/config",
                0o644,
                30
            ),
            (
                "honeydoc",
                TokenKind::Http,
                "honeydoc",
                &format!("{docs}/quarterly_report.html")[..],
                0o644,
                21
            ),
            (
                "honeydoc_docx",
                TokenKind::Http,
                "honeydoc",
                &format!("{docs}/quarterly_report.docx")[..],
                0o644,
                21
            ),
            (
                "honeydoc_pdf",
                TokenKind::Http,
                "honeydoc",
                &format!("{docs}/quarterly_report.pdf")[..],
                0o644,
                21
            ),
            (
                "ssh_key",
                TokenKind::Dns,
                "ssh_key",
                "/home/admin/.ssh/id_rsa",
                0o600,
                60
            ),
            (
                "mysql_dump",
                TokenKind::Dns,
                "db_dump",
                "/var/backups/db_backup.sql",
                0o600,
                7
            ),
            (
                "fingerprint_html",
                TokenKind::Http,
                "honeydoc",
                &format!("{docs}/asset_directory.html")[..],
                0o644,
                14
            ),
            (
                "fingerprint_svg",
                TokenKind::Http,
                "honeydoc",
                &format!("{docs}/network_topology.svg")[..],
                0o644,
                30
            ),
        ]
    );
    let flagged = |f: fn(&generators::Spec) -> bool| {
        generators::specs()
            .iter()
            .filter(|s| f(s))
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(flagged(|s| s.needs_dns_zone), ["mysql_dump"]);
    assert_eq!(
        flagged(|s| s.fingerprint),
        ["fingerprint_html", "fingerprint_svg"]
    );
    assert_eq!(
        generators::spec("honeydoc_pdf").unwrap().content_type,
        "application/pdf"
    );
    assert!(generators::spec("nope").is_none());
    let t = token(SLUG);
    for spec in generators::specs() {
        let artifact = generators::generate(spec.name, &input(&t, Some(ZONE))).unwrap();
        assert!(
            spec.default_path
                .ends_with(&format!("/{}", artifact.file_name))
        );
        assert!(!spec.description.is_empty());
    }
}

#[test]
fn beacon_url_and_host_helpers() {
    assert_eq!(
        generators::beacon_url("https://c.example.com//", "abc"),
        "https://c.example.com/c/abc"
    );
    assert_eq!(
        generators::beacon_url("http://localhost:8088", "abc"),
        "http://localhost:8088/c/abc"
    );
    for (base, host) in [
        ("http://localhost:8088", "localhost"),
        ("https://canary.example.com/prefix/", "canary.example.com"),
        (
            "https://user:pw@canary.example.com:8443",
            "canary.example.com",
        ),
        ("http://[2001:db8::1]:8088/", "[2001:db8::1]"),
        ("canary.example.com", "canary.example.com"),
    ] {
        assert_eq!(generators::beacon_host(base), host, "{base}");
    }
}

#[test]
fn same_token_same_bytes_other_slug_other_bytes() {
    let (a, b) = (token(SLUG), token(OTHER_SLUG));
    for spec in generators::specs() {
        let first = generate(spec.name, &a);
        assert!(!first.is_empty(), "{}", spec.name);
        assert_eq!(
            first,
            generate(spec.name, &token(SLUG)),
            "{} is not deterministic",
            spec.name
        );
        assert_ne!(
            first,
            generate(spec.name, &b),
            "{} ignores the slug",
            spec.name
        );
    }
}

#[test]
fn http_artifacts_point_at_the_beacon() {
    let t = token(SLUG);
    let env = text("env_file", &t);
    let lines: Vec<&str> = env.lines().collect();
    assert!(
        lines.contains(&format!("API_BASE_URL={}", t.beacon).as_str()),
        "{env}"
    );
    assert!(
        lines.contains(&format!("WEBHOOK_NOTIFY_URL={}/webhook", t.beacon).as_str()),
        "{env}"
    );
    for key in [
        "DB_PASSWORD=",
        "REDIS_URL=redis://",
        "JWT_SECRET=",
        "LOG_LEVEL=",
        "ENVIRONMENT=",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(key)), "{key} in {env}");
    }

    let git = text("git_config", &t);
    assert!(git.contains("[remote \"origin\"]\n"), "{git}");
    assert!(
        git.contains(&format!("\turl = {}/repo.git\n", t.beacon)),
        "{git}"
    );

    let html = text("honeydoc", &t);
    assert!(
        html.contains("<title>Q3 Operations Review \u{2014} DRAFT</title>"),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<img src=\"{}\" width=\"1\" height=\"1\"",
            t.beacon
        )),
        "{html}"
    );
}

#[test]
fn ssh_key_without_a_zone_names_the_beacon_host() {
    let t = token(SLUG);
    let without = generators::generate("ssh_key", &input(&t, None)).unwrap();
    let without = String::from_utf8(without.bytes).unwrap();
    let with = text("ssh_key", &t);
    for (key, comment) in [
        (&without, "deploy@canary.example.net".to_owned()),
        (&with, format!("deploy@{SLUG}.{ZONE}")),
    ] {
        let lines: Vec<&str> = key.lines().collect();
        assert_eq!(lines[0], "-----BEGIN OPENSSH PRIVATE KEY-----");
        let end = lines
            .iter()
            .position(|l| *l == "-----END OPENSSH PRIVATE KEY-----")
            .unwrap();
        assert_eq!(lines[end + 1..], [comment.as_str()]);
        let body = &lines[1..end];
        assert!(
            body[..body.len() - 1].iter().all(|l| l.len() == 70),
            "{key}"
        );
        assert!(body.last().unwrap().len() <= 70);
        let decoded = STANDARD.decode(body.concat()).unwrap();
        let digest = Sha256::digest(SLUG.as_bytes());
        assert_eq!(decoded.len(), 768);
        assert!(decoded.chunks(32).all(|c| c == digest.as_slice()));
    }
    // A trailing dot of the zone is not doubled.
    let dotted = generators::generate("ssh_key", &input(&t, Some("t.example.org."))).unwrap();
    assert!(contains(&dotted.bytes, &format!("deploy@{SLUG}.{ZONE}\n")));
}

#[test]
fn mysql_dump_needs_a_zone_and_hides_the_replication_source() {
    let t = token(SLUG);
    for zone in [None, Some(""), Some(".")] {
        assert_eq!(
            generators::generate("mysql_dump", &input(&t, zone)),
            Err(GenerateError::NeedsDnsZone("mysql_dump"))
        );
    }
    assert_eq!(
        GenerateError::NeedsDnsZone("mysql_dump").to_string(),
        "generator 'mysql_dump' needs DECNET_CANARY_DNS_ZONE"
    );
    let dump = text("mysql_dump", &t);
    assert!(dump.starts_with("-- MySQL dump "), "{dump}");
    for table in ["users", "api_keys"] {
        assert!(
            dump.contains(&format!("CREATE TABLE `{table}` (")),
            "{table}"
        );
        assert!(
            dump.contains(&format!("INSERT INTO `{table}` VALUES (")),
            "{table}"
        );
    }
    assert!(dump.contains("'$2b$12$"), "bcrypt fillers");
    let host = format!("{SLUG}.{ZONE}");
    assert!(!dump.contains(&host), "the source host is in clear");
    assert!(
        !dump.contains("REPLICA"),
        "the replication statements are in clear"
    );
    // The hidden statements, decoded as MySQL would, in order, each prepared and executed.
    let mut hidden = Vec::new();
    let mut rest = dump.as_str();
    while let Some(i) = rest.find("SET @q = CONVERT(FROM_BASE64('") {
        rest = &rest[i + "SET @q = CONVERT(FROM_BASE64('".len()..];
        let end = rest.find('\'').unwrap();
        hidden.push(String::from_utf8(STANDARD.decode(&rest[..end]).unwrap()).unwrap());
        assert!(
            rest[end..].starts_with("') USING utf8mb4);\nPREPARE s FROM @q;\nEXECUTE s;\n"),
            "{rest}"
        );
    }
    assert_eq!(hidden.len(), 2, "{dump}");
    assert!(
        hidden[0].starts_with(&format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='{host}', "
        )),
        "{}",
        hidden[0]
    );
    assert_eq!(hidden[1], "START REPLICA");
    assert!(
        dump.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("-- Dump completed on ")
    );
}

#[test]
fn fingerprint_generators_need_mint_and_nonce() {
    let t = token(SLUG);
    for name in ["fingerprint_html", "fingerprint_svg"] {
        let spec = generators::spec(name).unwrap();
        for (mint, nonce) in [
            (None, Some(t.nonce.as_str())),
            (Some(t.mint), None),
            (None, None),
        ] {
            let input = Input {
                mint_uuid: mint,
                nonce,
                ..input(&t, Some(ZONE))
            };
            assert_eq!(
                generators::generate(name, &input),
                Err(GenerateError::NeedsFingerprint(spec.name))
            );
        }
    }
    // The others need neither.
    let bare = Input {
        mint_uuid: None,
        nonce: None,
        ..input(&t, Some(ZONE))
    };
    for spec in generators::specs().iter().filter(|s| !s.fingerprint) {
        assert!(
            generators::generate(spec.name, &bare).is_ok(),
            "{}",
            spec.name
        );
    }
    let err = generators::generate("canarytoken", &bare).unwrap_err();
    assert_eq!(
        err,
        GenerateError::UnknownGenerator("canarytoken".to_owned())
    );
    let message = err.to_string();
    assert!(
        message.starts_with("unknown generator 'canarytoken'"),
        "{message}"
    );
    for spec in generators::specs() {
        assert!(message.contains(spec.name), "{message}");
    }
}

/// Percent-encode everything but the unreserved characters.
fn url_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The forms a constant must not take in a fingerprint artifact.
fn forbidden_forms(value: &str) -> Vec<String> {
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        value.to_owned(),
        url_encoded(value),
        url_encoded(&url_encoded(value)),
        hex,
        STANDARD.encode(value),
        URL_SAFE.encode(value),
        value.replace('-', ""),
        value.chars().rev().collect(),
    ];
    // base64 without its padding, and the escaped forms of JSON, HTML and JS strings.
    forms.push(URL_SAFE_NO_PAD.encode(value));
    forms.push(value.replace('/', "\\/"));
    forms.push(value.replace('/', "&#47;").replace(':', "&#58;"));
    forms.sort();
    forms.dedup();
    forms
}

/// The script of a fingerprint artifact.
fn extract_script(name: &str, artifact: &str) -> String {
    let (open, close) = if name == "fingerprint_svg" {
        ("<script><![CDATA[\n", "]]></script>")
    } else {
        ("<script>\n", "</script>")
    };
    let start = artifact
        .find(open)
        .unwrap_or_else(|| panic!("{name}: no script"))
        + open.len();
    let end = start + artifact[start..].find(close).unwrap();
    assert_eq!(artifact.matches(open).count(), 1, "{name}: one script");
    artifact[start..end].to_owned()
}

#[test]
fn fingerprint_artifacts_hide_beacon_slug_mint_and_nonce() {
    for slug in [SLUG, OTHER_SLUG, "Imported_Slug-0123456789"] {
        let t = token(slug);
        for name in ["fingerprint_html", "fingerprint_svg"] {
            let artifact = text(name, &t);
            let lower = artifact.to_lowercase();
            for value in [t.beacon.as_str(), slug, &t.mint.to_string(), &t.nonce] {
                for form in forbidden_forms(value) {
                    assert!(
                        !lower.contains(&form.to_lowercase()),
                        "{name} of {slug} contains {form:?} (a form of {value:?})"
                    );
                }
            }
            let script = extract_script(name, &artifact);
            assert!(
                !script.contains("Q_"),
                "{name}: an identifier was not renamed"
            );
            assert!(
                !script.contains("@@"),
                "{name}: a constant was not replaced"
            );
            assert!(
                !script.contains("</"),
                "{name}: the script closes an element"
            );
            assert!(
                !script.contains("]]>"),
                "{name}: the script closes the CDATA block"
            );
            for key in [
                "mint", "nav", "scr", "tz", "cn", "cv", "gl", "au", "ft", "rtc", "bt", "pf", "pm",
                "id",
            ] {
                assert!(script.contains(&format!("{key}:")), "{name}: key {key}");
            }
        }
        // One script per token, the same in both artifacts.
        assert_eq!(
            extract_script("fingerprint_html", &text("fingerprint_html", &t)),
            extract_script("fingerprint_svg", &text("fingerprint_svg", &t))
        );
    }
    assert_ne!(
        extract_script("fingerprint_html", &text("fingerprint_html", &token(SLUG))),
        extract_script(
            "fingerprint_html",
            &text("fingerprint_html", &token(OTHER_SLUG))
        ),
        "the obfuscation depends on the slug"
    );
}

#[test]
fn fingerprint_pages_look_the_part() {
    for slug in [
        SLUG,
        OTHER_SLUG,
        "Imported_Slug-0123456789",
        "zzzzzzzzzzzzzzzzzzzzzzzzzz",
    ] {
        let t = token(slug);
        let html = text("fingerprint_html", &t);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>Internal Asset Directory</title>"));
        assert!(html.contains("<p class=\"sync\">Last sync: "));
        assert!(html.contains("<footer>AssetDirectory "));
        let rows = html.matches("<tr><td>").count();
        assert!((5..=8).contains(&rows), "{rows} rows");
        assert!(
            html.trim_end().ends_with("</script>\n</body>\n</html>"),
            "script at the end of body"
        );

        let svg = text("fingerprint_svg", &t);
        assert!(svg.contains(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"360\" viewBox=\"0 0 600 360\""
        ));
        assert!(svg.trim_end().ends_with("]]></script>\n</svg>"));
        assert_eq!(well_formed(&svg), Ok(()), "{svg}");
    }
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run node with `source` on stdin.
fn node(args: &[&str], source: &str) -> std::process::Output {
    let mut child = Command::new("node")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(source.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn fingerprint_script_parses_in_node() {
    if !node_available() {
        std::io::stderr()
            .write_all(b"skipped: node is not on PATH\n")
            .unwrap();
        return;
    }
    for slug in [SLUG, OTHER_SLUG] {
        let t = token(slug);
        for name in ["fingerprint_html", "fingerprint_svg"] {
            let script = extract_script(name, &text(name, &t));
            let out = node(&["--check"], &script);
            assert!(
                out.status.success(),
                "{name}: {}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A browser-less stand-in: an `Image` that records its URLs, a navigator and a screen; no
/// document, so the DOM collectors report errors. Prints the URLs once the data went out.
const HARNESS: &str = r#"
var __sent = [];
globalThis.window = globalThis;
globalThis.Image = function () {
  Object.defineProperty(this, 'src', { set: function (v) { __sent.push(v); }, get: function () { return ''; } });
};
Object.defineProperty(globalThis, 'navigator', { configurable: true, writable: true, value: {
  userAgent: __UA, platform: 'Linux x86_64', language: 'en-GB', languages: ['en-GB', 'en'],
  cookieEnabled: true, hardwareConcurrency: 8, maxTouchPoints: 0, webdriver: true
} });
globalThis.screen = { width: 1920, height: 1080, availWidth: 1920, availHeight: 1050, colorDepth: 24, pixelDepth: 24 };
if (__NO_CRYPTO) { Object.defineProperty(globalThis, 'crypto', { value: undefined, configurable: true, writable: true }); }
var __start = Date.now();
var __poll = setInterval(function () {
  var done = __sent.some(function (u) { return u.indexOf('d=') >= 0; });
  if (done || Date.now() - __start > 8000) {
    clearInterval(__poll);
    process.stdout.write(JSON.stringify(__sent));
    process.exit(0);
  }
}, 20);
"#;

/// Run a fingerprint artifact's script in Node; the URLs it requested.
fn run_script(script: &str, user_agent: &str, no_crypto: bool) -> Vec<String> {
    let source = format!(
        "var __UA = {}; var __NO_CRYPTO = {no_crypto};\n{HARNESS}\n{script}",
        Value::String(user_agent.to_owned())
    );
    let out = node(&[], &source);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn query(url: &str, beacon: &str) -> Vec<(String, String)> {
    let q = url
        .strip_prefix(beacon)
        .and_then(|r| r.strip_prefix('?'))
        .unwrap_or_else(|| panic!("{url} is not a beacon request"));
    q.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Check a decoded fingerprint; its `id`.
fn check_fingerprint(json: &str, t: &Token) -> String {
    let keys = [
        "mint", "nav", "scr", "tz", "cn", "cv", "gl", "au", "ft", "rtc", "bt", "pf", "pm", "id",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            json.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {json}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys in table order: {json}"
    );
    let fp: Value = serde_json::from_str(json).unwrap();
    assert_eq!(fp["mint"], t.mint.to_string());
    assert_eq!(fp["nav"]["wd"], true, "{json}");
    assert_eq!(fp["nav"]["pl"], "Linux x86_64");
    assert_eq!(fp["nav"]["lgs"], "en-GB,en");
    assert_eq!(fp["nav"]["dm"], Value::Null);
    assert_eq!(fp["scr"]["w"], 1920);
    assert!(fp["tz"]["z"].is_string());
    assert!(fp["tz"]["off"].is_number());
    assert_eq!(fp["cn"], Value::Null);
    for key in ["cv", "gl", "au", "ft", "rtc", "bt", "pm"] {
        assert!(
            fp[key]["err"].is_string(),
            "{key} without a browser: {json}"
        );
    }
    for key in ["med", "p95", "mn", "mx"] {
        assert!(fp["pf"][key].is_number(), "pf.{key}: {json}");
    }
    // id: SHA-256 of the non-empty entries joined by '|', recomputed here.
    let joined = format!(
        "Linux x86_64|8|{}|1920x1080",
        fp["tz"]["z"].as_str().unwrap()
    );
    let id: String = Sha256::digest(joined.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(fp["id"], id, "{json}");
    id
}

#[test]
fn fingerprint_script_reports_to_the_beacon_in_node() {
    if !node_available() {
        std::io::stderr()
            .write_all(b"skipped: node is not on PATH\n")
            .unwrap();
        return;
    }
    let t = token(SLUG);
    let html_script = extract_script("fingerprint_html", &text("fingerprint_html", &t));

    // Single shot, with crypto.subtle.
    let sent = run_script(
        &html_script,
        "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/130.0",
        false,
    );
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], format!("{}?o=1&k={}", t.beacon, t.nonce));
    let q = query(&sent[1], &t.beacon);
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(param(&q, "k"), Some(t.nonce.as_str()));
    let d = param(&q, "d").unwrap();
    assert!(d.len() <= 6000);
    assert!(
        d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{d}"
    );
    let json = String::from_utf8(URL_SAFE_NO_PAD.decode(d).unwrap()).unwrap();
    let id = check_fingerprint(&json, &t);

    // Chunked (a 9000-character user agent), with the JS SHA-256 (no crypto.subtle).
    let long_ua = "x".repeat(9000);
    let sent = run_script(&html_script, &long_ua, true);
    assert_eq!(sent[0], format!("{}?o=1&k={}", t.beacon, t.nonce));
    let chunks: Vec<_> = sent[1..].iter().map(|u| query(u, &t.beacon)).collect();
    assert!(chunks.len() >= 2, "{sent:?}");
    let sid = param(&chunks[0], "s").unwrap();
    assert!((1..=16).contains(&sid.len()));
    assert!(
        sid.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{sid}"
    );
    let mut joined = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["s", "i", "n", "d", "k"]);
        assert_eq!(param(chunk, "s"), Some(sid));
        assert_eq!(param(chunk, "i"), Some(i.to_string().as_str()));
        assert_eq!(param(chunk, "n"), Some(chunks.len().to_string().as_str()));
        assert_eq!(param(chunk, "k"), Some(t.nonce.as_str()));
        let part = param(chunk, "d").unwrap();
        assert!(part.len() <= 6000);
        if i + 1 < chunks.len() {
            assert_eq!(part.len(), 6000);
        }
        joined.push_str(part);
    }
    let json = String::from_utf8(URL_SAFE_NO_PAD.decode(&joined).unwrap()).unwrap();
    assert!(json.contains(&long_ua));
    assert_eq!(
        check_fingerprint(&json, &t),
        id,
        "the JS SHA-256 agrees with crypto.subtle"
    );

    // The SVG's script is the same one and decodes the same constants.
    let svg_script = extract_script("fingerprint_svg", &text("fingerprint_svg", &t));
    let sent = run_script(&svg_script, "Mozilla/5.0", false);
    assert_eq!(sent[0], format!("{}?o=1&k={}", t.beacon, t.nonce));
}

/// A small XML well-formedness check: balanced tags, quoted attributes, one root.
fn well_formed(xml: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = xml;
    let mut roots = 0;
    while let Some(i) = rest.find('<') {
        if stack.is_empty() && !rest[..i].trim().is_empty() {
            return Err(format!("text outside the root: {:?}", &rest[..i]));
        }
        if rest[..i].contains('<') || rest[..i].contains('>') && !stack.is_empty() {
            return Err(format!("stray bracket in {:?}", &rest[..i]));
        }
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("<?") {
            rest = &r[r.find("?>").ok_or("unclosed <?")? + 2..];
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            rest = &r[r.find("]]>").ok_or("unclosed CDATA")? + 3..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->").ok_or("unclosed comment")? + 3..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let end = r.find('>').ok_or("unclosed end tag")?;
            let name = r[..end].trim();
            if stack.pop() != Some(name) {
                return Err(format!("</{name}> does not close the open element"));
            }
            rest = &r[end + 1..];
        } else {
            let mut quote = None;
            let mut end = None;
            for (j, c) in rest.char_indices().skip(1) {
                match (quote, c) {
                    (None, '"' | '\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), '<') => return Err("'<' in an attribute".to_owned()),
                    (None, '>') => {
                        end = Some(j);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unclosed start tag")?;
            let tag = &rest[1..end];
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap();
            if name.is_empty() {
                return Err(format!("empty tag name in {tag:?}"));
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
            rest = &rest[end + 1..];
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed elements {stack:?}"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

/// CRC-32 as ZIP computes it, written again here.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// The entries of a ZIP, read through its central directory; CRCs and local headers checked.
fn unzip(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let eocd = zip.len() - 22;
    assert_eq!(
        le32(zip, eocd),
        0x0605_4b50,
        "EOCD without a comment at the end"
    );
    let count = le16(zip, eocd + 10);
    assert_eq!(le16(zip, eocd + 8), count);
    let (cd_size, cd_offset) = (le32(zip, eocd + 12), le32(zip, eocd + 16));
    assert_eq!(cd_offset + cd_size, eocd);
    let mut entries = Vec::new();
    let mut at = cd_offset;
    for _ in 0..count {
        assert_eq!(le32(zip, at), 0x0201_4b50, "central header at {at}");
        let method = le16(zip, at + 10);
        let crc = le32(zip, at + 16) as u32;
        let (csize, usize_) = (le32(zip, at + 20), le32(zip, at + 24));
        let (name_len, extra_len, comment_len) =
            (le16(zip, at + 28), le16(zip, at + 30), le16(zip, at + 32));
        let local = le32(zip, at + 42);
        let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
        at += 46 + name_len + extra_len + comment_len;
        assert_eq!(method, 0, "{name}: stored");
        assert_eq!(csize, usize_);
        assert_eq!(le32(zip, local), 0x0403_4b50, "{name}: local header");
        assert_eq!(le32(zip, local + 14) as u32, crc, "{name}: local CRC");
        assert_eq!(le32(zip, local + 18), csize);
        let (lname, lextra) = (le16(zip, local + 26), le16(zip, local + 28));
        assert_eq!(&zip[local + 30..local + 30 + lname], name.as_bytes());
        let data_at = local + 30 + lname + lextra;
        let data = zip[data_at..data_at + csize].to_vec();
        assert_eq!(crc32(&data), crc, "{name}: CRC");
        entries.push((name, data));
    }
    assert_eq!(at, eocd);
    entries
}

#[test]
fn docx_is_a_zip_whose_picture_is_an_external_image_at_the_beacon() {
    let t = token(SLUG);
    let docx = generate("honeydoc_docx", &t);
    let entries = unzip(&docx);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "[Content_Types].xml");
    for required in [
        "_rels/.rels",
        "word/document.xml",
        "word/_rels/document.xml.rels",
    ] {
        assert!(names.contains(&required), "{required} in {names:?}");
    }
    let part = |name: &str| {
        let (_, data) = entries.iter().find(|(n, _)| n == name).unwrap();
        String::from_utf8(data.clone()).unwrap()
    };
    for (name, _) in &entries {
        assert_eq!(well_formed(&part(name)), Ok(()), "{name}");
    }
    let types = part("[Content_Types].xml");
    assert!(types.contains(
        "<Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>"
    ));
    assert!(part("_rels/.rels").contains("Target=\"word/document.xml\""));
    let rels = part("word/_rels/document.xml.rels");
    let rel = rels
        .split("<Relationship ")
        .find(|r| r.contains("TargetMode=\"External\""))
        .unwrap_or_else(|| panic!("no external relationship: {rels}"));
    assert!(
        rel.contains(
            "Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/image\""
        ),
        "{rel}"
    );
    assert!(rel.contains(&format!("Target=\"{}\"", t.beacon)), "{rel}");
    let id = rel
        .split("Id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let document = part("word/document.xml");
    assert!(document.contains("<w:drawing>"));
    assert!(
        document.contains(&format!("<a:blip r:link=\"{id}\"/>")),
        "{document}"
    );
    assert!(document.contains("Q3 Operations Review"));
}

#[test]
fn pdf_opens_with_a_uri_action_and_its_xref_is_exact() {
    let t = token(SLUG);
    let pdf = generate("honeydoc_pdf", &t);
    assert!(pdf.starts_with(b"%PDF-1."));
    assert!(pdf.ends_with(b"%%EOF\n"));
    let catalog_at = find(&pdf, b"/Type /Catalog").unwrap();
    let open_action = format!("/OpenAction << /S /URI /URI ({}) >>", t.beacon);
    let action_at = find(&pdf, open_action.as_bytes()).unwrap_or_else(|| panic!("{open_action}"));
    let catalog_end = catalog_at + find(&pdf[catalog_at..], b"endobj").unwrap();
    assert!(
        (catalog_at..catalog_end).contains(&action_at),
        "the action is in the catalog"
    );

    let tail = std::str::from_utf8(&pdf[find(&pdf, b"startxref\n").unwrap()..]).unwrap();
    let xref: usize = tail.lines().nth(1).unwrap().parse().unwrap();
    assert!(
        pdf[xref..].starts_with(b"xref\n0 "),
        "startxref points at the table"
    );
    let table = std::str::from_utf8(&pdf[xref..]).unwrap();
    let mut lines = table.lines().skip(1);
    let size: usize = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(lines.next(), Some("0000000000 65535 f "));
    for n in 1..size {
        let entry = lines.next().unwrap();
        assert_eq!(entry.len(), 19, "{entry:?}: 20 bytes with the EOL");
        assert!(entry.ends_with(" 00000 n "), "{entry:?}");
        let offset: usize = entry[..10].parse().unwrap();
        assert!(
            pdf[offset..].starts_with(format!("{n} 0 obj\n").as_bytes()),
            "object {n} at {offset}"
        );
    }
    assert_eq!(lines.next(), Some("trailer"));
    assert!(table.contains(&format!("/Size {size} /Root 1 0 R")));
    // The content stream's /Length is its exact length.
    let stream_dict = find(&pdf, b"<< /Length ").unwrap() + "<< /Length ".len();
    let len_end = stream_dict + find(&pdf[stream_dict..], b" >>").unwrap();
    let length: usize = std::str::from_utf8(&pdf[stream_dict..len_end])
        .unwrap()
        .parse()
        .unwrap();
    let data = len_end + " >>\nstream\n".len();
    assert!(pdf[data + length..].starts_with(b"endstream"));
}
