//! The running store node: one thread owns the [`Replica`] and loops over inputs (peer
//! messages, proposals, membership changes), logical ticks and the Ready. Proposals wait
//! until this node has applied them (on a follower raft forwards them to the leader), so an
//! acknowledged write is committed. Every applied change is published on a watch channel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::StateRole;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use topology::Timestamp;
use topology::wire::views::{NodeAddress, NodeStatus};
use topology::wire::{Command, Envelope, WIRE_VERSION};

use crate::clock::now;
use crate::machine::{Machine, Outcome};
use crate::replica::{ProposeError, RaftSettings, Replica, ReplicaError};

/// Where the node's messages go (the TCP transport, or a test network).
pub trait Outbox: Send + Sync {
    fn send(&self, message: Message);
}

/// How the node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub id: u64,
    /// The voters of a new cluster (the same list on every initial node).
    pub initial_voters: Vec<u64>,
    pub data_dir: PathBuf,
    pub tick: Duration,
    pub raft: RaftSettings,
    /// How long a proposal may take to apply before the caller is told to retry.
    pub propose_timeout: Duration,
}

/// A committed and applied proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub outcome: Outcome,
}

/// The applied machine, as published after every change.
#[derive(Debug, Clone)]
pub struct Published {
    pub machine: Arc<Machine>,
}

enum Input {
    Raft(Message),
    Propose {
        envelope: Envelope,
        reply: oneshot::Sender<Result<Committed, ProposeError>>,
    },
    ConfChange {
        change: ConfChangeV2,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    SnapshotReport {
        to: u64,
        delivered: bool,
    },
    Unreachable(u64),
    Stop,
}

/// Inputs queued for the node, at most: a flood of peer messages is dropped (raft
/// retransmits) instead of growing without bound.
pub const INPUT_QUEUE: usize = 8192;

/// Inputs handled between two looks at the clock: a flood cannot starve the ticks.
const INPUTS_PER_ROUND: usize = 1024;

/// A clonable way into the node, for the transport.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    inputs: mpsc::SyncSender<Input>,
}

impl NodeHandle {
    /// Feeds a message received from a peer; false when the node's queue is full and the
    /// message was dropped.
    pub fn deliver(&self, message: Message) -> bool {
        self.inputs.try_send(Input::Raft(message)).is_ok()
    }
    /// Reports whether a snapshot message reached its peer.
    pub fn report_snapshot(&self, to: u64, delivered: bool) {
        let _ = self
            .inputs
            .try_send(Input::SnapshotReport { to, delivered });
    }
    /// Reports a peer that could not be reached.
    pub fn report_unreachable(&self, to: u64) {
        let _ = self.inputs.try_send(Input::Unreachable(to));
    }

    fn submit(&self, input: Input) -> Result<(), ProposeError> {
        self.inputs.try_send(input).map_err(|e| match e {
            TrySendError::Full(_) => ProposeError::Dropped("the store is busy".into()),
            TrySendError::Disconnected(_) => ProposeError::Stopped,
        })
    }
}

/// A running node.
pub struct Node {
    id: u64,
    handle: NodeHandle,
    published: watch::Receiver<Published>,
    status: watch::Receiver<NodeStatus>,
    counter: AtomicU64,
    propose_timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The channel into a node, made before the node so a transport can hold its handle.
pub fn channel() -> (NodeHandle, NodeInputs) {
    let (inputs, receiver) = mpsc::sync_channel(INPUT_QUEUE);
    (NodeHandle { inputs }, NodeInputs(receiver))
}

/// The receiving side of [`channel`], consumed by [`Node::start`].
pub struct NodeInputs(mpsc::Receiver<Input>);

impl std::fmt::Debug for NodeInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeInputs")
    }
}

impl Node {
    /// Opens the replica and starts its thread.
    pub fn start(
        options: NodeOptions,
        handle: NodeHandle,
        inputs: NodeInputs,
        outbox: Arc<dyn Outbox>,
    ) -> Result<Node, ReplicaError> {
        std::fs::create_dir_all(&options.data_dir).map_err(|e| {
            ReplicaError::Storage(crate::storage::StorageFault::Corrupt {
                what: "data directory",
                why: format!("{}: {e}", options.data_dir.display()),
            })
        })?;
        let mut replica = Replica::open(
            options.id,
            &options.initial_voters,
            &options.data_dir,
            options.raft.clone(),
        )?;
        let status = replica.status();
        if status.voters == [options.id] {
            // A cluster of one elects itself now rather than after an election timeout.
            replica.campaign();
        }
        let (publisher, published) = watch::channel(Published {
            machine: Arc::new(replica.machine().clone()),
        });
        let (status_publisher, status) = watch::channel(NodeStatus {
            id: options.id,
            wire_version: WIRE_VERSION,
            ..NodeStatus::default()
        });
        let looped = Loop {
            replica,
            inputs: inputs.0,
            outbox,
            publisher,
            status: status_publisher,
            waiters: HashMap::new(),
            tick: options.tick,
            election: options.tick * options.raft.election_ticks as u32,
            no_leader_since: None,
            last_contact: (Instant::now(), now()),
            proposals: 0,
            proposals_failed: 0,
            latency_sum_us: 0,
            latency_count: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("store-{}", options.id))
            .spawn(move || looped.run())
            .map_err(|e| ReplicaError::Snapshot(format!("cannot start the store thread: {e}")))?;
        Ok(Node {
            id: options.id,
            handle,
            published,
            status,
            counter: AtomicU64::new(0),
            propose_timeout: options.propose_timeout,
            thread: Some(thread),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Follows the applied machine.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.published.clone()
    }

    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// Follows the node's status: woken when its role, leader, term, membership,
    /// degradation or failure changes (not for every applied entry).
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Proposes `command` and waits until this node has applied it.
    pub async fn propose(&self, command: Command) -> Result<Committed, ProposeError> {
        let envelope = Envelope {
            version: command.wire_version(),
            id: format!(
                "{}-{}-{}",
                self.id,
                std::process::id(),
                self.counter.fetch_add(1, Ordering::Relaxed)
            ),
            proposed_at: now(),
            command,
        };
        let (reply, wait) = oneshot::channel();
        self.handle.submit(Input::Propose { envelope, reply })?;
        match tokio::time::timeout(self.propose_timeout, wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Err(_) => Err(ProposeError::Timeout),
        }
    }

    /// Adds a voter or a learner, or removes a node; waits until the change is proposed
    /// (it takes effect when applied).
    pub async fn change_membership(
        &self,
        id: u64,
        change: Membership,
        address: Option<NodeAddress>,
    ) -> Result<(), ProposeError> {
        let mut single = ConfChangeSingle {
            node_id: id,
            ..Default::default()
        };
        single.set_change_type(match change {
            Membership::AddVoter => ConfChangeType::AddNode,
            Membership::AddLearner => ConfChangeType::AddLearnerNode,
            Membership::Remove => ConfChangeType::RemoveNode,
        });
        let mut conf_change = ConfChangeV2::default();
        conf_change.set_changes(vec![single]);
        if let Some(address) = address {
            conf_change.context =
                serde_json::to_vec(&address).map_err(|e| ProposeError::Encode(e.to_string()))?;
        }
        let (reply, wait) = oneshot::channel();
        self.handle.submit(Input::ConfChange {
            change: conf_change,
            reply,
        })?;
        match tokio::time::timeout(self.propose_timeout, wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Err(_) => Err(ProposeError::Timeout),
        }
    }

    /// Stops the node's thread (the store stays on disk).
    pub fn stop(&mut self) {
        let _ = self.handle.inputs.send(Input::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Membership {
    AddVoter,
    AddLearner,
    Remove,
}

struct Waiter {
    reply: oneshot::Sender<Result<Committed, ProposeError>>,
    since: Instant,
}

struct Loop {
    replica: Replica,
    inputs: mpsc::Receiver<Input>,
    outbox: Arc<dyn Outbox>,
    publisher: watch::Sender<Published>,
    status: watch::Sender<NodeStatus>,
    waiters: HashMap<String, Waiter>,
    tick: Duration,
    election: Duration,
    no_leader_since: Option<(Instant, Timestamp)>,
    /// The last moment this node knew the cluster worked: it was the leader (check_quorum
    /// makes a leader without a quorum step down), or a message came from the leader.
    /// Degradation dates from here, so staleness freezes at the moment quorum was lost,
    /// not at the moment that was noticed (an election timeout later).
    last_contact: (Instant, Timestamp),
    proposals: u64,
    proposals_failed: u64,
    latency_sum_us: u64,
    latency_count: u64,
}

impl Loop {
    fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take what else is queued, so one Ready (and one flush) covers it all; at most
            // a round's worth, so the clock is looked at even under a flood.
            for _ in 0..INPUTS_PER_ROUND {
                let Ok(input) = self.inputs.try_recv() else {
                    break;
                };
                if matches!(input, Input::Stop) {
                    return;
                }
                self.handle(input);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.replica.tick();
                next_tick += self.tick;
                if next_tick < now {
                    next_tick = now + self.tick;
                }
                self.expire_waiters(now);
            }
            if let Err(e) = self.advance() {
                tracing::error!(error = %e, "the store failed; this node stops applying");
                let failed = e.to_string();
                self.status
                    .send_modify(|status| status.failed = Some(failed));
                return;
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Raft(message) => {
                let from_leader = message.from == self.replica.leader();
                self.replica.step(message);
                if from_leader {
                    self.last_contact = (Instant::now(), now());
                }
            }
            Input::Propose { envelope, reply } => {
                self.proposals += 1;
                let id = envelope.id.clone();
                match self.replica.propose(&envelope) {
                    Ok(()) => {
                        self.waiters.insert(
                            id,
                            Waiter {
                                reply,
                                since: Instant::now(),
                            },
                        );
                    }
                    Err(e) => {
                        self.proposals_failed += 1;
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Input::ConfChange { change, reply } => {
                let _ = reply.send(self.replica.propose_conf_change(change));
            }
            Input::SnapshotReport { to, delivered } => self.replica.report_snapshot(to, delivered),
            Input::Unreachable(to) => self.replica.report_unreachable(to),
            Input::Stop => {}
        }
    }

    fn expire_waiters(&mut self, now: Instant) {
        // Raft drops proposals silently on a leader change; the caller's own timeout
        // answers them. Here only clean up what nobody waits for any more.
        self.waiters.retain(|_, waiter| {
            !waiter.reply.is_closed() && now.duration_since(waiter.since) < Duration::from_secs(60)
        });
    }

    fn advance(&mut self) -> Result<(), ReplicaError> {
        let advanced = self.replica.advance()?;
        for message in advanced.messages {
            self.outbox.send(message);
        }
        for entry in advanced.applied {
            let Some(waiter) = entry.id.and_then(|id| self.waiters.remove(&id)) else {
                continue;
            };
            self.latency_sum_us += waiter.since.elapsed().as_micros() as u64;
            self.latency_count += 1;
            let _ = waiter.reply.send(Ok(Committed {
                index: entry.index,
                outcome: entry.outcome,
            }));
        }
        if advanced.changed {
            self.publisher.send_replace(Published {
                machine: Arc::new(self.replica.machine().clone()),
            });
        }
        self.update_status();
        Ok(())
    }

    fn update_status(&mut self) {
        let raft = self.replica.status();
        let leaderless = raft.leader == raft::INVALID_ID
            || matches!(raft.role, StateRole::Candidate | StateRole::PreCandidate);
        let clustered = raft.voters.len() > 1 || !raft.voters.contains(&raft.id);
        if raft.role == StateRole::Leader {
            self.last_contact = (Instant::now(), now());
        }
        if leaderless && clustered {
            self.no_leader_since.get_or_insert(self.last_contact);
        } else {
            self.no_leader_since = None;
        }
        let degraded = self
            .no_leader_since
            .filter(|(since, _)| since.elapsed() > self.election);
        let status = NodeStatus {
            id: raft.id,
            role: if self.replica.removed() {
                "removed".to_owned()
            } else {
                format!("{:?}", raft.role).to_lowercase()
            },
            leader: raft.leader,
            term: raft.term,
            commit: raft.commit,
            applied: raft.applied,
            voters: raft.voters,
            learners: raft.learners,
            degraded: degraded.is_some(),
            degraded_since: degraded.map(|(_, at)| at),
            proposals: self.proposals,
            proposals_failed: self.proposals_failed,
            snapshots_taken: raft.snapshots_taken,
            snapshot_index: raft.snapshot_index,
            apply_latency_us: self
                .latency_sum_us
                .checked_div(self.latency_count)
                .unwrap_or(0),
            failed: None,
            wire_version: WIRE_VERSION,
        };
        // Everyone may read the latest numbers; followers wake only when something they
        // act on changed.
        self.status.send_if_modified(|current| {
            let wake = current.role != status.role
                || current.leader != status.leader
                || current.term != status.term
                || current.voters != status.voters
                || current.learners != status.learners
                || current.degraded_since != status.degraded_since;
            *current = status;
            wake
        });
        if self.latency_count > 1000 {
            self.latency_sum_us /= 2;
            self.latency_count /= 2;
        }
    }
}
