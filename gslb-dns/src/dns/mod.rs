//! The DNS front: a zero-copy query reader, the responder over a [`crate::Snapshot`], the
//! zone encoder (the only user of hickory-proto), and the UDP and TCP listeners.

pub mod client;
pub mod respond;
pub mod tcp;
pub mod udp;
pub mod wire;
pub mod zone;

pub use respond::{Outcome, Transport, respond};
