//! Threat-intel lifters (RULES.md §8): a provider's verdict, translated through its map.
//!
//! Each provider block of `attacker.intel.enriched` is one `intel` event. A provider map
//! (`rules/ttp/data/intel/<provider>.yaml`) names signals — an AbuseIPDB category, a
//! GreyNoise tag or classification, a ThreatFox threat type — and the techniques each one
//! selects. The lifter collects the signals the verdict holds, resolves their techniques to
//! the rule's emits, keeps the larger multiplier when two signals select one technique, and
//! gives every tag only the signals that chose it.

use serde_json::Value;

use super::tables::{Table, TableReader};
use super::{Decision, Fields, Lift, Misfits, Params, Pick, Spec, fields};
use crate::event::EvalEvent;
use crate::evidence::EvidenceKey;
use crate::fanout::normalise_tag;
use crate::kind::SourceKind;

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "intel_abuseipdb",
        kinds: &[SourceKind::Intel],
        build: |p| build(p, Provider::AbuseIpdb),
    },
    Spec {
        name: "intel_greynoise",
        kinds: &[SourceKind::Intel],
        build: |p| build(p, Provider::GreyNoise),
    },
    Spec {
        name: "intel_feodo",
        kinds: &[SourceKind::Intel],
        build: |p| build(p, Provider::Feodo),
    },
    Spec {
        name: "intel_threatfox",
        kinds: &[SourceKind::Intel],
        build: |p| build(p, Provider::ThreatFox),
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    AbuseIpdb,
    GreyNoise,
    Feodo,
    ThreatFox,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::AbuseIpdb => "abuseipdb",
            Provider::GreyNoise => "greynoise",
            Provider::Feodo => "feodo",
            Provider::ThreatFox => "threatfox",
        }
    }
}

/// One technique a signal selects, resolved to emits.
#[derive(Debug)]
struct Target {
    emits: Vec<usize>,
    min_score: Option<f64>,
    multiplier: f64,
}

#[derive(Debug)]
struct Signal {
    id: String,
    targets: Vec<Target>,
}

#[derive(Debug)]
struct IntelMap {
    provider: Provider,
    signals: Vec<Signal>,
}

fn build(p: &mut Params<'_>, provider: Provider) -> Option<Box<dyn Lift>> {
    let table = p.table("mapping", "intel")?;
    let map = read_map(p, &table, provider)?;
    Some(Box::new(map))
}

fn read_map(p: &mut Params<'_>, table: &Table, provider: Provider) -> Option<IntelMap> {
    let mut r = TableReader::new(table);
    let mut signals: Vec<Signal> = Vec::new();
    match &table.root {
        None => r.error(Default::default(), "", "the table is empty"),
        Some(root) => {
            if let Some(top) = r.map(
                root,
                "",
                &["provider", "mapping_version", "signals"],
                &["provider", "mapping_version", "signals"],
            ) {
                let get = |k: &str| top.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
                if let Some(node) = get("provider")
                    && let Some(name) = r.string(node, "provider")
                {
                    if name != table.name {
                        r.error(
                            node.pos,
                            "provider",
                            format!("{name:?} differs from the file name {:?}", table.name),
                        );
                    } else if name != provider.name() {
                        r.error(
                            node.pos,
                            "provider",
                            format!(
                                "{name:?} is not the map of this lifter ({})",
                                provider.name()
                            ),
                        );
                    }
                }
                if let Some(node) = get("mapping_version") {
                    r.int(node, "mapping_version", 1, i64::from(u32::MAX));
                }
                if let Some(node) = get("signals")
                    && let Some(items) = r.seq(node, "signals")
                {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(signal) =
                            read_signal(&mut r, p, provider, item, &format!("signals[{i}]"))
                        {
                            if signals.iter().any(|s| s.id == signal.id) {
                                r.error(
                                    item.pos,
                                    &format!("signals[{i}].id"),
                                    format!("{} is listed twice", signal.id),
                                );
                            } else {
                                signals.push(signal);
                            }
                        }
                    }
                }
            }
        }
    }
    let errors = std::mem::take(&mut r.errors);
    let ok = errors.is_empty();
    for e in errors {
        p.table_error(e);
    }
    ok.then_some(IntelMap { provider, signals })
}

/// Whether `id` names a signal this provider's verdicts can hold; any other id would load
/// and never fire.
fn valid_signal_id(provider: Provider, id: &str) -> Result<(), &'static str> {
    let snake = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let ok = match provider {
        Provider::AbuseIpdb => id
            .strip_prefix("cat_")
            .is_some_and(|n| n.parse::<u8>().is_ok_and(|n| n > 0)),
        Provider::GreyNoise => {
            id == "noise"
                || id.strip_prefix("classification_").is_some_and(snake)
                || id
                    .strip_prefix("tag_")
                    .is_some_and(|t| !t.is_empty() && normalise_tag(t) == t)
        }
        Provider::Feodo => id == "listed",
        Provider::ThreatFox => snake(id),
    };
    if ok {
        return Ok(());
    }
    Err(match provider {
        Provider::AbuseIpdb => "an AbuseIPDB signal is cat_<category number>",
        Provider::GreyNoise => {
            "a GreyNoise signal is noise, classification_<name> or tag_<normalised tag> (lowercase, spaces and hyphens as _)"
        }
        Provider::Feodo => "the Feodo Tracker signal is listed",
        Provider::ThreatFox => {
            "a ThreatFox signal is a lowercase threat type (botnet_cc, payload, …)"
        }
    })
}

fn read_signal(
    r: &mut TableReader<'_>,
    p: &Params<'_>,
    provider: Provider,
    node: &crate::yaml::Node,
    path: &str,
) -> Option<Signal> {
    let f = r.map(
        node,
        path,
        &["id", "label", "reference_url", "techniques"],
        &["id", "techniques"],
    )?;
    let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let id = r.string(get("id")?, &format!("{path}.id"))?;
    if let Err(why) = valid_signal_id(provider, &id) {
        let pos = get("id").map_or(node.pos, |n| n.pos);
        r.error(pos, &format!("{path}.id"), format!("{id:?}: {why}"));
        return None;
    }
    let list = r.seq(get("techniques")?, &format!("{path}.techniques"))?;
    let mut targets = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let tpath = format!("{path}.techniques[{i}]");
        let tf = r.map(
            t,
            &tpath,
            &["technique_id", "min_score", "multiplier"],
            &["technique_id"],
        )?;
        let tget = |k: &str| tf.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let technique = r.string(tget("technique_id")?, &format!("{tpath}.technique_id"))?;
        let min_score = match tget("min_score") {
            Some(n) if provider != Provider::AbuseIpdb => {
                r.error(
                    n.pos,
                    &format!("{tpath}.min_score"),
                    "only AbuseIPDB verdicts carry a score",
                );
                return None;
            }
            Some(n) => Some(r.int(n, &format!("{tpath}.min_score"), 0, 100)? as f64),
            None => None,
        };
        let multiplier = match tget("multiplier") {
            Some(n) => match n.as_scalar().and_then(|s| s.parse::<f64>().ok()) {
                Some(m) if m > 0.0 && m <= 1.0 => m,
                _ => {
                    r.error(
                        n.pos,
                        &format!("{tpath}.multiplier"),
                        "expected a number in (0, 1]",
                    );
                    return None;
                }
            },
            None => 1.0,
        };
        let emits = r.emits(
            p.emits(),
            &[technique],
            &format!("{tpath}.technique_id"),
            t.pos,
        )?;
        targets.push(Target {
            emits,
            min_score,
            multiplier,
        });
    }
    if targets.is_empty() {
        r.error(
            node.pos,
            &format!("{path}.techniques"),
            "must list at least one technique",
        );
        return None;
    }
    Some(Signal { id, targets })
}

/// The signals a verdict holds, with the evidence each contributes.
struct Held {
    id: String,
    /// The evidence value this signal adds to its tags' list key.
    item: Value,
}

/// What a verdict holds: its signals, the provider multiplier and the score gates read.
struct Verdict {
    held: Vec<Held>,
    multiplier: f64,
    score: Option<f64>,
}

/// Per selected emit: multiplier and the signals that chose it.
#[derive(Default)]
struct Chosen {
    multiplier: f64,
    items: Vec<Value>,
    noise: bool,
}

impl IntelMap {
    fn signal(&self, id: &str) -> Option<&Signal> {
        self.signals.iter().find(|s| s.id == id)
    }

    /// The signals present in this provider's verdict, and the provider multiplier.
    fn held(&self, f: Fields<'_>) -> Option<Verdict> {
        let mut held = Vec::new();
        match self.provider {
            Provider::AbuseIpdb => {
                // A numeric score (RULES.md §1 types it num): 87.5 is a score.
                let score = f.num("abuseipdb_score")?;
                let categories = f.ints("abuseipdb_categories");
                if categories.is_empty() {
                    return None;
                }
                for c in categories {
                    held.push(Held {
                        id: format!("cat_{c}"),
                        item: Value::from(c),
                    });
                }
                let multiplier = (score / 100.0).clamp(0.0, 1.0);
                return Some(Verdict {
                    held,
                    multiplier,
                    score: Some(score),
                });
            }
            Provider::GreyNoise => {
                // A common business service: no GreyNoise decision at all.
                if f.bool("greynoise_riot") == Some(true) {
                    return None;
                }
                if f.bool("greynoise_noise") == Some(true) {
                    held.push(Held {
                        id: "noise".into(),
                        item: Value::Null,
                    });
                }
                if let Some(class) = f.str("greynoise_classification") {
                    let class = class.trim().to_lowercase();
                    held.push(Held {
                        id: format!("classification_{class}"),
                        item: Value::Null,
                    });
                }
                for tag in f.strs("greynoise_tags") {
                    let tag = normalise_tag(tag);
                    held.push(Held {
                        id: format!("tag_{tag}"),
                        item: Value::from(tag),
                    });
                }
            }
            Provider::Feodo => {
                if f.bool("feodo_listed") == Some(true) {
                    held.push(Held {
                        id: "listed".into(),
                        item: Value::Null,
                    });
                }
            }
            Provider::ThreatFox => {
                for t in f.strs("threatfox_threat_types") {
                    let t = t.trim().to_lowercase();
                    held.push(Held {
                        id: t.clone(),
                        item: Value::from(t),
                    });
                }
            }
        }
        Some(Verdict {
            held,
            multiplier: 1.0,
            score: None,
        })
    }
}

impl Lift for IntelMap {
    fn lift(&self, event: &EvalEvent, misfits: &Misfits) -> Option<Decision> {
        let f = fields(event, misfits);
        if f.str("provider") != Some(self.provider.name()) {
            return None;
        }
        let Verdict {
            held,
            multiplier: provider_multiplier,
            score,
        } = self.held(f)?;
        let mut chosen: Vec<(usize, Chosen)> = Vec::new();
        for h in &held {
            let Some(signal) = self.signal(&h.id) else {
                continue;
            };
            for target in &signal.targets {
                if target
                    .min_score
                    .is_some_and(|min| score.is_none_or(|s| s < min))
                {
                    continue;
                }
                for &emit in &target.emits {
                    let slot = match chosen.iter().position(|(e, _)| *e == emit) {
                        Some(i) => i,
                        None => {
                            chosen.push((emit, Chosen::default()));
                            chosen.len() - 1
                        }
                    };
                    let c = &mut chosen[slot].1;
                    c.multiplier = c.multiplier.max(target.multiplier * provider_multiplier);
                    if !h.item.is_null() && !c.items.contains(&h.item) {
                        c.items.push(h.item.clone());
                    }
                    c.noise |= h.id == "noise";
                }
            }
        }
        if chosen.is_empty() {
            return None;
        }
        chosen.sort_by_key(|(e, _)| *e);
        let families = |key: &str| -> Option<Value> {
            let list: Vec<String> = match key {
                "feodo_malware_family" => f.str(key).map(str::to_owned).into_iter().collect(),
                _ => f.strs(key).into_iter().map(str::to_owned).collect(),
            };
            let list: Vec<String> = list.into_iter().filter(|s| !s.trim().is_empty()).collect();
            (!list.is_empty()).then(|| Value::from(list))
        };
        let mut shared = Vec::new();
        match self.provider {
            Provider::Feodo => {
                shared.push((EvidenceKey::FeodoListed, Value::from(true)));
                if let Some(v) = families("feodo_malware_family") {
                    shared.push((EvidenceKey::MalwareFamilies, v));
                }
            }
            Provider::ThreatFox => {
                if let Some(v) = families("threatfox_malware_families") {
                    shared.push((EvidenceKey::MalwareFamilies, v));
                }
                let iocs = f.strs("threatfox_ioc_types");
                if !iocs.is_empty() {
                    shared.push((EvidenceKey::ThreatfoxIocTypes, Value::from(iocs)));
                }
            }
            _ => {}
        }
        let picks = chosen
            .into_iter()
            .map(|(emit, c)| {
                let mut extras = Vec::new();
                let list_key = match self.provider {
                    Provider::AbuseIpdb => Some(EvidenceKey::AbuseipdbCategories),
                    Provider::GreyNoise => Some(EvidenceKey::GreynoiseTags),
                    Provider::ThreatFox => Some(EvidenceKey::ThreatfoxThreatTypes),
                    Provider::Feodo => None,
                };
                if let Some(key) = list_key {
                    // Always set, even empty: the payload's whole list must not stand in for
                    // the signals that chose this technique.
                    extras.push((key, Value::Array(c.items)));
                }
                // `greynoise_noise` says noise chose this technique; it is absent otherwise.
                if self.provider == Provider::GreyNoise && c.noise {
                    extras.push((EvidenceKey::GreynoiseNoise, Value::from(true)));
                }
                // Only the providers whose confidence scales carry the multiplier (§7.8).
                if matches!(self.provider, Provider::AbuseIpdb | Provider::GreyNoise) {
                    extras.push((
                        EvidenceKey::Multiplier,
                        Value::from(crate::tag::round4(c.multiplier)),
                    ));
                }
                Pick {
                    emit,
                    multiplier: c.multiplier,
                    extras,
                }
            })
            .collect();
        Some(Decision {
            extras: shared,
            picks: Some(picks),
        })
    }
}
