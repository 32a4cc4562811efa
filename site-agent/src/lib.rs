//! `site-agent`: one per site. It probes the storage nodes of its site with checks that mean
//! "this node can serve storage" (S3, NFS, SMB, TCP, HTTP), reads their load feedback
//! (HAProxy agent-check), applies rise/fall hysteresis and reports to the state store.
//!
//! Parts: `probe` (one module per protocol, each bounded by a timeout and measured),
//! `sigv4` (the S3 probe's signer), `target` (what to probe, and one check run hedged),
//! `feedback` (agent-check replies), `tracker` (pure: a
//! member's hysteresis, weight and load-feedback state) and `agent` (the run loop: probes
//! spread over the interval, bounded concurrency, reports through the API client with a
//! timeout per node and fail-over between nodes, and the store's deployment followed),
//! `vantage` (cross-site probes of another site's members, when the store asks because that
//! site's agent has gone quiet), `watch` (an idle connection per member between probes, so
//! a dying service process is probed at once).
//!
//! What it is not: a judge of the site as a whole (the store decides staleness), or a
//! proxy.

pub mod agent;
pub mod discover;
pub mod feedback;
pub mod metrics;
pub mod probe;
pub mod sigv4;
pub mod target;
pub mod tls;
pub mod tracker;
pub mod vantage;
pub mod watch;
