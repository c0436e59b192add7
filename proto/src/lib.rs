//! Wire contracts of the bus (EVENTS.md): the streams, subject syntax and builders, and the
//! typed payload of every subject, from which the JSON Schemas in `proto/schemas/` are
//! generated (`decnet schema SUBJECT` prints one).

pub mod control;
pub mod payload;
pub mod streams;
pub mod subject;
pub mod wire;

use schemars::{JsonSchema, Schema, SchemaGenerator};

pub use streams::{DUPLICATE_WINDOW, STREAMS, StreamDef, stream_def, stream_for_subject};

/// `decnet-schema-version` of every subject today (EVENTS.md §1.1).
pub const SCHEMA_VERSION: u32 = 1;

/// Header names of EVENTS.md §1.1.
pub mod header {
    /// Deterministic id; the server drops a repeat inside the duplicate window.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// Payload schema version; absent means 1.
    pub const SCHEMA_VERSION: &str = "decnet-schema-version";
    /// `<service>/<instance-id>`.
    pub const PRODUCER: &str = "decnet-producer";
    /// RFC 3339 UTC with milliseconds.
    pub const PUBLISHED_AT: &str = "decnet-published-at";
}

/// A stored subject and the type of its payload.
#[derive(Debug, Clone, Copy)]
pub struct SubjectDef {
    /// The subject as the spec writes it: `canary.<token>.triggered`.
    pub name: &'static str,
    /// As a NATS filter: `canary.*.triggered`.
    pub pattern: &'static str,
    /// The file of its schema under `proto/schemas/`.
    pub file: &'static str,
    schema: fn(&mut SchemaGenerator) -> Schema,
}

impl SubjectDef {
    /// The JSON Schema of the payload, with the subject and its stream named in it.
    pub fn schema(&self) -> Schema {
        let mut generator = SchemaGenerator::default();
        let mut schema = (self.schema)(&mut generator);
        let defs = generator.take_definitions(true);
        let stream = self.stream().map(|s| s.name);
        if let Some(obj) = schema.as_object_mut() {
            let mut root = serde_json::Map::new();
            root.insert(
                "$schema".into(),
                "https://json-schema.org/draft/2020-12/schema".into(),
            );
            root.insert("title".into(), self.name.into());
            root.insert("x-decnet-subject".into(), self.pattern.into());
            if let Some(stream) = stream {
                root.insert("x-decnet-stream".into(), stream.into());
            }
            root.insert("x-decnet-schema-version".into(), SCHEMA_VERSION.into());
            root.append(obj);
            if !defs.is_empty() {
                root.insert("$defs".into(), serde_json::Value::Object(defs));
            }
            *obj = root;
        }
        schema
    }

    /// The stream that stores this subject.
    pub fn stream(&self) -> Option<&'static StreamDef> {
        // Any token stands in for the wildcard: streams are bound by whole-token patterns.
        stream_for_subject(&self.pattern.replace('*', "x"))
    }

    /// The schema as the checked-in file holds it: pretty JSON and a final newline.
    pub fn schema_text(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(&self.schema()).expect("a schema is plain JSON");
        text.push('\n');
        text
    }

    /// Whether a concrete subject (`canary.5d1c….triggered`) or a pattern as the spec or NATS
    /// writes it (`canary.<token>.triggered`, `canary.*.triggered`) names this subject.
    pub fn names(&self, subject: &str) -> bool {
        subject == self.name || subject == self.pattern || subject::matches(self.pattern, subject)
    }
}

fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    T::json_schema(generator)
}

macro_rules! subject {
    ($name:literal, $pattern:literal, $file:literal, $ty:ty) => {
        SubjectDef {
            name: $name,
            pattern: $pattern,
            file: $file,
            schema: of::<$ty>,
        }
    };
}

/// Every stored subject with a payload of its own (EVENTS.md §3). `decnet.dlq.<service>` is
/// not here: a dead letter's body is the original message, byte for byte.
pub const SUBJECTS: [SubjectDef; 19] = {
    use payload::*;
    [
        subject!(
            "attacker.session.ended",
            "attacker.session.ended",
            "attacker.session.ended.json",
            attacker::SessionEnded
        ),
        subject!(
            "attacker.observed",
            "attacker.observed",
            "attacker.observed.json",
            attacker::Observed
        ),
        subject!(
            "attacker.intel.enriched",
            "attacker.intel.enriched",
            "attacker.intel.enriched.json",
            attacker::IntelEnriched
        ),
        subject!(
            "attacker.fingerprinted",
            "attacker.fingerprinted",
            "attacker.fingerprinted.json",
            attacker::Fingerprinted
        ),
        subject!(
            "email.received",
            "email.received",
            "email.received.json",
            email::EmailReceived
        ),
        subject!(
            "canary.<token>.triggered",
            "canary.*.triggered",
            "canary.token.triggered.json",
            canary::CanaryTriggered
        ),
        subject!(
            "canary.<token>.revoked",
            "canary.*.revoked",
            "canary.token.revoked.json",
            canary::CanaryRevoked
        ),
        subject!(
            "credential.reuse.detected",
            "credential.reuse.detected",
            "credential.reuse.detected.json",
            identity::CredentialReuse
        ),
        subject!(
            "identity.formed",
            "identity.formed",
            "identity.formed.json",
            identity::IdentityFormed
        ),
        subject!(
            "identity.merged",
            "identity.merged",
            "identity.merged.json",
            identity::IdentityMerged
        ),
        subject!(
            "identity.observation.linked",
            "identity.observation.linked",
            "identity.observation.linked.json",
            identity::ObservationLinked
        ),
        subject!(
            "identity.campaign.assigned",
            "identity.campaign.assigned",
            "identity.campaign.assigned.json",
            identity::CampaignAssigned
        ),
        subject!(
            "smtp.probe.pending",
            "smtp.probe.pending",
            "smtp.probe.pending.json",
            smtp::ProbePending
        ),
        subject!(
            "smtp.probe.relayed",
            "smtp.probe.relayed",
            "smtp.probe.relayed.json",
            smtp::ProbeRelayed
        ),
        subject!("ttp.tagged", "ttp.tagged", "ttp.tagged.json", ttp::Tagged),
        subject!(
            "ttp.rule.fired.<technique>",
            "ttp.rule.fired.*",
            "ttp.rule.fired.technique.json",
            ttp::RuleFired
        ),
        subject!(
            "ttp.rule.suppressed",
            "ttp.rule.suppressed",
            "ttp.rule.suppressed.json",
            ttp::Suppressed
        ),
        subject!(
            "ttp.rule.reloaded.<rule_id>",
            "ttp.rule.reloaded.*",
            "ttp.rule.reloaded.rule_id.json",
            rules::RuleReloaded
        ),
        subject!(
            "ttp.rule.state.<rule_id>",
            "ttp.rule.state.*",
            "ttp.rule.state.rule_id.json",
            rules::RuleStateMessage
        ),
    ]
};

/// The subject definition that names `subject`, if any.
pub fn subject_def(subject: &str) -> Option<&'static SubjectDef> {
    SUBJECTS.iter().find(|d| d.names(subject))
}
