//! Portico's model of a deployment, with no I/O and no clock.
//!
//! What it is: the configuration types ([`config`], one TOML document for a whole
//! deployment, validated into the checked [`Deployment`]), the runtime [`State`] (member
//! health, load-feedback weight and admin state; per site the time of the last report),
//! and the pure answer selection of DESIGN section 4 ([`select()`], [`explain()`]) together
//! with the client-class table ([`ClassTable`]) that lets the DNS front precompute answers.
//! Also the vocabulary the processes share: the typed messages between them ([`wire`]),
//! the deployment diff ([`diff`]) and the metrics text format ([`exposition`]).
//!
//! What it is not: it opens no socket or file and reads no clock (time is passed in as a
//! [`Timestamp`]); it knows nothing of DNS wire formats, GeoIP databases, raft or HTTP.

pub mod agent_check;
pub mod classes;
pub mod config;
pub mod diff;
pub mod explain;
pub mod exposition;
pub mod geo;
pub mod hysteresis;
pub mod model;
pub mod name;
pub mod per_address;
pub mod prefix;
pub mod records;
pub mod rendezvous;
pub mod select;
pub mod state;
pub mod wire;

pub use classes::{BaseClasses, BaseClassesBuilder, ClassId, ClassTable, UNKNOWN_CLASS};
pub use config::{Config, ConfigError, DEFAULT_CONFIG, deployment_document};
pub use explain::{Explain, explain};
pub use geo::{ClientLocation, GeoLocation};
pub use model::*;
pub use name::DomainName;
pub use select::{ClientClass, Family, Selection, Variant, classify, select};
pub use state::{
    AdminState, Health, MemberState, PassiveMark, SiteState, State, Timestamp, VantageSeen,
};
