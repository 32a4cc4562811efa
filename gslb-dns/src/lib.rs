//! `gslb-dns`: Portico's authoritative GSLB DNS node.
//!
//! What it is: one DNS node. It loads and validates its configuration, opens the GeoIP
//! database and its replica of the state store, and answers DNS over UDP and TCP ([`dns`])
//! from an immutable [`Snapshot`] that [`control::Control`] rebuilds whenever the store
//! applies a change (the deployment itself is replicated state), plus the admin HTTP API
//! ([`api`]) with drills ([`drill`]) and deployment changes ([`deployment`]). [`start`]
//! runs a node in-process (tests and `portico demo` do); `main.rs` is a thin shell.
//!
//! What it is not: answer selection lives in `topology` (pure); GeoIP decoding in
//! `geoip-data`; raft and sled in `state-store`; the CLI, the agent and the proxy in their
//! own packages (this crate links none of them).

pub mod api;
pub mod control;
pub mod deployment;
pub mod dns;
pub mod drill;
pub mod metrics;
pub mod node;
pub mod store;
pub mod timeline;

pub use control::Control;
pub use dns::Snapshot;
pub use node::{RunningNode, load_config, start};
