//! The DNS front: the immutable [`Snapshot`] it answers from (answers precomputed per
//! service, family and client class), a zero-copy query reader, the responder, the zone
//! encoder (hickory-proto's only use in gslb-dns), the UDP and TCP listeners and their
//! counters.

pub mod counters;
pub mod respond;
pub mod snapshot;
pub mod tcp;
pub mod udp;
pub mod wire;
pub mod zone;

pub use respond::{Outcome, Transport, respond};
pub use snapshot::Snapshot;
