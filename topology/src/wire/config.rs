//! The replicated deployment on the wire: the command that changes it, and what
//! `portico config` reads and sends (`/api/v1/config...`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::state::Timestamp;

/// A new version of the deployment. Applied at one log index on every node, so every node
/// switches answers at the same index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentChange {
    /// The deployment document (`[zone]`, `[[site]]`, `[[service]]`; canonical TOML).
    pub document: String,
    /// Apply only if the current version is this one (0: the store has none yet); a change
    /// made against an older version is refused rather than silently undoing another.
    pub expect_version: Option<u64>,
    /// The authenticated identity that asked.
    pub who: String,
    pub why: String,
    /// The version whose document this restores (`portico config rollback`).
    pub rollback_of: Option<u64>,
    /// A `who` the request itself gave, kept as a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One version of the deployment, as kept in the store's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub version: u64,
    /// The log index it was applied at (the same on every node).
    pub index: u64,
    pub at: Timestamp,
    pub who: String,
    pub why: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub rollback_of: Option<u64>,
    /// What it changed against the version before it.
    pub diff: DeploymentDiff,
}

/// `GET /api/v1/config`: the deployment the answering node's answers come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    /// 0: the store has no deployment yet and the node answers from its own file.
    pub version: u64,
    pub index: u64,
    pub at: Option<Timestamp>,
    pub who: Option<String>,
    pub why: Option<String>,
    pub document: String,
    /// This node's own file describes another deployment than the store's.
    pub file_differs: bool,
}

/// `GET /api/v1/config/history`: the versions the store keeps (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigHistory {
    pub current: u64,
    pub versions: Vec<ConfigVersion>,
}

/// `POST /api/v1/config` (with `?dry_run=true` nothing changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigApply {
    /// A configuration file's text: its deployment tables are what is applied (node
    /// sections, if any, are validated and left out).
    pub document: String,
    /// Refuse (409) unless the store is at this version.
    pub expect_version: Option<u64>,
    pub why: String,
    pub who: Option<String>,
}

/// `POST /api/v1/config/rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRollback {
    pub version: u64,
    pub why: String,
    pub who: Option<String>,
}

/// What a configuration change does (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigOutcome {
    pub dry_run: bool,
    /// The version it was compared with.
    pub from_version: u64,
    /// The version it became (`None` when dry, or when nothing changed).
    pub version: Option<u64>,
    /// The log index it applied at.
    pub index: Option<u64>,
    pub diff: DeploymentDiff,
    /// Per service and client region: the answer before and after.
    pub answers: Vec<AnswerChange>,
}

/// Names added, removed and changed between two deployments (`site iad`,
/// `service s3`, `member s3/iad-1`, `zone`, `record www CNAME`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl DeploymentDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// "2 added, 1 changed" (or "no change").
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            (self.added.len(), "added"),
            (self.removed.len(), "removed"),
            (self.changed.len(), "changed"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "no change".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The answer one client region gets for one service, before and after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerChange {
    pub service: String,
    /// `clients of fra (127.1.0.0/16)`, or `clients of unknown location`.
    pub region: String,
    /// The address asked as.
    pub client: IpAddr,
    /// `None`: the service does not exist on that side.
    pub before: Option<RegionAnswer>,
    pub after: Option<RegionAnswer>,
    pub changed: bool,
}

/// The first answer a region gets: the site it is sent to and the addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionAnswer {
    pub site: Option<String>,
    pub addresses: Vec<IpAddr>,
}
