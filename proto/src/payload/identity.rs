//! `credential.reuse.detected` and the identity subjects (EVENTS.md §4.8, §4.9), the
//! producers' clustering results.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::Ip;

/// `credential.reuse.detected`: one secret used against several decoys or services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CredentialReuse {
    /// Reuse record id at the producer.
    pub id: String,
    /// `password`, `ssh_key`, …
    pub secret_kind: String,
    /// Decoys/services the secret was used against.
    pub target_count: i64,
    /// Attackers using it (may be empty).
    pub attacker_uuids: Vec<Uuid>,
    /// Their addresses (may be empty).
    pub attacker_ips: Vec<Ip>,
    /// Where it was used.
    pub deckies: Vec<String>,
    /// Services it was used on.
    pub services: Vec<String>,
    /// The producer's keyed hash of the secret; the secret never travels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_hash: Option<String>,
    /// Distinct attackers using it; derived from the lists when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_count: Option<i64>,
}

/// `identity.formed`: attackers grouped into a new identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IdentityFormed {
    /// The new identity.
    pub identity_uuid: Uuid,
    /// Attacker uuids grouped into it.
    pub observation_uuids: Vec<Uuid>,
    /// The producer's keyed hash of a password its members share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_password_hash: Option<String>,
    /// Accounts that password was tried against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_count: Option<i64>,
}

/// `identity.merged`: the loser is folded into the winner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IdentityMerged {
    /// The identity that remains.
    pub winner_uuid: Uuid,
    /// The identity folded into it.
    pub loser_uuid: Uuid,
    /// Equals `winner_uuid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_uuid: Option<Uuid>,
}

/// `identity.observation.linked`: an attacker joined an identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservationLinked {
    /// The identity.
    pub identity_uuid: Uuid,
    /// The attacker that joined it.
    pub observation_uuid: Uuid,
}

/// `identity.campaign.assigned`: an identity joined a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignAssigned {
    /// The identity.
    pub identity_uuid: Uuid,
    /// The campaign it joined.
    pub campaign_uuid: Uuid,
    /// Its previous campaign.
    #[schemars(required, transform = crate::wire::nullable)]
    pub prior_campaign_uuid: Option<Uuid>,
}
