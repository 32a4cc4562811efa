//! Portico's per-site data path. L4 listeners forward NFS, SMB or any TCP to the member
//! rendezvous hashing picks for the client; S3 listeners route each request by rules to a
//! pool and the least busy member. Member weights, drains, discovered addresses and the
//! members themselves come from the state store's stream; RTTs of client connections go
//! back to it.
//!
//! [`prepare`] checks a configuration and binds every port; [`run`] serves until its
//! shutdown future completes, then drains. The `proxy` binary and `portico demo` use both.

pub mod metrics;
pub mod pipes;
pub mod rtt;
pub mod run;
pub mod s3;
pub mod shared;
pub mod store_link;
pub mod sys;
pub mod tcp;
pub mod upstreams;

pub use run::{Prepared, prepare, run};
