//! The OpenAPI 3.1 document (API.md §11), built from the route table and the handlers' types.
//!
//! Schemas come from `schemars` (already in the tree for the payload schemas), whose JSON
//! Schema 2020-12 output is what OpenAPI 3.1 embeds; the paths, parameters and statuses come
//! from [`crate::routes::operations`], the same table the router is built from. The document
//! is rendered once per process.

use std::sync::LazyLock;

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::error::ErrorBody;
use crate::routes::{Access, In, Kind, Operation, Param, operations};

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&document()).expect("the document serialises"));

/// The document as served.
pub fn document_text() -> &'static str {
    &DOCUMENT
}

/// The document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let error = serde_json::to_value(generator.subschema_for::<ErrorBody>()).expect("schema");
    let mut paths: Map<String, Value> = Map::new();
    for op in operations() {
        let entry = paths
            .entry(op.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[op.method.as_str().to_ascii_lowercase()] = operation(&op, &mut generator, &error);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "decnet API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Technique rollups, tag details, ATT&CK Navigator layers, rule state and canary tokens of a deception network's intelligence plane.",
        },
        "tags": [
            {"name": "ttp", "description": "Technique rollups, tags and groups"},
            {"name": "rules", "description": "The rule catalogue and operational state"},
            {"name": "navigator", "description": "ATT&CK Navigator 4.5 layers"},
            {"name": "canary", "description": "Canary tokens, their artifacts and hits"},
            {"name": "ops", "description": "Health, readiness, metrics and this document"},
        ],
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    })
}

fn operation(op: &Operation, generator: &mut SchemaGenerator, error: &Value) -> Value {
    let mut responses = Map::new();
    let (code, body) = op.success;
    let mut ok = json!({"description": op.summary});
    if let Some(schema) = body {
        let schema = serde_json::to_value(schema(generator)).expect("schema");
        ok["content"] = json!({"application/json": {"schema": schema}});
    } else if op.id == "metrics" {
        ok["content"] = json!({"application/openmetrics-text": {"schema": {"type": "string"}}});
    } else {
        ok["content"] = json!({"application/json": {"schema": {"type": "object"}}});
    }
    if op.paginated {
        ok["headers"] = json!({"X-Next-Cursor": {
            "description": "The cursor of the next page; absent on the last page",
            "schema": {"type": "string"},
        }});
    }
    if op.tag == "navigator" {
        ok["headers"] = json!({"Content-Disposition": {
            "description": "attachment; filename=\"decnet-navigator-….json\"",
            "schema": {"type": "string"},
        }});
    }
    responses.insert(code.to_string(), ok);
    let mut errors: Vec<u16> = op.errors.to_vec();
    if matches!(op.access, Access::Role(_)) {
        errors.extend([401, 403]);
    }
    errors.sort_unstable();
    for status in errors {
        // An unready `/readyz` answers its own body (API.md §10), not the error body.
        let schema = match (op.id, body) {
            ("readyz", Some(status_schema)) => {
                serde_json::to_value(status_schema(generator)).expect("schema")
            }
            _ => error.clone(),
        };
        responses.insert(
            status.to_string(),
            json!({
                "description": describe(status),
                "content": {"application/json": {"schema": schema}},
            }),
        );
    }
    let mut out = json!({
        "operationId": op.id,
        "tags": [op.tag],
        "summary": op.summary,
        "parameters": op.params.iter().map(parameter).collect::<Vec<_>>(),
        "responses": responses,
        "security": match op.access {
            Access::Public => json!([]),
            Access::Role(_) => json!([{"bearerAuth": []}]),
        },
    });
    if let Some(body) = op.body {
        let schema = serde_json::to_value(body(generator)).expect("schema");
        out["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema}},
        });
    }
    out
}

fn parameter(p: &Param) -> Value {
    let schema = match p.kind {
        Kind::Text => json!({"type": "string"}),
        Kind::Uuid => json!({"type": "string", "format": "uuid"}),
        Kind::Time => json!({"type": "string", "format": "date-time"}),
        Kind::Int(min, max) => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Technique => json!({"type": "string", "pattern": "^T[0-9]{4}(\\.[0-9]{3})?$"}),
        Kind::Release => {
            json!({"type": "string", "pattern": "^enterprise-v[0-9]{1,4}\\.[0-9]{1,4}$"})
        }
        Kind::OneOf(values) => json!({"type": "string", "enum": values}),
        Kind::Session => json!({"type": "string", "minLength": 1, "maxLength": 128}),
    };
    json!({
        "name": p.name,
        "in": match p.location { In::Path => "path", In::Query => "query" },
        "required": p.location == In::Path,
        "description": p.description,
        "schema": schema,
    })
}

fn describe(status: u16) -> &'static str {
    match status {
        400 => "A malformed parameter or JSON body",
        401 => "No usable bearer token",
        403 => "The token's role may not do this",
        404 => "The named resource does not exist",
        413 => "The body is over 64 KiB",
        415 => "The body is not application/json",
        422 => "The body breaks the schema or a rule",
        503 => "The owning service did not answer, or a dependency is down",
        _ => "An error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_documented_once_with_its_security() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut ids = std::collections::HashSet::new();
        for op in operations() {
            let d = &doc["paths"][op.path][op.method.as_str().to_ascii_lowercase()];
            assert_eq!(d["operationId"], op.id, "{}", op.path);
            assert!(ids.insert(op.id), "operationId {} twice", op.id);
            let secured = d["security"].as_array().unwrap().len() == 1;
            assert_eq!(secured, op.access != Access::Public, "{}", op.id);
            if secured {
                assert!(d["responses"]["401"].is_object(), "{}", op.id);
            }
        }
        let refs = doc.to_string();
        for def in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                refs.contains(&format!("#/components/schemas/{def}")),
                "{def} unused"
            );
        }
    }
}
