//! Token management over the control subjects (EVENTS.md §7, API.md §9): mint, revoke,
//! placement reports and artifact re-derivation, served with the NATS service API in queue
//! group `q`. The service commits before it replies; a revoke's event leaves through the
//! outbox. The CLI uses these now and the REST API will later, passing the refusals on.

use std::sync::Arc;

use async_nats::service::ServiceExt;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use decnet_storage::{CanaryTokenRow, Database, NewCanaryToken, StorageError};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::SERVICE;
use crate::beacon::revoked_message;
use crate::generators::{self, Input};
use crate::service::CanaryConfig;
use crate::token::{self, TokenKind};

/// The canary service's name in `$SRV.*`.
pub const CANARY_SERVICE: &str = "decnet-canary";
/// Mint a token and its artifact.
pub const MINT: &str = "decnet.canary.token.mint";
/// Revoke a token.
pub const REVOKE: &str = "decnet.canary.token.revoke";
/// Report whether a placement succeeded.
pub const PLACEMENT: &str = "decnet.canary.token.placement";
/// Re-derive a token's artifact.
pub const ARTIFACT: &str = "decnet.canary.token.artifact";

pub use decnet_bus::control::Refusal;

fn refuse<T>(code: u16, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(code, message))
}

fn storage(e: &StorageError) -> Refusal {
    tracing::warn!(error = %e, "a token request could not be committed");
    Refusal {
        code: 503,
        message: "canary database unavailable; nothing changed".to_owned(),
    }
}

/// `decnet.canary.token.mint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// Generator name (CANARY.md §13).
    pub generator: String,
    /// The decoy that will hold the artifact.
    pub decky_name: String,
    /// Where on the decoy; the generator's default when absent.
    #[serde(default)]
    pub placement_path: Option<String>,
    /// Operator note, at most 512 characters.
    #[serde(default)]
    pub memo: Option<String>,
    /// JWT subject or `system`.
    pub created_by: String,
}

/// `decnet.canary.token.revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The token.
    pub token_id: Uuid,
    /// Who.
    pub revoked_by: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `decnet.canary.token.placement`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    /// The token.
    pub token_id: Uuid,
    /// Whether the artifact was planted.
    pub ok: bool,
    /// What went wrong.
    #[serde(default)]
    pub error: Option<String>,
}

/// `decnet.canary.token.artifact`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRequest {
    /// The token.
    pub token_id: Uuid,
}

/// A token as the API shows it to an admin: never the nonce or the bare slug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    /// Id, and the subject token of its events.
    pub uuid: Uuid,
    /// `http`, `dns` or `aws_passive`.
    pub kind: String,
    /// Generator name.
    pub generator: String,
    /// Decoy.
    pub decky_name: String,
    /// Where the artifact goes.
    pub placement_path: String,
    /// `planted`, `failed` or `revoked`.
    pub state: String,
    /// Operator note.
    pub memo: Option<String>,
    /// Who minted it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When its placement was reported.
    pub placed_at: Option<DateTime<Utc>>,
    /// Last recorded hit.
    pub last_triggered_at: Option<DateTime<Utc>>,
    /// Recorded hits.
    pub trigger_count: i64,
    /// Placement failure.
    pub last_error: Option<String>,
    /// When revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// By whom.
    pub revoked_by: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
    /// The callback URL of HTTP tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon_url: Option<String>,
    /// The callback name of DNS tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
}

/// An artifact to plant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactView {
    /// File name.
    pub filename: String,
    /// Where it goes.
    pub placement_path: String,
    /// Octal mode, `0600`.
    pub mode: String,
    /// The modification time to give it, so it looks lived in.
    pub mtime: DateTime<Utc>,
    /// The bytes, base64.
    pub content_b64: String,
    /// How it calls back.
    pub notes: String,
}

/// The answer to a mint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Minted {
    /// The token.
    pub token: TokenView,
    /// Its artifact.
    pub artifact: ArtifactView,
}

/// Token management, shared by the control endpoints and the tests.
pub struct Tokens {
    db: Database,
    config: CanaryConfig,
    published: Arc<Notify>,
}

impl Tokens {
    /// Management of the tokens in `db`.
    pub fn new(db: Database, config: CanaryConfig, published: Arc<Notify>) -> Tokens {
        Tokens {
            db,
            config,
            published,
        }
    }

    fn view(&self, row: &CanaryTokenRow) -> TokenView {
        let kind = row.kind.clone();
        TokenView {
            uuid: row.uuid,
            beacon_url: (kind == TokenKind::Http.as_str())
                .then(|| generators::beacon_url(&self.config.http_base, &row.slug)),
            dns_name: (kind == TokenKind::Dns.as_str())
                .then(|| {
                    self.config
                        .dns_zone
                        .as_ref()
                        .map(|z| format!("{}.{z}", row.slug))
                })
                .flatten(),
            kind,
            generator: row.generator.clone(),
            decky_name: row.decky_name.clone(),
            placement_path: row.placement_path.clone(),
            state: row.state.clone(),
            memo: row.memo.clone(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            placed_at: row.placed_at,
            last_triggered_at: row.last_triggered_at,
            trigger_count: row.trigger_count,
            last_error: row.last_error.clone(),
            revoked_at: row.revoked_at,
            revoked_by: row.revoked_by.clone(),
            revoke_reason: row.revoke_reason.clone(),
        }
    }

    fn artifact(&self, row: &CanaryTokenRow) -> Result<ArtifactView, Refusal> {
        let Some(spec) = generators::spec(&row.generator) else {
            return refuse(
                422,
                format!("token {} has no generator to re-derive", row.uuid),
            );
        };
        let input = Input {
            slug: &row.slug,
            beacon_url: &generators::beacon_url(&self.config.http_base, &row.slug),
            beacon_host: generators::beacon_host(&self.config.http_base),
            dns_zone: self.config.dns_zone.as_deref(),
            mint_uuid: row.mint_uuid,
            nonce: row.fingerprint_nonce.as_deref(),
        };
        let artifact = generators::generate(&row.generator, &input).map_err(|e| Refusal {
            code: 422,
            message: e.to_string(),
        })?;
        Ok(ArtifactView {
            filename: artifact.file_name,
            placement_path: row.placement_path.clone(),
            mode: format!("{:04o}", spec.mode),
            mtime: row.created_at - TimeDelta::days(spec.age_days),
            content_b64: STANDARD.encode(&artifact.bytes),
            notes: spec.description.to_owned(),
        })
    }

    /// Mint a token: validate, derive slug, mint uuid and nonce, store, and build the artifact.
    pub async fn mint(&self, req: &MintRequest, now: DateTime<Utc>) -> Result<Minted, Refusal> {
        let Some(spec) = generators::spec(&req.generator) else {
            return refuse(422, format!("unknown generator '{}'", req.generator));
        };
        if !decnet_proto::wire::is_decky(&req.decky_name) {
            return refuse(422, "decky_name must match [a-z0-9][a-z0-9-]{0,62}");
        }
        let placement = req
            .placement_path
            .clone()
            .unwrap_or_else(|| spec.default_path.to_owned());
        if !is_placement_path(&placement) {
            return refuse(
                422,
                "placement_path must be absolute, without NUL, CR, LF or a '..' component",
            );
        }
        if req.memo.as_ref().is_some_and(|m| m.chars().count() > 512) {
            return refuse(422, "memo must be at most 512 characters");
        }
        if req.created_by.trim().is_empty() {
            return refuse(422, "created_by must not be empty");
        }
        if spec.needs_dns_zone && self.config.dns_zone.is_none() {
            return refuse(
                422,
                format!("generator '{}' needs DECNET_CANARY_DNS_ZONE", spec.name),
            );
        }
        let secret = self
            .config
            .fingerprint_secret
            .as_deref()
            .filter(|s| !s.is_empty());
        if spec.fingerprint && secret.is_none() {
            return refuse(503, "canary fingerprint secret is not configured");
        }
        let slug = token::new_slug().map_err(|e| Refusal {
            code: 503,
            message: format!("no randomness for a slug: {e}"),
        })?;
        // Every fingerprint token gets its mint uuid and nonce here, and only here.
        let (mint, nonce) = match (spec.fingerprint, secret) {
            (true, Some(secret)) => (
                Some(token::mint_uuid(&slug)),
                Some(token::fingerprint_nonce(secret, &slug)),
            ),
            _ => (None, None),
        };
        let new = NewCanaryToken {
            uuid: Uuid::new_v4(),
            kind: spec.kind.as_str(),
            generator: spec.name,
            decky_name: &req.decky_name,
            placement_path: &placement,
            slug: &slug,
            mint_uuid: mint,
            fingerprint_nonce: nonce.as_deref(),
            memo: req.memo.as_deref(),
            created_by: req.created_by.trim(),
            created_at: now,
        };
        let row = self
            .db
            .insert_canary_token(&new)
            .await
            .map_err(|e| storage(&e))?;
        tracing::info!(token = %row.uuid, generator = spec.name, decky = %row.decky_name, "canary token minted");
        Ok(Minted {
            artifact: self.artifact(&row)?,
            token: self.view(&row),
        })
    }

    async fn known(&self, id: Uuid) -> Result<CanaryTokenRow, Refusal> {
        match self.db.canary_token(id).await {
            Ok(Some(row)) => Ok(row),
            Ok(None) => refuse(404, format!("unknown canary token '{id}'")),
            Err(e) => Err(storage(&e)),
        }
    }

    /// Revoke a token; revoking a revoked token changes and publishes nothing.
    pub async fn revoke(
        &self,
        req: &RevokeRequest,
        now: DateTime<Utc>,
    ) -> Result<TokenView, Refusal> {
        self.known(req.token_id).await?;
        let reason = req.reason.clone().unwrap_or_else(|| "operator".to_owned());
        let revoked = self
            .db
            .revoke_canary_token(
                SERVICE,
                req.token_id,
                &req.revoked_by,
                &reason,
                now,
                |row| revoked_message(row, None),
            )
            .await
            .map_err(|e| storage(&e))?;
        let Some((row, changed)) = revoked else {
            return refuse(404, format!("unknown canary token '{}'", req.token_id));
        };
        if changed {
            self.published.notify_one();
        }
        Ok(self.view(&row))
    }

    /// A placement report.
    pub async fn placement(
        &self,
        req: &PlacementRequest,
        now: DateTime<Utc>,
    ) -> Result<TokenView, Refusal> {
        let row = self.known(req.token_id).await?;
        if row.state != "planted" {
            return refuse(422, "placement can only be reported for a planted token");
        }
        match self
            .db
            .report_canary_placement(req.token_id, req.ok, req.error.as_deref(), now)
            .await
        {
            Ok(Some(row)) => Ok(self.view(&row)),
            Ok(None) => refuse(404, format!("unknown canary token '{}'", req.token_id)),
            Err(e) => Err(storage(&e)),
        }
    }

    /// Re-derive a token's artifact.
    pub async fn artifact_of(&self, req: &ArtifactRequest) -> Result<ArtifactView, Refusal> {
        let row = self.known(req.token_id).await?;
        self.artifact(&row)
    }
}

/// Absolute, no NUL, CR or LF, no `..` component.
pub fn is_placement_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains(['\0', '\r', '\n'])
        && !path.split('/').any(|c| c == "..")
}

fn json(value: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("views serialise"))
}

/// Serve the control endpoints until the task is aborted.
pub async fn start(
    client: &async_nats::Client,
    db: Database,
    config: CanaryConfig,
    published: Arc<Notify>,
) -> Result<tokio::task::JoinHandle<()>, async_nats::Error> {
    let service = client
        .service_builder()
        .description("decnet canary: token management")
        .queue_group(decnet_proto::control::QUEUE_GROUP)
        .start(CANARY_SERVICE, env!("CARGO_PKG_VERSION"))
        .await?;
    let mut mint = service.endpoint(MINT).await?;
    let mut revoke = service.endpoint(REVOKE).await?;
    let mut placement = service.endpoint(PLACEMENT).await?;
    let mut artifact = service.endpoint(ARTIFACT).await?;
    let tokens = Tokens::new(db, config, published);
    Ok(tokio::spawn(async move {
        let _service = service;
        loop {
            let (request, reply) = tokio::select! {
                Some(r) = mint.next() => {
                    let reply = match decnet_bus::control::decode::<MintRequest>(&r.message.payload) {
                        Ok(req) => tokens.mint(&req, Utc::now()).await.map(|m| json(&m)),
                        Err(e) => Err(e),
                    };
                    (r, reply)
                }
                Some(r) = revoke.next() => {
                    let reply = match decnet_bus::control::decode::<RevokeRequest>(&r.message.payload) {
                        Ok(req) => tokens.revoke(&req, Utc::now()).await.map(|t| json(&t)),
                        Err(e) => Err(e),
                    };
                    (r, reply)
                }
                Some(r) = placement.next() => {
                    let reply = match decnet_bus::control::decode::<PlacementRequest>(&r.message.payload) {
                        Ok(req) => tokens.placement(&req, Utc::now()).await.map(|t| json(&t)),
                        Err(e) => Err(e),
                    };
                    (r, reply)
                }
                Some(r) = artifact.next() => {
                    let reply = match decnet_bus::control::decode::<ArtifactRequest>(&r.message.payload) {
                        Ok(req) => tokens.artifact_of(&req).await.map(|a| json(&a)),
                        Err(e) => Err(e),
                    };
                    (r, reply)
                }
                else => return,
            };
            if let Err(e) = decnet_bus::control::respond(&request, reply).await {
                tracing::warn!(error = %e, "replying to a token request failed");
            }
        }
    }))
}
