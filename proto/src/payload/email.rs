//! `email.received` (EVENTS.md §4.5), field-compatible with DECNET's producer.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::{Decky, Hex64, Ip};

/// Which mode of the SMTP decoy took the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpService {
    /// Credential harvester.
    Smtp,
    /// Open relay.
    SmtpRelay,
}

/// `email.received`: one message the SMTP decoy stored, with its derived features. The text
/// itself stays in the `QUARANTINE` object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmailReceived {
    /// Message key; our decoy sends `stored_as`.
    pub source_id: String,
    /// Anchor if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_uuid: Option<Uuid>,
    /// SMTP client address; required unless `attacker_uuid` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_ip: Option<Ip>,
    /// Decoy.
    pub decky_id: Decky,
    /// Harvester or relay mode.
    pub service: SmtpService,
    /// Decoded `Subject` (at most 512 characters).
    #[schemars(required, transform = crate::wire::nullable, length(max = 512))]
    pub subject: Option<String>,
    /// Domain of the `From` header.
    #[schemars(required, transform = crate::wire::nullable)]
    pub from_domain: Option<String>,
    /// Domain of the envelope sender.
    #[schemars(required, transform = crate::wire::nullable)]
    pub mail_from_domain: Option<String>,
    /// Domain of a `Return-Path` header.
    #[schemars(required, transform = crate::wire::nullable)]
    pub return_path_domain: Option<String>,
    /// Accepted recipients.
    pub rcpt_count: i64,
    /// Their distinct domains, first-seen order.
    pub rcpt_domains: Vec<String>,
    /// Decoded `X-Mailer` (at most 256 characters).
    #[schemars(required, transform = crate::wire::nullable, length(max = 256))]
    pub x_mailer: Option<String>,
    /// An `Authentication-Results` header says `dkim=pass`.
    pub dkim_signed: bool,
    /// An `Authentication-Results` header says `spf=pass`.
    pub spf_pass: bool,
    /// Distinct http(s) URLs in text parts (at most 64).
    #[schemars(length(max = 64))]
    pub urls: Vec<String>,
    /// Attachments.
    pub attachment_count: i64,
    /// SHA-256 of each decoded attachment.
    pub attachment_sha256s: Vec<Hex64>,
    /// Distinct lower-case extensions with the dot (`.docm`).
    pub attachment_extensions: Vec<String>,
    /// 64-bit SimHash of the body as 16 hex digits; absent under 8 words.
    #[schemars(required, transform = crate::wire::nullable)]
    pub body_simhash: Option<String>,
    /// Decoded size of the largest base64 run in the text.
    pub body_base64_bytes: i64,
    /// An attachment carries a VBA project.
    pub attachment_macros: bool,
    /// An attachment is an encrypted archive or document.
    pub attachment_password_protected: bool,
    /// An HTML part or attachment has the smuggling shape.
    pub html_smuggling: bool,
    /// Quarantine file name.
    pub stored_as: String,
    /// SHA-256 of the whole stored message.
    pub body_sha256: Hex64,
    /// An attachment hash is known-bad; absent when no reputation source ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mal_hash_match: Option<bool>,
    /// Messages in the trailing window within simhash distance 3 of this one, itself included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_message_count: Option<i64>,
    /// Distinct recipient addresses across those messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_rcpt_count: Option<i64>,
    /// The window in hours, 24.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_window_h: Option<i64>,
    /// End of DATA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// Stored size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// The body exceeded the size cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// EHLO/HELO argument (at most 255 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub helo: Option<String>,
    /// The transaction followed a successful AUTH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
    /// The message has a `DKIM-Signature` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim_signature_present: Option<bool>,
    /// The message has an `Authentication-Results` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_results_present: Option<bool>,
}
