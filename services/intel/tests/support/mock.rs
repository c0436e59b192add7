//! One mock HTTP server on 127.0.0.1 standing in for every provider (their paths do not
//! collide): it records every request and answers with real-shaped bodies, per provider and
//! address, or with what a test queued (errors, 429s, stalls, malformed JSON).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `abuseipdb`, `greynoise`, `feodo`, `threatfox` or `unknown`.
    pub provider: &'static str,
    /// The address asked about (`""` for the Feodo feed).
    pub ip: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub at: Instant,
}

/// What the mock answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body with a status.
    Json(u16, Value),
    /// Any body with a status.
    Text(u16, String),
    /// 429, with this `Retry-After` if any.
    TooMany(Option<String>),
    /// Answer this long after the request (longer than the client's timeout).
    Stall(Duration),
}

#[derive(Default)]
struct Script {
    /// Sticky answers by (provider, address).
    by_ip: HashMap<(&'static str, String), Reply>,
    /// One-shot answers by provider, taken before anything else.
    queued: HashMap<&'static str, VecDeque<Reply>>,
}

#[derive(Default)]
struct Inner {
    log: Mutex<Vec<Recorded>>,
    script: Mutex<Script>,
}

/// The running mock.
#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Mock {
    pub async fn start() -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Mock { addr, inner }
    }

    /// The base URL every provider is configured with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `provider` about `ip` with `reply` from now on.
    pub fn set(&self, provider: &'static str, ip: &str, reply: Reply) {
        let mut script = self.inner.script.lock().unwrap();
        script.by_ip.insert((provider, ip.to_owned()), reply);
    }

    /// Answer the next request to `provider`, whatever it asks, with `reply`.
    pub fn queue(&self, provider: &'static str, reply: Reply) {
        let mut script = self.inner.script.lock().unwrap();
        script.queued.entry(provider).or_default().push_back(reply);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.log.lock().unwrap().clone()
    }

    /// The requests to one provider.
    pub fn to(&self, provider: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.provider == provider)
            .collect()
    }
}

fn which(uri: &Uri, body: &[u8]) -> (&'static str, String) {
    let path = uri.path();
    if path == "/api/v2/check" {
        let ip = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("ipAddress="))
            .unwrap_or_default();
        return ("abuseipdb", ip.to_owned());
    }
    if let Some(ip) = path.strip_prefix("/v3/community/") {
        return ("greynoise", ip.to_owned());
    }
    if path == "/downloads/ipblocklist.json" {
        return ("feodo", String::new());
    }
    if path == "/api/v1/" {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        return (
            "threatfox",
            v["search_term"].as_str().unwrap_or_default().to_owned(),
        );
    }
    ("unknown", String::new())
}

/// What a provider says about an address nobody scripted: nothing much.
fn default_reply(provider: &str, ip: &str) -> Reply {
    match provider {
        "abuseipdb" => Reply::Json(200, abuse(ip, 0, &[])),
        "greynoise" => Reply::Json(404, grey_not_seen(ip)),
        "feodo" => Reply::Json(200, json!([])),
        "threatfox" => Reply::Json(200, fox_no_result()),
        _ => Reply::Text(404, "no such endpoint".into()),
    }
}

async fn answer(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (provider, ip) = which(&uri, &body);
    inner.log.lock().unwrap().push(Recorded {
        provider,
        ip: ip.clone(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let reply = {
        let mut script = inner.script.lock().unwrap();
        let queued = script
            .queued
            .get_mut(provider)
            .and_then(VecDeque::pop_front);
        queued
            .or_else(|| script.by_ip.get(&(provider, ip.clone())).cloned())
            .unwrap_or_else(|| default_reply(provider, &ip))
    };
    match reply {
        Reply::Json(status, v) => {
            let headers = [(axum::http::header::CONTENT_TYPE, "application/json")];
            (code(status), headers, v.to_string()).into_response()
        }
        Reply::Text(status, text) => (code(status), text).into_response(),
        Reply::TooMany(retry_after) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                "{\"errors\":[{\"detail\":\"Too Many Requests\"}]}",
            )
                .into_response();
            if let Some(v) = retry_after {
                r.headers_mut().insert("retry-after", v.parse().unwrap());
            }
            r
        }
        Reply::Stall(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "{}").into_response()
        }
    }
}

fn code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap()
}

/// An AbuseIPDB `check?verbose` answer: one report per category list.
pub fn abuse(ip: &str, score: i64, reports: &[&[i64]]) -> Value {
    let reports: Vec<Value> = reports
        .iter()
        .enumerate()
        .map(|(i, cats)| {
            json!({"reportedAt": format!("2026-12-0{}T08:00:00+00:00", i % 9 + 1),
                "comment": "Dec  3 08:00:01 sshd[1234]: Failed password for root",
                "categories": cats, "reporterId": 1000 + i,
                "reporterCountryCode": "DE", "reporterCountryName": "Germany"})
        })
        .collect();
    json!({"data": {
        "ipAddress": ip, "isPublic": true, "ipVersion": 4, "isWhitelisted": false,
        "abuseConfidenceScore": score, "countryCode": "NL", "usageType": "Data Center/Web Hosting/Transit",
        "isp": "Example Hosting B.V.", "domain": "example.net", "hostnames": [],
        "isTor": false, "totalReports": reports.len(), "numDistinctUsers": reports.len(),
        "lastReportedAt": "2026-12-03T08:00:00+00:00", "reports": reports
    }})
}

/// A GreyNoise community answer for a seen address.
pub fn grey(ip: &str, classification: &str, noise: bool, riot: bool) -> Value {
    json!({"ip": ip, "noise": noise, "riot": riot, "classification": classification,
        "name": "unknown", "link": format!("https://viz.greynoise.io/ip/{ip}"),
        "last_seen": "2026-12-03", "message": "Success"})
}

/// GreyNoise's 404 body.
pub fn grey_not_seen(ip: &str) -> Value {
    json!({"ip": ip, "noise": false, "riot": false,
        "message": "IP not observed scanning the internet or contained in RIOT data set."})
}

/// A ThreatFox `search_ioc` hit: one IOC per (ioc, threat type).
pub fn fox(iocs: &[(&str, &str)]) -> Value {
    let data: Vec<Value> = iocs
        .iter()
        .enumerate()
        .map(|(i, (ioc, threat))| {
            json!({"id": format!("{}", 1_400_000 + i), "ioc": ioc, "threat_type": threat,
                "threat_type_desc": "Indicator that identifies a botnet command&control server (C&C)",
                "ioc_type": if ioc.contains(':') { "ip:port" } else { "ip" },
                "ioc_type_desc": "ip:port combination that is used for botnet Command&control (C&C)",
                "malware": "win.cobalt_strike", "malware_printable": "Cobalt Strike",
                "malware_alias": "Agentemis,BEACON,CobaltStrike", "malware_malpedia": "https://malpedia.caad.fkie.fraunhofer.de/details/win.cobalt_strike",
                "confidence_level": 100, "first_seen": "2026-11-30 08:00:00 UTC", "last_seen": null,
                "reference": null, "reporter": "abuse_ch", "tags": ["CobaltStrike", "c2"]})
        })
        .collect();
    json!({"query_status": "ok", "data": data})
}

/// ThreatFox's answer when it knows nothing.
pub fn fox_no_result() -> Value {
    json!({"query_status": "no_result", "data": "Your search did not yield any results"})
}

/// A Feodo blocklist listing `entries` as (address, malware).
pub fn feodo(entries: &[(&str, &str)]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|(ip, malware)| {
                json!({"ip_address": ip, "port": 443, "status": "online", "hostname": null,
                    "as_number": 64500, "as_name": "EXAMPLE-AS", "country": "NL",
                    "first_seen": "2026-11-02 07:15:01", "last_online": "2026-12-03",
                    "malware": malware})
            })
            .collect(),
    )
}
