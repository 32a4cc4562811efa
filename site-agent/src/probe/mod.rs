//! Storage-readiness probes, one module each. A probe connects to one member, proves that
//! it can serve its protocol (not merely that a port is open), and returns a verdict with
//! a reason and the time it took. Every probe is bounded by its timeout: a hung node (TCP
//! accepts, never answers) costs one timeout, never a stuck agent.

pub mod http;
mod io;
pub mod nfs;
pub mod s3;
pub mod smb;
pub mod tcp;
mod verdict;

pub use verdict::{Verdict, bounded};
