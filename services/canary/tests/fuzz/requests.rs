//! The fuzz run's requests: a seeded generator of valid, odd and malformed requests against
//! the live tokens, each with what the beacon must answer.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use decnet_canary::http::MAX_REQUEST_LINE;
use serde_json::Map;

use super::*;

/// xorshift64*, seeded through splitmix64 so nearby seeds give unrelated streams.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub(super) fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `len` characters of an ASCII alphabet, eight to a draw.
    pub(super) fn text(&mut self, alphabet: &[u8], len: usize) -> String {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let mut x = self.next_u64();
            for _ in 0..(len - out.len()).min(8) {
                out.push(char::from(alphabet[(x & 0xff) as usize % alphabet.len()]));
                x >>= 8;
            }
        }
        out
    }

    /// Text of `lo..=hi` characters.
    pub(super) fn text_in(&mut self, alphabet: &[u8], lo: usize, hi: usize) -> String {
        let n = self.range(lo, hi);
        self.text(alphabet, n)
    }

    pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A live token as the generator knows it.
pub(super) struct Live {
    pub(super) uuid: Uuid,
    pub(super) slug: String,
    pub(super) mint: String,
    pub(super) nonce: Option<String>,
}

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// 200 with the GIF (or, for `HEAD`, its headers).
    Gif,
    /// 405, `Allow: GET, HEAD`.
    NotAllowed,
    /// 414: the request line is over 16 KiB.
    TooLong,
    /// 404: not under `/c/`.
    NotFound,
    /// Anything below 500, or the connection closed.
    Refused,
}

/// A request ready for the wire.
pub(super) struct Req {
    pub(super) wire: Vec<u8>,
    pub(super) head: bool,
    pub(super) expect: Expect,
    /// Sent on a connection of its own, closed afterwards.
    pub(super) fresh: bool,
    /// The server may close the connection after answering it.
    pub(super) taints: bool,
    pub(super) asked_close: bool,
    pub(super) http10: bool,
    /// Shut the write side down once sent.
    pub(super) half_close: bool,
    /// The token and marker of a fingerprint that must validate.
    pub(super) valid: Option<(usize, String)>,
    pub(super) label: &'static str,
}

/// A request being put together.
pub(super) struct Draft {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) version: &'static str,
    pub(super) headers: Vec<(String, Vec<u8>)>,
    pub(super) body: Vec<u8>,
    pub(super) label: &'static str,
    pub(super) valid: Option<(usize, String)>,
}

impl Draft {
    pub(super) fn new(method: &str, target: String, label: &'static str) -> Draft {
        Draft {
            method: method.to_owned(),
            target,
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: Vec::new(),
            label,
            valid: None,
        }
    }

    pub(super) fn header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.push((name.to_owned(), value.into()));
    }

    pub(super) fn line_len(&self) -> usize {
        self.method.len() + 1 + self.target.len() + 1 + self.version.len()
    }

    pub(super) fn expect(&self) -> Expect {
        if self.target.len() > PARSER_MAX_URI
            || self.headers.len() > PARSER_MAX_HEADERS
            || !self.target.starts_with('/')
        {
            Expect::Refused
        } else if self.line_len() > MAX_REQUEST_LINE {
            Expect::TooLong
        } else if !self.target.starts_with("/c/") {
            Expect::NotFound
        } else if self.method == "GET" || self.method == "HEAD" {
            Expect::Gif
        } else {
            Expect::NotAllowed
        }
    }
}

pub(super) struct Gen<'a> {
    pub(super) rng: Rng,
    pub(super) tokens: &'a [Live],
    pub(super) task: usize,
    pub(super) serial: u64,
    pub(super) host: String,
}

impl Gen<'_> {
    pub(super) fn marker(&mut self, kind: &str) -> String {
        self.serial += 1;
        format!("fz-{kind}-{}-{}", self.task, self.serial)
    }

    pub(super) fn token(&mut self) -> usize {
        self.rng.below(self.tokens.len())
    }

    /// A live slug as a client might write it: as minted, upper-cased, mixed, escaped.
    pub(super) fn slug_form(&mut self, t: usize) -> String {
        let slug = self.tokens[t].slug.clone();
        match self.rng.below(10) {
            0..=4 => slug,
            5 | 6 => slug.to_ascii_uppercase(),
            7 => slug
                .chars()
                .map(|c| {
                    if self.rng.percent(50) {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
            8 => slug.bytes().map(|b| format!("%{b:02X}")).collect(),
            _ => slug
                .bytes()
                .map(|b| {
                    if self.rng.percent(30) {
                        format!("%{b:02x}")
                    } else {
                        char::from(b).to_string()
                    }
                })
                .collect(),
        }
    }

    /// Path text: `pchar`s with valid and broken escapes.
    pub(super) fn path_text(&mut self, len: usize) -> String {
        let mut s = String::new();
        while s.len() < len {
            match self.rng.below(24) {
                0 => s.push_str(&format!("%{:02X}", self.rng.below(256))),
                1 => s.push_str(self.rng.pick::<&str>(&BROKEN_ESCAPES)),
                2 => s.push_str(self.rng.pick::<&str>(&[
                    "%C3%A9",
                    "%E2%82%AC",
                    "%F0%9F%A6%80",
                    "%2F",
                ])),
                _ => s.push(char::from(*self.rng.pick(PCHAR))),
            }
        }
        s
    }

    pub(super) fn unknown_slug(&mut self) -> String {
        let live = self.tokens[self.token()].slug.clone();
        match self.rng.below(14) {
            0 => self.rng.text(BASE32, 26),
            1 => {
                let n = self.rng.range(16, 64);
                self.rng.text(IMPORTED, n)
            }
            2 => {
                // One character off a live slug.
                let mut b = live.into_bytes();
                let at = self.rng.below(b.len());
                let was = b[at];
                while b[at] == was {
                    b[at] = *self.rng.pick(BASE32);
                }
                String::from_utf8(b).unwrap()
            }
            3 => {
                let n = self.rng.range(1, 15);
                self.rng.text(BASE32, n)
            }
            4 => {
                let n = self.rng.range(65, 300);
                self.rng.text(IMPORTED, n)
            }
            5 => String::new(),
            6 => {
                let at = self.rng.below(live.len() + 1);
                let bad = *self.rng.pick(&BROKEN_ESCAPES);
                format!("{}{bad}{}", &live[..at], &live[at..])
            }
            7 => self
                .rng
                .text(BASE32, 26)
                .bytes()
                .map(|b| format!("%{b:02x}"))
                .collect(),
            8 => {
                let n = self.rng.range(1, 80);
                self.path_text(n)
            }
            9 => {
                let at = self.rng.below(live.len());
                let odd = *self.rng.pick(&[".", "~", "!", "%2E", "%20", "+", "%2F"]);
                format!("{}{odd}{}", &live[..at], &live[at..])
            }
            10 => "%C3%A9".repeat(self.rng.range(3, 30)),
            11 => format!("%00{live}"),
            12 => format!("{}%20", live.to_ascii_uppercase()),
            _ => "%".repeat(self.rng.range(1, 40)),
        }
    }

    pub(super) fn sub_path(&mut self) -> String {
        match self.rng.below(12) {
            0..=5 => String::new(),
            6 => "/".to_owned(),
            7 => (*self.rng.pick(&[
                "/repo.git/info/refs",
                "/webhook",
                "/x.gif",
                "/../../etc/passwd",
                "//",
                "/%2e%2e/%2e%2e/",
                "/.env",
            ]))
            .to_owned(),
            8 => {
                let n = self.rng.range(1, 40);
                format!("/{}", self.path_text(n))
            }
            9 | 10 => {
                let segments = self.rng.range(1, 6);
                (0..segments)
                    .map(|_| {
                        let n = self.rng.range(0, 20);
                        format!("/{}", self.path_text(n))
                    })
                    .collect()
            }
            _ => {
                let n = self.rng.range(1900, 3000);
                format!("/{}", self.path_text(n))
            }
        }
    }

    /// Pairs nothing reads (or that only look like the script's).
    pub(super) fn junk(&mut self, pairs: &mut Vec<String>) {
        for _ in 0..self.rng.below(4) {
            let key = *self.rng.pick(&[
                "utm_source",
                "ref",
                "x",
                "D",
                "K",
                "_",
                "q",
                "dd",
                "kk",
                "s1",
                "%64",
                "d%3D",
                "",
            ]);
            let n = self.rng.range(0, 30);
            let value = self.rng.text(SAFE, n);
            pairs.push(match self.rng.below(5) {
                0 => key.to_owned(),
                _ => format!("{key}={value}"),
            });
        }
    }

    pub(super) fn join(&mut self, mut pairs: Vec<String>, shuffle: bool) -> String {
        if shuffle {
            self.rng.shuffle(&mut pairs);
        }
        let mut q = pairs.join("&");
        if self.rng.percent(5) {
            q.push('&');
        }
        q
    }

    pub(super) fn random_json(&mut self, depth: usize) -> Value {
        let top = if depth == 0 { 6 } else { 8 };
        match self.rng.below(top) {
            0 => Value::Null,
            1 => Value::Bool(self.rng.percent(50)),
            2 => json!(self.rng.next_u64() as i64),
            3 => json!((self.rng.next_u64() % 1_000_000) as f64 / 7.0),
            4 => {
                let n = self.rng.range(0, 24);
                Value::String(self.rng.text(PCHAR, n))
            }
            5 => Value::String(
                (*self.rng.pick(&[
                    "\u{0}\u{1}\u{7f}",
                    "é€🦀",
                    "\"\\/\n\t",
                    "\u{feff}",
                    "203.0.113.9",
                    "ANGLE (NVIDIA, NVIDIA GeForce RTX 3080 Direct3D11 vs_5_0 ps_5_0)",
                    "SwiftShader",
                    "Europe/Paris",
                    "",
                ]))
                .to_owned(),
            ),
            6 => {
                let n = self.rng.below(4);
                Value::Array((0..n).map(|_| self.random_json(depth - 1)).collect())
            }
            _ => {
                let n = self.rng.below(5);
                let mut m = Map::new();
                for _ in 0..n {
                    let k = self.rng.text(LOWER36, 2);
                    m.insert(k, self.random_json(depth - 1));
                }
                Value::Object(m)
            }
        }
    }

    /// A collector block: realistic fields, random ones, or the script's error object.
    pub(super) fn block(&mut self, key: &str) -> Value {
        if self.rng.percent(15) {
            return json!({"err": "unavailable"});
        }
        let mut m = match key {
            "scr" => json!({"w": 1920, "h": 1080, "aw": 1920, "ah": 1040, "cd": 24, "dpr": 1}),
            "tz" => {
                json!({"z": self.rng.pick(&["Europe/Paris", "America/New_York", "Asia/Tokyo", "", "Mars/Olympus"]),
                "off": (self.rng.below(1500) as i64) - 750, "lc": "en-US"})
            }
            "cv" => json!({"h": self.rng.text(b"0123456789abcdef", 64), "n": self.rng.below(9000)}),
            "gl" => json!({"v": "WebKit", "r": "WebKit WebGL",
                "ur": self.rng.pick(&["ANGLE (Intel, Mesa Intel(R) UHD Graphics 620, OpenGL 4.6)",
                    "ANGLE (NVIDIA, NVIDIA GeForce RTX 3080 Direct3D11 vs_5_0 ps_5_0)",
                    "Apple M2", "Mali-G78", "Google SwiftShader"])}),
            "au" => json!({"s": "35.73833084", "h": self.rng.text(b"0123456789abcdef", 64)}),
            "ft" => json!({"d": ["Arial", "DejaVu Sans"], "n": 2, "t": 49}),
            _ => {
                json!({"ip": [self.rng.pick(&["203.0.113.9", "10.0.0.2", "::1", "nope", "2001:db8::1", "127.0.0.1"]),
                "198.51.100.77"], "n": 3, "c": ["candidate:1 1 udp 2122260223 10.0.0.2 54321 typ host"]})
            }
        };
        let extra = self.random_json(3);
        m.as_object_mut()
            .unwrap()
            .insert(self.rng.text(LOWER36, 3), extra);
        m
    }

    /// A fingerprint object with `mint`, `nav` (carrying the marker) and `objects` more
    /// collector objects.
    pub(super) fn fingerprint(
        &mut self,
        mint: &str,
        marker: &str,
        objects: usize,
        pad: usize,
    ) -> Value {
        let mut fp = Map::new();
        fp.insert("mint".into(), json!(mint));
        fp.insert(
            "nav".into(),
            json!({"ua": marker, "pl": self.rng.pick(&["Linux x86_64", "Win32", "MacIntel", "iPhone", ""]),
                "lg": "en-US", "lgs": "en-US,en", "wd": self.rng.percent(30), "hc": 8}),
        );
        let mut keys = SHAPE_KEYS.to_vec();
        self.rng.shuffle(&mut keys);
        for key in &keys[..objects.min(keys.len())] {
            let block = self.block(key);
            fp.insert((*key).into(), block);
        }
        for key in &keys[objects.min(keys.len())..] {
            if self.rng.percent(30) {
                // Present but not an object: does not count toward the shape.
                let v = match self.rng.below(3) {
                    0 => Value::Null,
                    1 => json!("x"),
                    _ => json!([1, 2]),
                };
                fp.insert((*key).into(), v);
            }
        }
        if self.rng.percent(30) {
            fp.insert(
                "id".into(),
                json!(self.rng.text(b"0123456789abcdefABCDEF", 64)),
            );
        }
        if pad > 0 {
            fp.insert("pad".into(), json!(self.rng.text(PCHAR, pad)));
        }
        Value::Object(fp)
    }

    pub(super) fn encode(&mut self, fp: &Value) -> String {
        let b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(fp).unwrap());
        match self.rng.below(10) {
            // Padding is tolerated; percent-escapes of the alphabet decode to the same text.
            0 => {
                let pad = (4 - b64.len() % 4) % 4;
                format!("{b64}{}", "=".repeat(pad))
            }
            1 => b64
                .bytes()
                .map(|b| {
                    if self.rng.percent(10) {
                        format!("%{b:02X}")
                    } else {
                        char::from(b).to_string()
                    }
                })
                .collect(),
            _ => b64,
        }
    }

    pub(super) fn wrong_nonce(&mut self) -> String {
        match self.rng.below(4) {
            0 => "0000000000000000".to_owned(),
            1 => self.rng.text(b"0123456789abcdef", 16),
            2 => String::new(),
            _ => self.rng.text_in(b"0123456789abcdef", 1, 40),
        }
    }

    /// `k` for a request that must validate on token `t`.
    pub(super) fn right_k(&mut self, t: usize, pairs: &mut Vec<String>) {
        match self.tokens[t].nonce.clone() {
            Some(nonce) => {
                if self.rng.percent(15) {
                    let wrong = self.wrong_nonce();
                    pairs.push(format!("k={wrong}"));
                    pairs.push(format!("k={nonce}"));
                } else {
                    pairs.push(format!("k={nonce}"));
                }
            }
            // Tokens without a nonce skip layer A: any `k`, or none.
            None => {
                if self.rng.percent(50) {
                    let k = self.wrong_nonce();
                    pairs.push(format!("k={k}"));
                }
            }
        }
    }

    pub(super) fn method_get_or_head(&mut self) -> &'static str {
        if self.rng.percent(85) { "GET" } else { "HEAD" }
    }

    /// A `GET`/`HEAD` on a live slug, maybe with a sub-path and a query nothing reads.
    pub(super) fn live_plain(&mut self, label: &'static str) -> Draft {
        let t = self.token();
        let mut target = format!("/c/{}{}", self.slug_form(t), self.sub_path());
        let mut pairs = Vec::new();
        match self.rng.below(8) {
            0 | 1 => {}
            2 => pairs.push("o=1".to_owned()),
            3 => {
                pairs.push("o=1".to_owned());
                self.right_k(t, &mut pairs);
            }
            4 => pairs.push(
                (*self
                    .rng
                    .pick(&["o=0", "o", "o=", "o=11", "o=1&o=0", "s=ab&i=0"]))
                .to_owned(),
            ),
            _ => self.junk(&mut pairs),
        }
        if !pairs.is_empty() || self.rng.percent(5) {
            let q = self.join(pairs, true);
            target = format!("{target}?{q}");
        }
        Draft::new(self.method_get_or_head(), target, label)
    }

    pub(super) fn unknown(&mut self) -> Draft {
        let mut target = format!("/c/{}{}", self.unknown_slug(), self.sub_path());
        if self.rng.percent(50) {
            let mut pairs = Vec::new();
            if self.rng.percent(50) {
                let d = self.rng.text_in(B64URL, 0, 200);
                pairs.push(format!("d={d}"));
                let k = self.wrong_nonce();
                pairs.push(format!("k={k}"));
            }
            self.junk(&mut pairs);
            let q = self.join(pairs, true);
            target = format!("{target}?{q}");
        }
        Draft::new(self.method_get_or_head(), target, "unknown slug")
    }

    /// A single-shot fingerprint that passes every layer.
    pub(super) fn valid_single(&mut self) -> Draft {
        let t = self.token();
        let marker = self.marker("ok");
        let objects = self.rng.range(2, 7);
        let mint = self.tokens[t].mint.clone();
        let pad = self.rng.range(0, 2000);
        let fp = self.fingerprint(&mint, &marker, objects, pad);
        let d = self.encode(&fp);
        let mut pairs = Vec::new();
        if self.rng.percent(15) {
            // A repeated key: the last one counts.
            let garbage = self.rng.text_in(B64URL, 1, 50);
            pairs.push(format!("d={garbage}"));
        }
        pairs.push(format!("d={d}"));
        self.right_k(t, &mut pairs);
        if self.rng.percent(20) {
            pairs.insert(0, "o=1".to_owned());
        }
        let mut junk = Vec::new();
        self.junk(&mut junk);
        // The script's pairs keep their relative order; junk goes anywhere.
        for j in junk {
            let at = self.rng.below(pairs.len() + 1);
            pairs.insert(at, j);
        }
        let q = self.join(pairs, false);
        let target = format!("/c/{}{}?{q}", self.slug_form(t), self.sub_path());
        let method = self.method_get_or_head();
        let mut draft = Draft::new(method, target, "valid fingerprint");
        if draft.line_len() <= MAX_REQUEST_LINE {
            draft.valid = Some((t, marker));
        }
        draft
    }

    /// A single-shot submission that some layer must refuse.
    pub(super) fn invalid_single(&mut self) -> Draft {
        let t = self.token();
        let marker = self.marker("no");
        let mint = self.tokens[t].mint.clone();
        let mut k_right = true;
        let (d, label) = match self.rng.below(14) {
            0 => (self.rng.text_in(B64URL, 0, 400), "random base64url"),
            1 => {
                let v = self.random_json(4);
                let v = if v.is_object() { v } else { json!({"v": v}) };
                (self.encode(&v), "random object")
            }
            2 => {
                let mut fp = self.fingerprint(&mint, &marker, 5, 0);
                fp.as_object_mut().unwrap().remove("mint");
                (self.encode(&fp), "no mint")
            }
            3 => {
                let other = if self.rng.percent(50) {
                    Uuid::new_v4().to_string()
                } else {
                    let o = (t + 1 + self.rng.below(self.tokens.len() - 1)) % self.tokens.len();
                    self.tokens[o].mint.clone()
                };
                let fp = self.fingerprint(&other, &marker, 4, 0);
                (self.encode(&fp), "wrong mint")
            }
            4 => {
                let thin = self.rng.range(0, 1);
                let fp = self.fingerprint(&mint, &marker, thin, 0);
                (self.encode(&fp), "thin shape")
            }
            5 => {
                let mut fp = self.fingerprint(&mint, &marker, 5, 0);
                let odd = self
                    .rng
                    .pick(&[
                        json!(""),
                        json!(7),
                        json!(null),
                        json!([mint.clone()]),
                        json!(mint.to_uppercase()),
                    ])
                    .clone();
                fp["mint"] = odd;
                (self.encode(&fp), "odd mint")
            }
            6 => ("A".repeat(9 * 1024), "9 KiB"),
            7 => {
                let fp = self.fingerprint(&mint, &marker, 5, 7000);
                (self.encode(&fp), "oversize fingerprint")
            }
            8 => {
                let bad = *self.rng.pick(&[
                    "%zz", "%", "%C3%28", "!!", "%21%21", "===", "e30", "W10", "bnVsbA",
                ]);
                (bad.to_owned(), "broken d")
            }
            9 => {
                let bytes: Vec<u8> = (0..self.rng.range(1, 300))
                    .map(|_| self.rng.next_u64() as u8)
                    .collect();
                (URL_SAFE_NO_PAD.encode(bytes), "random bytes")
            }
            10 => {
                let depth = self.rng.range(100, 3000);
                let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
                (URL_SAFE_NO_PAD.encode(text), "deep nesting")
            }
            11 => {
                let fp = self.fingerprint(&mint, &marker, 5, 0);
                let mut d = STANDARD.encode(serde_json::to_vec(&fp).unwrap());
                if !d.contains(['+', '/']) {
                    d.push_str("+/");
                }
                (d, "standard base64")
            }
            12 => {
                // A good fingerprint followed by a bad one: the last `d` counts.
                let fp = self.fingerprint(&mint, &marker, 5, 0);
                let good = self.encode(&fp);
                (format!("{good}&d=e30"), "valid then garbage")
            }
            _ => {
                if self.tokens[t].nonce.is_some() {
                    k_right = false;
                    let fp = self.fingerprint(&mint, &marker, 5, 0);
                    (self.encode(&fp), "wrong nonce")
                } else {
                    let fp = self.fingerprint(&mint, &marker, 1, 0);
                    (self.encode(&fp), "thin shape")
                }
            }
        };
        let mut pairs = vec![format!("d={d}")];
        if k_right {
            self.right_k(t, &mut pairs);
        } else if self.rng.percent(70) {
            let k = self.wrong_nonce();
            pairs.push(format!("k={k}"));
        }
        self.junk(&mut pairs);
        let q = self.join(pairs, false);
        let target = format!("/c/{}?{q}", self.slug_form(t));
        Draft::new(self.method_get_or_head(), target, label)
    }

    pub(super) fn chunk_target(&mut self, t: usize, fields: &[(&str, String)]) -> String {
        let mut pairs: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.rng.shuffle(&mut pairs);
        let mut junk = Vec::new();
        self.junk(&mut junk);
        pairs.extend(junk.into_iter().filter(|p| !p.starts_with("s1")));
        let q = pairs.join("&");
        format!("/c/{}?{q}", self.slug_form(t))
    }

    pub(super) fn sid(&mut self) -> String {
        self.serial += 1;
        let mut n = self.serial * CLIENTS as u64 + self.task as u64;
        let mut s = String::new();
        while n > 0 {
            s.push(char::from(LOWER36[(n % 36) as usize]));
            n /= 36;
        }
        s
    }

    pub(super) fn chunk_k(&mut self, t: usize) -> Option<String> {
        match &self.tokens[t].nonce {
            Some(n) => Some(n.clone()),
            None if self.rng.percent(50) => Some(self.rng.text(b"0123456789abcdef", 16)),
            None => None,
        }
    }

    /// A chunked fingerprint that completes and validates, parts out of order.
    pub(super) fn valid_chunks(&mut self, out: &mut VecDeque<Draft>) {
        let t = self.token();
        let marker = self.marker("ok");
        let mint = self.tokens[t].mint.clone();
        let pad = self.rng.range(0, 12_000);
        let objects = self.rng.range(2, 7);
        let fp = self.fingerprint(&mint, &marker, objects, pad);
        let d = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&fp).unwrap());
        let least = d.len().div_ceil(8192).max(1);
        let n = self.rng.range(least, (least + 4).min(16));
        let size = d.len().div_ceil(n);
        let parts: Vec<&str> = d
            .as_bytes()
            .chunks(size)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect();
        let n = parts.len();
        let sid = self.sid();
        let k = self.chunk_k(t);
        let mut order: Vec<usize> = (0..n).collect();
        self.rng.shuffle(&mut order);
        if n > 1 && self.rng.percent(20) {
            // A duplicate index before the set completes is ignored.
            let again = order[self.rng.below(n - 1)];
            let at = self
                .rng
                .range(order.iter().position(|i| *i == again).unwrap() + 1, n - 1);
            order.insert(at, again);
        }
        let last = order.len() - 1;
        for (pos, i) in order.into_iter().enumerate() {
            let mut fields = vec![
                ("s", sid.clone()),
                ("i", i.to_string()),
                ("n", n.to_string()),
                ("d", parts[i].to_owned()),
            ];
            if let Some(k) = &k {
                fields.push(("k", k.clone()));
            }
            let target = self.chunk_target(t, &fields);
            let mut draft = Draft::new("GET", target, "valid chunk set");
            if pos == last {
                draft.valid = Some((t, marker.clone()));
            }
            out.push_back(draft);
        }
    }

    /// Chunk sets that never validate: partial, inconsistent, out of shape, garbage.
    pub(super) fn bad_chunks(&mut self, out: &mut VecDeque<Draft>) {
        let t = self.token();
        let sid = self.sid();
        let k = self.chunk_k(t).unwrap_or_default();
        let part = |g: &mut Gen<'_>| {
            let n = g.rng.range(1, 600);
            g.rng.text(B64URL, n)
        };
        let mut sets: Vec<Vec<(&str, String)>> = Vec::new();
        let label = match self.rng.below(6) {
            0 => {
                // Partial: times out.
                let n = self.rng.range(2, 16);
                for i in 0..self.rng.range(1, n - 1) {
                    sets.push(vec![
                        ("i", i.to_string()),
                        ("n", n.to_string()),
                        ("d", part(self)),
                        ("k", k.clone()),
                    ]);
                }
                "partial chunk set"
            }
            1 => {
                // Disagreeing `n` or `k`.
                let n = self.rng.range(2, 16);
                sets.push(vec![
                    ("i", "0".into()),
                    ("n", n.to_string()),
                    ("d", part(self)),
                    ("k", k.clone()),
                ]);
                if self.rng.percent(50) {
                    sets.push(vec![
                        ("i", "1".into()),
                        ("n", (n + 1).to_string()),
                        ("d", part(self)),
                        ("k", k.clone()),
                    ]);
                } else {
                    sets.push(vec![
                        ("i", "1".into()),
                        ("n", n.to_string()),
                        ("d", part(self)),
                        ("k", self.wrong_nonce()),
                    ]);
                }
                "inconsistent chunk set"
            }
            2 => {
                // Out of shape from the first chunk.
                let (i, n): (String, String) = match self.rng.below(8) {
                    0 => ("3".into(), "3".into()),
                    1 => ("0".into(), "0".into()),
                    2 => ("0".into(), "17".into()),
                    3 => ("x".into(), "2".into()),
                    4 => ("-1".into(), "2".into()),
                    5 => ("0".into(), "99999999999999999999999".into()),
                    6 => ("0".into(), "".into()),
                    _ => ("+0".into(), "+2".into()),
                };
                sets.push(vec![
                    ("i", i),
                    ("n", n),
                    ("d", part(self)),
                    ("k", k.clone()),
                ]);
                "chunk out of shape"
            }
            3 => {
                let bad_sid =
                    (*self
                        .rng
                        .pick(&["ABC", "a-b", "aaaaaaaaaaaaaaaaa", "", "%61", "é"]))
                    .to_owned();
                sets.push(vec![
                    ("s", bad_sid),
                    ("i", "0".into()),
                    ("n", "2".into()),
                    ("d", part(self)),
                    ("k", k.clone()),
                ]);
                "bad chunk sid"
            }
            4 => {
                sets.push(vec![
                    ("i", "0".into()),
                    ("n", "2".into()),
                    ("d", "A".repeat(8193)),
                    ("k", k.clone()),
                ]);
                "oversize chunk"
            }
            _ => {
                // Complete but garbage: decode_error once joined.
                let n = self.rng.range(1, 6);
                for i in 0..n {
                    sets.push(vec![
                        ("i", i.to_string()),
                        ("n", n.to_string()),
                        ("d", part(self)),
                        ("k", k.clone()),
                    ]);
                }
                "garbage chunk set"
            }
        };
        for mut fields in sets {
            if !fields.iter().any(|(name, _)| *name == "s") {
                fields.push(("s", sid.clone()));
            }
            if self.rng.percent(10) {
                // Repeated keys: the last one counts.
                let (name, value) = fields[self.rng.below(fields.len())].clone();
                fields.insert(0, (name, format!("{value}x")));
            }
            let target = self.chunk_target(t, &fields);
            out.push_back(Draft::new(self.method_get_or_head(), target, label));
        }
    }

    pub(super) fn random_under_c(&mut self) -> Draft {
        let n = self.rng.range(0, 300);
        let mut target = format!("/c/{}", self.path_text(n));
        if self.rng.percent(50) {
            let n = self.rng.range(0, 300);
            let q: String = (0..n)
                .map(|_| match self.rng.below(12) {
                    0 => char::from(*self.rng.pick(b"/?=&")),
                    1 => '%',
                    _ => char::from(*self.rng.pick(PCHAR)),
                })
                .collect();
            target = format!("{target}?{q}");
        }
        Draft::new(self.method_get_or_head(), target, "random path")
    }

    pub(super) fn other_method(&mut self) -> Draft {
        let mut method = (*self.rng.pick(&[
            "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "PROPFIND", "MKCOL",
            "get", "Get", "head", "GETS", "M-SEARCH", "BREW", "",
        ]))
        .to_owned();
        while method.is_empty() || method == "GET" || method == "HEAD" {
            let n = self.rng.range(1, 12);
            method = self.rng.text(TCHAR, n);
        }
        let slug = if self.rng.percent(60) {
            let t = self.token();
            self.slug_form(t)
        } else {
            self.unknown_slug()
        };
        let mut target = format!("/c/{slug}{}", self.sub_path());
        if self.rng.percent(30) {
            let mut pairs = Vec::new();
            self.junk(&mut pairs);
            pairs.push("o=1".into());
            let q = self.join(pairs, true);
            target = format!("{target}?{q}");
        }
        let mut draft = Draft::new(&method, target, "other method");
        match self.rng.below(10) {
            0..=3 => draft.header("Content-Length", "0"),
            4..=6 => {
                let n = self.rng.range(1, 4096);
                draft.body = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                draft.header("Content-Length", n.to_string());
            }
            _ => {}
        }
        draft
    }

    pub(super) fn other_path(&mut self) -> Draft {
        let t = self.token();
        let slug = self.slug_form(t);
        let target = match self.rng.below(15) {
            0 => "/".to_owned(),
            1 => "/c".to_owned(),
            2 => format!("/C/{slug}"),
            3 => "/favicon.ico".to_owned(),
            4 => (*self
                .rng
                .pick(&["/docs", "/redoc", "/openapi.json", "/metrics", "/healthz"]))
            .to_owned(),
            5 => format!("/c%2F{slug}"),
            6 => format!("/x/c/{slug}"),
            7 => format!("/cc/{slug}"),
            8 => format!("/c?d=e30&k={}", self.wrong_nonce()),
            9 => format!("//c/{slug}"),
            10 => format!("/%63/{slug}"),
            11 => "?c/".to_owned(),
            12 => "*".to_owned(),
            _ => {
                let n = self.rng.range(0, 200);
                format!("/{}", self.path_text(n))
            }
        };
        let method = *self.rng.pick(&["GET", "GET", "HEAD", "POST", "OPTIONS"]);
        let mut draft = Draft::new(method, target, "other path");
        if draft.target == "*" || draft.target.starts_with('?') {
            draft.label = "odd target";
        }
        if method == "POST" {
            draft.header("Content-Length", "0");
        }
        draft
    }

    /// Request lines at, just over and well over 16 KiB.
    pub(super) fn oversized(&mut self) -> Draft {
        let slug = if self.rng.percent(70) {
            let t = self.token();
            self.slug_form(t)
        } else {
            self.unknown_slug()
        };
        let method = *self.rng.pick(&["GET", "GET", "GET", "HEAD", "DELETE"]);
        let prefix = format!("/c/{slug}?d=");
        let fixed = method.len() + 1 + prefix.len() + " HTTP/1.1".len();
        let (line, label) = match self.rng.below(4) {
            0 => (MAX_REQUEST_LINE, "line of exactly 16 KiB"),
            1 => (
                MAX_REQUEST_LINE + self.rng.range(1, 16),
                "line just over 16 KiB",
            ),
            2 => (
                MAX_REQUEST_LINE - self.rng.range(0, 16),
                "line just under 16 KiB",
            ),
            _ => (
                self.rng.range(20_000, PARSER_MAX_URI - 100),
                "line well over 16 KiB",
            ),
        };
        let fill = line.saturating_sub(fixed);
        let value = if self.rng.percent(50) {
            "A".repeat(fill)
        } else {
            self.rng.text(B64URL, fill)
        };
        let mut draft = Draft::new(method, format!("{prefix}{value}"), label);
        debug_assert_eq!(draft.line_len(), line.max(fixed));
        if self.rng.percent(10) {
            // The same length through a sub-path rather than the query.
            let n = draft.target.len() - 3 - slug.len();
            // `z` only past the limit: a stored path full of them would be a recorded 414.
            let fill = if line > MAX_REQUEST_LINE { "z" } else { "a" };
            draft.target = format!("/c/{slug}/{}", fill.repeat(n - 1));
        }
        draft
    }

    /// Field-value bytes: visible ASCII, spaces, tabs, quotes, backslashes and obs-text.
    pub(super) fn header_value(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let mut x = self.rng.next_u64();
            for _ in 0..(len - v.len()).min(4) {
                let (pick, byte) = ((x & 0xff) as u8, (x >> 8) as u8);
                x >>= 16;
                v.push(match pick % 20 {
                    0 => b' ',
                    1 => b'\t',
                    2 => 0x80 | byte,
                    3 => b'"',
                    4 => b'\\',
                    _ => 0x21 + byte % 94,
                });
            }
        }
        if let Some(first) = v.first_mut() {
            *first = b'v';
        }
        v
    }

    pub(super) fn header_name(&mut self) -> String {
        loop {
            let n = self.rng.range(1, 24);
            let name = self.rng.text(TCHAR, n);
            if !FRAMING.contains(&name.to_ascii_lowercase().as_str()) {
                return name;
            }
        }
    }

    /// Host, User-Agent and the rest a client might send, and now and then a great many or
    /// very long headers, a close, or HTTP/1.0.
    pub(super) fn decorate(&mut self, d: &mut Draft) {
        match self.rng.below(100) {
            0..=2 => {}
            3..=6 => d.header("Host", self.header_value(40)),
            _ => d.header("Host", self.host.clone()),
        }
        match self.rng.below(20) {
            0..=7 => {}
            8..=15 => d.header("User-Agent", *self.rng.pick(&USER_AGENTS)),
            16 | 17 => {
                let n = self.rng.range(1000, 4000);
                d.header("User-Agent", self.header_value(n));
            }
            _ => d.header("User-Agent", self.header_value(60)),
        }
        if self.rng.percent(20) {
            d.header("Accept", "image/avif,image/webp,*/*");
            d.header("Accept-Language", "en-US,en;q=0.5");
            d.header("Referer", format!("http://{}/", self.host));
        }
        if self.rng.percent(3) {
            let (n, v) = *self.rng.pick(&[
                ("Sec-Purpose", "prefetch"),
                ("Purpose", "prefetch"),
                ("X-Purpose", "preview"),
                ("X-Moz", "prefetch"),
            ]);
            d.header(n, v);
        }
        if self.rng.percent(3) {
            d.header("X-Forwarded-For", "203.0.113.50, 127.0.0.9");
            d.header("Forwarded", "for=198.51.100.1");
        }
        for _ in 0..self.rng.below(4) {
            let name = self.header_name();
            let n = self.rng.range(0, 200);
            let value = self.header_value(n);
            d.header(&name, value);
        }
        if self.rng.percent(3) {
            // Many headers, within the parser's hundred.
            let room = PARSER_MAX_HEADERS.saturating_sub(6 + d.headers.len());
            for _ in 0..self.rng.range(room / 2, room) {
                let name = self.header_name();
                let n = self.rng.range(0, 100);
                let value = self.header_value(n);
                d.header(&name, value);
            }
        }
        if self.rng.below(1000) < 15 {
            for _ in 0..self.rng.range(1, 4) {
                let name = self.header_name();
                let n = self.rng.range(4 * 1024, 48 * 1024);
                let value = self.header_value(n);
                d.header(&name, value);
            }
        }
        match self.rng.below(100) {
            0..=3 => d.header("Connection", "close"),
            4 => d.header("Connection", "keep-alive, Close"),
            5..=9 => d.header("Connection", "keep-alive"),
            10 | 11 => d.version = "HTTP/1.0",
            _ => {}
        }
    }

    /// What no parser should accept, or what is past hyper's limits: each on a connection
    /// of its own.
    pub(super) fn raw(&mut self) -> Req {
        let t = self.token();
        let slug = self.tokens[t].slug.clone();
        let host = self.host.clone();
        let (wire, label): (Vec<u8>, &'static str) = match self.rng.below(17) {
            0 => {
                let bad = match self.rng.below(4) {
                    0 => self.rng.below(0x20) as u8,
                    1 => *self.rng.pick(b"<>`\x7f"),
                    2 => 0x80 + self.rng.below(128) as u8,
                    _ => b' ',
                };
                let mut w = format!("GET /c/{slug}").into_bytes();
                w.push(bad);
                w.extend(format!("x HTTP/1.1\r\nHost: {host}\r\n\r\n").bytes());
                (w, "raw byte in path")
            }
            1 => {
                let bad = *self.rng.pick(b"\x00\x7f\r\x01");
                let mut w =
                    format!("GET /c/{slug} HTTP/1.1\r\nHost: {host}\r\nX-A: a").into_bytes();
                w.push(bad);
                w.extend(b"b\r\n\r\n");
                (w, "raw byte in header")
            }
            2 => {
                let bad =
                    *self
                        .rng
                        .pick(&["X A: b", "NoColon", ": empty", "X-\u{e9}: b", " X: lead"]);
                (
                    format!("GET /c/{slug} HTTP/1.1\r\nHost: {host}\r\n{bad}\r\n\r\n").into_bytes(),
                    "bad header name",
                )
            }
            3 => (
                format!("GET /c/{slug} HTTP/1.1\r\nHost: {host}\r\nX-A: b\r\n c\r\n\r\n")
                    .into_bytes(),
                "folded header",
            ),
            4 => {
                let m = *self
                    .rng
                    .pick(&["G(ET", "GET\t", "G ET", "\u{e9}GET", "GET\u{0}"]);
                (
                    format!("{m} /c/{slug} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
                    "bad method",
                )
            }
            5 => {
                let v = *self.rng.pick(&[
                    "HTTP/2.0",
                    "HTTP/1.2",
                    "HTTP/0.9",
                    "",
                    "http/1.1",
                    "HTTP/1.1 x",
                    "HTTP/11",
                    "HTTP/3",
                ]);
                (
                    format!("GET /c/{slug} {v}\r\nHost: {host}\r\n\r\n").into_bytes(),
                    "bad version",
                )
            }
            6 => {
                let mut w = format!("GET /c/{slug} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
                for i in 0..self.rng.range(PARSER_MAX_HEADERS, 150) {
                    w.extend(format!("X-H{i}: v\r\n").bytes());
                }
                w.extend(b"\r\n");
                (w, "over a hundred headers")
            }
            7 => {
                let n = self.rng.range(PARSER_MAX_URI + 1, 80_000);
                (
                    format!(
                        "GET /c/{slug}?d={} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                        "A".repeat(n)
                    )
                    .into_bytes(),
                    "target over 64 KiB",
                )
            }
            8 => {
                let mut w = format!("GET /c/{slug} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
                for i in 0..9 {
                    w.extend(format!("X-Big{i}: {}\r\n", "b".repeat(48 * 1024)).bytes());
                }
                w.extend(b"\r\n");
                (w, "head over 400 KiB")
            }
            9 => {
                let mut w: Vec<u8> = (0..self.rng.range(1, 2000))
                    .map(|_| self.rng.next_u64() as u8)
                    .collect();
                w.extend(b"\r\n\r\n");
                (w, "random garbage")
            }
            10 => {
                let mut w = vec![
                    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                ];
                w.extend((0..200).map(|_| self.rng.next_u64() as u8));
                (w, "TLS hello")
            }
            11 => {
                let framing = *self.rng.pick(&[
                    "Content-Length: 3\r\nTransfer-Encoding: chunked",
                    "Content-Length: abc",
                    "Content-Length: 1\r\nContent-Length: 2",
                    "Transfer-Encoding: chunked\r\n\r\nzz",
                    "Transfer-Encoding: gzip",
                    "Content-Length: -1",
                ]);
                (
                    format!("GET /c/{slug} HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n\r\n")
                        .into_bytes(),
                    "bad framing",
                )
            }
            12 => (
                format!("GET /c/{slug} HTTP/1.1\nHost: {host}\n\n").into_bytes(),
                "bare LF",
            ),
            13 => {
                let n = self.rng.range(MAX_REQUEST_LINE, 40_000);
                match self.rng.below(2) {
                    0 => (
                        format!(
                            "GET /c/{slug}#{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                            "f".repeat(n)
                        )
                        .into_bytes(),
                        "long fragment",
                    ),
                    _ => (
                        format!(
                            "GET http://{host}/c/{slug}?{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                            "q".repeat(MAX_REQUEST_LINE - 17 - slug.len())
                        )
                        .into_bytes(),
                        "absolute form",
                    ),
                }
            }
            14 => {
                let mut w = format!("GET /c/{slug}/").into_bytes();
                if self.rng.percent(50) {
                    w.extend("é€".bytes());
                } else {
                    w.extend([0xc3, 0x28, 0xff]);
                }
                w.extend(format!(" HTTP/1.1\r\nHost: {host}\r\n\r\n").bytes());
                (w, "raw non-ASCII path")
            }
            15 => (
                format!("GET /c/{slug} HTTP/1.1\r\nHost: {host}\r\n").into_bytes(),
                "unfinished head",
            ),
            _ => {
                let m = self.rng.text(TCHAR, 3000);
                (
                    format!("{m} /c/{slug} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
                    "long method",
                )
            }
        };
        Req {
            wire,
            head: false,
            expect: Expect::Refused,
            fresh: true,
            taints: true,
            asked_close: false,
            http10: false,
            half_close: label == "unfinished head",
            valid: None,
            label,
        }
    }

    /// The next scenario's requests.
    pub(super) fn scenario(&mut self, out: &mut VecDeque<Req>) {
        let mut drafts = VecDeque::new();
        match self.rng.below(100) {
            0..=21 => drafts.push_back(self.live_plain("live slug")),
            22..=35 => drafts.push_back(self.unknown()),
            36..=45 => drafts.push_back(self.valid_single()),
            46..=59 => drafts.push_back(self.invalid_single()),
            60..=63 => self.valid_chunks(&mut drafts),
            64..=68 => self.bad_chunks(&mut drafts),
            69..=76 => drafts.push_back(self.random_under_c()),
            77..=83 => drafts.push_back(self.other_method()),
            84..=87 => drafts.push_back(self.other_path()),
            88..=90 => drafts.push_back(self.oversized()),
            91..=92 => {
                out.push_back(self.raw());
                return;
            }
            _ => {
                let mut d = self.live_plain("live slug, heavy headers");
                for _ in 0..self.rng.range(10, 40) {
                    let name = self.header_name();
                    let n = self.rng.range(0, 400);
                    let value = self.header_value(n);
                    d.header(&name, value);
                }
                drafts.push_back(d);
            }
        }
        for mut d in drafts {
            self.decorate(&mut d);
            out.push_back(finish(d));
        }
    }
}

pub(super) fn finish(d: Draft) -> Req {
    let expect = d.expect();
    let asked_close = d.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("connection")
            && String::from_utf8_lossy(v)
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
    });
    let has_body = !d.body.is_empty();
    let mut wire = Vec::with_capacity(d.line_len() + 256 + d.body.len());
    wire.extend(d.method.as_bytes());
    wire.push(b' ');
    wire.extend(d.target.as_bytes());
    wire.push(b' ');
    wire.extend(d.version.as_bytes());
    wire.extend(b"\r\n");
    for (name, value) in &d.headers {
        wire.extend(name.as_bytes());
        wire.extend(b": ");
        wire.extend(value);
        wire.extend(b"\r\n");
    }
    wire.extend(b"\r\n");
    wire.extend(&d.body);
    let http10 = d.version == "HTTP/1.0";
    Req {
        wire,
        head: d.method == "HEAD",
        expect,
        fresh: false,
        taints: has_body || http10 || d.method == "CONNECT" || expect == Expect::Refused,
        asked_close,
        http10,
        half_close: false,
        valid: d.valid.filter(|_| expect == Expect::Gif),
        label: d.label,
    }
}
