//! A change of the replicated deployment, prepared before anything is proposed: the text
//! validated (key and line of the operator's file), the document it yields read back, the
//! zone encoded and the client classes built as this node would serve them, and what it
//! changes: names added, removed and changed, and for each service and client region the
//! answer before and after (selection on the current state, as explain computes it).

use std::net::IpAddr;

use state_store::Machine;
use topology::wire::config::ConfigOutcome;
use topology::{ClientLocation, Config, ConfigError, Deployment, Timestamp};

use crate::dns::Snapshot;
use crate::dns::snapshot::geo_location;

/// What is being applied.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A configuration file's text (its deployment tables are taken).
    File(&'a str),
    /// A deployment document as the store keeps it (a rollback).
    Document(&'a str),
}

/// Why a change cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    #[error("this node cannot serve it: {0}")]
    Unservable(String),
}

/// A checked change, with what it would do.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub document: String,
    pub outcome: ConfigOutcome,
}

/// Checks `source` against what `snapshot` serves and `machine` holds, at `now`.
pub fn prepare(
    snapshot: &Snapshot,
    machine: &Machine,
    source: Source<'_>,
    now: Timestamp,
) -> Result<Prepared, ChangeError> {
    let seconds = now.0 / 1000;
    let document = match source {
        Source::File(text) => Config::from_toml(text, seconds)?.document,
        Source::Document(document) => document.to_owned(),
    };
    let new = Deployment::from_document(&document, seconds)?;
    // The zone is what a deployment can get wrong; its GeoIP classes are built when it is
    // applied (walking the database here too would double the memory of a change).
    crate::dns::zone::ZoneData::build(&new, &snapshot.dns)
        .map_err(|e| ChangeError::Unservable(format!("zone: {e}")))?;
    let locate = |deployment: &Deployment, ip: IpAddr| {
        if let Some((site, _)) = topology::classes::site_network_of(deployment, ip) {
            return ClientLocation::SiteNetwork { site };
        }
        match snapshot.geo.lookup(ip) {
            Ok(Some((location, _))) => ClientLocation::Geoip {
                location: geo_location(location),
            },
            _ => ClientLocation::Unknown,
        }
    };
    let current = &snapshot.deployment;
    let answers = topology::diff::answer_changes(
        (current, &snapshot.state),
        (&new, &machine.state(&new)),
        locate,
        snapshot.built_at,
    );
    Ok(Prepared {
        outcome: ConfigOutcome {
            dry_run: true,
            from_version: machine.version(),
            version: None,
            index: None,
            diff: topology::diff::diff(current, &new),
            answers,
        },
        document,
    })
}
