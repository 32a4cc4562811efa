//! The DNS node's side of the replicated store: opens the local replica and its transport
//! from `[store]`, follows the applied machine and the store's health into [`Control`]
//! (answers change on this node as soon as a change is applied here), proposes writes and
//! waits until this node's answers reflect them, and bootstraps the deployment: the leader
//! of a store without one seeds it from its own file; a node whose file says otherwise
//! warns and answers from the store's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use portico_client::tls::ClientTls;
use portico_client::{ApiClient, ClientOptions};
use state_store::clock::now;
use state_store::{Committed, Membership, Node, NodeOptions, Outcome, ProposeError, RaftSettings};
use state_store::{Limits, TcpTransport, Tls};
use tokio::sync::watch;
use topology::StoreSettings;
use topology::wire::config::DeploymentChange;
use topology::wire::views::{NodeAddress, NodeStatus, StoreView};
use topology::wire::{Command, WIRE_VERSION};

use crate::control::Control;

/// The oldest wire version that knows replicated deployments: every voter must run at
/// least this before the leader seeds one (an older replica could not apply it).
const DEPLOYMENT_WIRE_VERSION: u16 = 2;
const _: () = assert!(DEPLOYMENT_WIRE_VERSION <= WIRE_VERSION);

/// The local replica and its transport.
pub struct Store {
    pub node: Node,
    pub transport: Arc<TcpTransport>,
    /// This node's raft address when the cluster has more than one node.
    pub raft_listen: Option<std::net::SocketAddr>,
    /// Mutual TLS between nodes, when `store.tls` is configured.
    pub tls: Option<Tls>,
    settings: StoreSettings,
    /// How this node reaches the other nodes' admin APIs (HTTPS with `admin.tls.ca`).
    peer_api_tls: Option<ClientTls>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.node.id())
            .finish_non_exhaustive()
    }
}

/// Who a change is recorded as: the authenticated identity, why, and the request's own
/// `who` as a note when it says something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub who: String,
    pub why: String,
    pub note: Option<String>,
}

/// Why a write did not take.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store cannot take writes now (no leader, too slow): retry.
    #[error("{0}")]
    Unavailable(ProposeError),
    /// Committed, but the machine did not apply it (an old report, an unknown name).
    #[error("committed at {index} but not applied: {why}")]
    NotApplied { index: u64, why: String },
    #[error("{0}")]
    Encode(String),
}

impl Store {
    /// Opens the replica in `<data_dir>/node-<id>` (sled holds a lock on it: one process per
    /// node) and prepares connections to the configured peers. Binds nothing.
    pub fn open(
        settings: &StoreSettings,
        peer_api_tls: Option<ClientTls>,
    ) -> anyhow::Result<Store> {
        let data_dir = PathBuf::from(&settings.data_dir).join(format!("node-{}", settings.node_id));
        let tls = match &settings.tls {
            None => None,
            Some(files) => Some(
                Tls::load(
                    files.cert.as_ref(),
                    files.key.as_ref(),
                    files.ca.as_ref(),
                    &settings.cluster,
                )
                .context("cannot load the store's TLS files")?,
            ),
        };
        let (handle, inputs) = state_store::node::channel();
        let transport = TcpTransport::new(
            settings.node_id,
            handle.clone(),
            tokio::runtime::Handle::current(),
            tls.clone(),
            Limits::default(),
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
        let node = Node::start(options, handle, inputs, transport.clone())
            .with_context(|| format!("cannot open the state store in {}", data_dir.display()))?;
        Ok(Store {
            node,
            transport,
            raft_listen: settings.this_node().map(|n| n.raft),
            tls,
            settings: settings.clone(),
            peer_api_tls,
        })
    }

    /// This node's store settings.
    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// Adds (or removes) a node; a new node's address is replicated with the change so every
    /// node can reach it.
    pub async fn change_membership(
        &self,
        id: u64,
        change: Membership,
        address: Option<NodeAddress>,
    ) -> Result<(), ProposeError> {
        if let Some(address) = &address {
            self.transport.set_peer(id, &address.raft);
        }
        self.node.change_membership(id, change, address).await
    }

    pub fn status(&self) -> NodeStatus {
        self.node.status()
    }

    /// Proposes `command` and waits until this node's answers reflect it (briefly: the
    /// snapshot follows the machine in microseconds to milliseconds).
    pub async fn write(
        &self,
        control: &Control,
        command: Command,
    ) -> Result<Committed, WriteError> {
        let committed = self.node.propose(command).await.map_err(|e| match e {
            ProposeError::Encode(why) => WriteError::Encode(why),
            other => WriteError::Unavailable(other),
        })?;
        if let Outcome::Ignored(why) = &committed.outcome {
            return Err(WriteError::NotApplied {
                index: committed.index,
                why: why.clone(),
            });
        }
        control
            .wait_applied(committed.index, Duration::from_secs(1))
            .await;
        Ok(committed)
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
        control.apply_machine(machine, now());
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
    let mut status = store.node.watch_status();
    loop {
        let current = status.borrow_and_update().clone();
        control.set_store(
            StoreView {
                node_id: current.id,
                applied: current.applied,
                leader: current.leader,
                term: current.term,
                degraded_since: current.degraded_since,
            },
            now(),
        );
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Bootstraps the deployment until `shutdown`: while the store has none, the leader seeds
/// it from this node's file once every voter can apply it; once it has one, a file that
/// describes another deployment is warned about (once per version).
pub async fn bootstrap(
    store: Arc<Store>,
    control: Arc<Control>,
    document: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut applied = store.node.subscribe();
    let mut status = store.node.watch_status();
    let mut warned_for = 0;
    loop {
        let machine = applied.borrow_and_update().machine.clone();
        match machine.current_version() {
            Some(current) => {
                let version = current.record.version;
                if current.document != document && warned_for != version {
                    warned_for = version;
                    tracing::warn!(
                        version,
                        "this node's configuration file describes another deployment than the store's version {version}; answering from the store's (`portico config diff FILE` shows the difference, `portico config apply FILE` makes the file's the store's)"
                    );
                } else if current.document == document && warned_for != version {
                    warned_for = version;
                }
            }
            None => {
                let leader = {
                    let s = status.borrow_and_update();
                    s.leader == s.id && s.id != 0
                };
                if leader && voters_can_apply(&store).await {
                    seed(&store, &control, &document).await;
                }
            }
        }
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            changed = status.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)), if machine.current_version().is_none() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Proposes this node's file as the first deployment version (only if there is still none:
/// a concurrent seed from another leader term simply loses).
async fn seed(store: &Store, control: &Control, document: &str) {
    let id = store.node.id();
    let change = DeploymentChange {
        document: document.to_owned(),
        expect_version: Some(0),
        who: format!("node {id}"),
        why: format!("seeded from node {id}'s configuration file"),
        rollback_of: None,
        note: None,
    };
    match store.write(control, Command::Deployment(change)).await {
        Ok(committed) => tracing::info!(
            index = committed.index,
            "the store had no deployment: seeded it from this node's file"
        ),
        Err(e) => tracing::debug!(error = %e, "seed not applied (another may have been)"),
    }
}

/// Whether every other voter whose API address is known runs a build that applies
/// deployment changes (an older replica would skip the seed and differ from the rest).
async fn voters_can_apply(store: &Store) -> bool {
    let status = store.status();
    let own = store.node.id();
    for voter in status.voters.iter().filter(|v| **v != own) {
        let Some(api) = store
            .settings
            .nodes
            .iter()
            .find(|n| n.id == *voter)
            .and_then(|n| n.api)
        else {
            tracing::debug!(
                voter,
                "no API address for this voter: assuming it is current"
            );
            continue;
        };
        let mut options = ClientOptions::new(vec![api.to_string()]);
        options.timeout = Duration::from_secs(1);
        options.tls = store.peer_api_tls.clone();
        let Ok(client) = ApiClient::new(options) else {
            return false;
        };
        // `/healthz` is open to all, so this works whatever `admin.reads` says.
        match client.health().await {
            Ok(peer) if peer.wire_version >= DEPLOYMENT_WIRE_VERSION => {}
            Ok(peer) => {
                tracing::warn!(
                    voter,
                    wire_version = peer.wire_version,
                    "a voter runs an older build: the deployment is seeded once every voter is upgraded"
                );
                return false;
            }
            Err(e) => {
                // Once a minute: until every voter answers, the store has no deployment and
                // takes no reports.
                static WARNED_AT: std::sync::atomic::AtomicU64 =
                    std::sync::atomic::AtomicU64::new(0);
                let now = state_store::clock::now().0;
                let last = WARNED_AT.load(std::sync::atomic::Ordering::Relaxed);
                if now.saturating_sub(last) >= 60_000 {
                    WARNED_AT.store(now, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(voter, error = %e, "cannot ask a voter which build it runs (its `api` in [[store.nodes]]): the store is seeded with a deployment once every voter answers; until then answers come from this node's file and reports are refused");
                }
                return false;
            }
        }
    }
    true
}
