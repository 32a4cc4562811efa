//! The DNS node's side of the replicated store: opens the local replica and its transport
//! from the configuration, and follows the applied machine and the store's health into
//! [`Control`], so answers change on this node as soon as a change is applied here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use state_store::{
    Membership, Node, NodeAddress, NodeOptions, NodeStatus, RaftSettings, TcpTransport, Tls,
};
use tokio::sync::watch;
use topology::Deployment;

use crate::control::Control;
use crate::snapshot::StoreView;

/// The local replica and its transport.
pub struct Store {
    pub node: Node,
    pub transport: Arc<TcpTransport>,
    /// This node's raft address when the cluster has more than one node.
    pub raft_listen: Option<std::net::SocketAddr>,
    /// Mutual TLS between nodes, when `store.tls` is configured.
    pub tls: Option<Tls>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.node.id())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the replica in `<data_dir>/node-<id>` (sled holds a lock on it: one process per
    /// node) and prepares connections to the configured peers. Binds nothing.
    pub fn open(deployment: Arc<Deployment>) -> anyhow::Result<Store> {
        let settings = &deployment.store;
        let data_dir = PathBuf::from(&settings.data_dir).join(format!("node-{}", settings.node_id));
        let tls = match &settings.tls {
            None => None,
            Some(files) => Some(
                Tls::load(files.cert.as_ref(), files.key.as_ref(), files.ca.as_ref())
                    .context("cannot load the store's TLS files")?,
            ),
        };
        let (handle, inputs) = state_store::node::channel();
        let transport = TcpTransport::new(
            handle.clone(),
            tokio::runtime::Handle::current(),
            tls.clone(),
        );
        for peer in settings.nodes.iter().filter(|n| n.id != settings.node_id) {
            transport.set_peer(peer.id, &peer.raft.to_string());
        }
        let options = NodeOptions {
            id: settings.node_id,
            initial_voters: settings.initial_voters(),
            data_dir: data_dir.clone(),
            tick: settings.tick_interval,
            raft: RaftSettings {
                election_ticks: settings.election_ticks,
                heartbeat_ticks: settings.heartbeat_ticks,
                snapshot_threshold: settings.snapshot_threshold,
            },
            propose_timeout: settings.propose_timeout,
        };
        let node = Node::start(
            options,
            handle,
            inputs,
            deployment.clone(),
            transport.clone(),
        )
        .with_context(|| format!("cannot open the state store in {}", data_dir.display()))?;
        Ok(Store {
            node,
            transport,
            raft_listen: settings.this_node().map(|n| n.raft),
            tls,
        })
    }

    /// Adds (or removes) a node; a new node's address is replicated with the change so every
    /// node can reach it.
    pub async fn change_membership(
        &self,
        id: u64,
        change: Membership,
        address: Option<NodeAddress>,
    ) -> Result<(), state_store::ProposeError> {
        if let Some(address) = &address {
            self.transport.set_peer(id, &address.raft);
        }
        self.node.change_membership(id, change, address).await
    }

    pub fn status(&self) -> NodeStatus {
        self.node.status()
    }
}

/// Follows the applied machine into `control` (and new peers into the transport) until
/// `shutdown`.
pub async fn follow_machine(
    store: Arc<Store>,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut applied = store.node.subscribe();
    let own_id = store.node.id();
    loop {
        let machine = applied.borrow_and_update().machine.clone();
        for (id, address) in machine.nodes.iter() {
            if *id != own_id {
                store.transport.set_peer(*id, &address.raft);
            }
        }
        control.apply_machine(machine, crate::admin::now());
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Follows the store's health (leader, term, degraded) into `control` until `shutdown`.
pub async fn follow_status(
    store: Arc<Store>,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let status = store.status();
        control.set_store(
            StoreView {
                node_id: status.id,
                applied: status.applied,
                leader: status.leader,
                term: status.term,
                degraded_since: status.degraded_since,
            },
            crate::admin::now(),
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
