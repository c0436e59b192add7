//! Canary lifters (RULES.md §7.7, §7.10): what a triggered canary token tells us, and what
//! the browser that opened it gave away.
//!
//! The beacon derives booleans and names from a fingerprint that passed every validation
//! layer (CANARY.md §11); these lifters read only those, so evidence is a metric name and a
//! signature id, never fingerprint data.

use serde_json::Value;

use super::{Decision, Lift, Misfits, Params, Spec, fields};
use crate::event::EvalEvent;
use crate::evidence::EvidenceKey;
use crate::kind::SourceKind;

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "canary_webdriver",
        kinds: &[SourceKind::CanaryFingerprint],
        build: |_| {
            Some(Box::new(FlagChain(&[(
                "navigator_webdriver",
                "navigator_webdriver",
                "navigator.webdriver_true",
            )])))
        },
    },
    Spec {
        name: "canary_automation_hash",
        kinds: &[SourceKind::CanaryFingerprint],
        build: |p| {
            let tools = p.strings(
                "tools",
                &["puppeteer", "playwright", "selenium", "curl_impersonate"],
                &[],
            );
            let tools = tools.into_iter().map(|t| t.to_lowercase()).collect();
            Some(Box::new(AutomationTool { tools }))
        },
    },
    Spec {
        name: "canary_webrtc_leak",
        kinds: &[SourceKind::CanaryFingerprint],
        build: |_| {
            Some(Box::new(FlagChain(&[(
                "webrtc_geo_mismatch",
                "webrtc_geo_mismatch",
                "webrtc_private_vs_source_ip",
            )])))
        },
    },
    Spec {
        name: "canary_tz_lang_mismatch",
        kinds: &[SourceKind::CanaryFingerprint],
        build: |p| {
            let min_zones = p.int("min_zones", 3, 1, 26);
            Some(Box::new(TzLang { min_zones }))
        },
    },
    Spec {
        name: "canary_platform_inconsistency",
        kinds: &[SourceKind::CanaryFingerprint],
        build: |_| {
            Some(Box::new(FlagChain(&[
                (
                    "platform_ua_inconsistent",
                    "platform_ua_mismatch",
                    "navigator.platform_vs_userAgent",
                ),
                (
                    "ua_webgl_mismatch",
                    "ua_webgl_mismatch",
                    "userAgent_vs_webgl_renderer",
                ),
            ])))
        },
    },
    Spec {
        name: "canary_trigger",
        kinds: &[SourceKind::Canary],
        build: canary_trigger,
    },
];

fn signature(metric: &str, signature: &str) -> Decision {
    Decision::all(vec![
        (EvidenceKey::Metric, Value::from(metric)),
        (EvidenceKey::MatchedSignature, Value::from(signature)),
    ])
}

/// Fires on the first true flag of a list: (field, metric, signature).
#[derive(Debug)]
struct FlagChain(&'static [(&'static str, &'static str, &'static str)]);

impl Lift for FlagChain {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        for (field, metric, sig) in self.0 {
            if f.bool(field) == Some(true) {
                return Some(signature(metric, sig));
            }
        }
        None
    }
}

/// R0050: the automation catalogue named a listed tool.
#[derive(Debug)]
struct AutomationTool {
    tools: Vec<String>,
}

impl Lift for AutomationTool {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let tool = fields(event, misfits).str("automation_tool")?;
        let tool = tool.trim().to_lowercase();
        let listed = self.tools.iter().find(|t| **t == tool);
        listed.map(|t| signature("canvas_audio_hash", t))
    }
}

/// R0052: the browser's clock or languages do not fit the source country.
#[derive(Debug)]
struct TzLang {
    min_zones: i64,
}

impl Lift for TzLang {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        if f.int("tz_mismatch_zones")
            .is_some_and(|n| n >= self.min_zones)
        {
            let sig = format!("tz_zones>={}", self.min_zones);
            return Some(signature("timezone_geo_mismatch", &sig));
        }
        if f.bool("lang_country_mismatch") == Some(true) {
            return Some(signature(
                "language_country_mismatch",
                "lang_vs_source_country",
            ));
        }
        None
    }
}

/// R0060–R0062: a token of a listed kind (or of any kind but the excluded ones) fired.
#[derive(Debug)]
struct CanaryTrigger {
    kinds: Vec<String>,
    exclude: bool,
}

fn canary_trigger(p: &mut Params<'_>) -> Option<Box<dyn Lift>> {
    let listed = p.node("token_kinds").is_some();
    let excluded = p.node("exclude_token_kinds").is_some();
    let pos = p
        .node("token_kinds")
        .or(p.node("exclude_token_kinds"))
        .map(|n| n.pos);
    if listed == excluded {
        let at = pos.unwrap_or(p.match_pos());
        p.error(
            at,
            "token_kinds",
            "give exactly one of token_kinds and exclude_token_kinds",
        );
        return None;
    }
    let name = if listed {
        "token_kinds"
    } else {
        "exclude_token_kinds"
    };
    let kinds = p.strings(name, &[], &[]);
    Some(Box::new(CanaryTrigger {
        kinds,
        exclude: excluded,
    }))
}

impl Lift for CanaryTrigger {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let kind = fields(event, misfits).str("token_kind");
        // A trigger without a kind is still a canary that fired: only the catch-all rule
        // claims it, so exactly one of the three rules fires per trigger.
        let listed = kind.is_some_and(|k| self.kinds.iter().any(|l| l == k));
        (listed != self.exclude).then(Decision::default)
    }
}
