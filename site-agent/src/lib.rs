//! `site-agent`: one per site. It probes the storage nodes of its site with checks that mean
//! "this node can serve storage" (S3, NFS, SMB, TCP, HTTP), reads their load feedback
//! (HAProxy agent-check), applies rise/fall hysteresis and reports to the state store.
//!
//! What it is today: the probes (`probe`), each bounded by a timeout and measured, and the
//! SigV4 signer the S3 probe uses. What it is not yet: the scheduler and the reporting loop
//! (issue 4 continues); the binary still validates the configuration and exits.

pub mod feedback;
pub mod probe;
pub mod sigv4;
