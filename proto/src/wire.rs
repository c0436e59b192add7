//! The spec's string types that JSON Schema has no format for (EVENTS.md §1.2). Each is a
//! transparent string on the wire; its schema names the spec type in `x-decnet-type`, so a
//! reader of the schema (and the spec-agreement test) can tell an address from free text.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

macro_rules! wire_string {
    ($(#[$doc:meta])* $name:ident, $spec:literal, $extra:tt) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let mut schema = json_schema!({"type": "string", "x-decnet-type": $spec});
                let extra: serde_json::Value = serde_json::json!($extra);
                if let (Some(obj), Some(more)) = (schema.as_object_mut(), extra.as_object()) {
                    obj.extend(more.clone());
                }
                schema
            }
        }
    };
}

wire_string!(
    /// An IPv4 dotted quad or an IPv6 address (RFC 5952 form; consumers canonicalise).
    Ip,
    "ip",
    {}
);

wire_string!(
    /// A decoy name: `[a-z0-9][a-z0-9-]{0,62}`.
    Decky,
    "decky",
    {"pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}
);

wire_string!(
    /// 64 lowercase hex characters (a SHA-256).
    Hex64,
    "hex64",
    {"pattern": "^[0-9a-f]{64}$"}
);

/// Whether `name` has a decoy name's shape, `[a-z0-9][a-z0-9-]{0,62}`.
pub fn is_decky(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// For a field the spec marks required but nullable (`T?`, req yes): schemars drops the
/// `null` of an `Option` it is told is required, so the field's schema gets it back here.
pub(crate) fn nullable(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    match obj.get_mut("type") {
        Some(serde_json::Value::String(t)) => {
            let t = std::mem::take(t);
            obj.insert("type".into(), serde_json::json!([t, "null"]));
            if let Some(serde_json::Value::Array(values)) = obj.get_mut("enum") {
                values.push(serde_json::Value::Null);
            }
        }
        Some(serde_json::Value::Array(types)) => {
            if !types.iter().any(|t| t == "null") {
                types.push("null".into());
            }
        }
        _ => {
            let inner = std::mem::take(obj);
            obj.insert("anyOf".into(), serde_json::json!([inner, {"type": "null"}]));
        }
    }
}
