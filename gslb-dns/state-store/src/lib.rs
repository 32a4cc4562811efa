//! `state-store`: Portico's raft-replicated state store.
//!
//! What it is: the replicated truth every gslb-dns node answers from. A [`Replica`] is one
//! raft-rs `RawNode` over [`SledStorage`] (log, hard state, conf state, snapshots, applied
//! index on sled, flushed before anything that depends on them leaves the node) with the
//! state [`machine`] and its pure [`machine::apply`]. The node loop, the transport between
//! nodes and the proposal plumbing live beside it.
//!
//! What it is not: the DNS front or the HTTP APIs (those are in `gslb-dns`); raft and sled
//! types do not leave this crate's API except where a test harness needs raft messages.

pub mod clock;
pub mod machine;
pub mod node;
pub mod replica;
pub mod storage;
pub mod tls;
pub mod transport;

pub use machine::{Machine, Outcome, StoredVersion, apply};
pub use node::{Committed, Membership, Node, NodeHandle, NodeOptions, Outbox, Published};
pub use replica::{
    Advanced, AppliedEntry, ProposeError, RaftSettings, Replica, ReplicaError, ReplicaStatus,
};
pub use storage::{SledStorage, StorageFault};
pub use tls::{Tls, TlsError};
pub use transport::{Limits, Rejection, TcpTransport, TransportCounters};
