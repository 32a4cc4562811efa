//! One raft replica, driven step by step with no threads and no clock: `tick`, `step`,
//! `propose`, then `advance` handles the Ready (persist, flush, apply) and returns what to
//! send. The threaded node (`node.rs`) and the in-memory test network both drive it.

use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use raft::prelude::{ConfChangeType, ConfChangeV2, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole};
use topology::wire::views::NodeAddress;
use topology::wire::{Envelope, OLDEST_WIRE_VERSION, WIRE_VERSION};

use crate::machine::{Machine, Outcome, apply};
use crate::storage::{SledStorage, StorageFault};

/// Raft timing and compaction, in ticks and entries.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Applied entries beyond the last snapshot that trigger a new one (and log compaction).
    pub snapshot_threshold: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_threshold: 1000,
        }
    }
}

/// Why a proposal was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("no leader is known right now; retry shortly")]
    NoLeader,
    #[error("the proposal was dropped ({0}); retry")]
    Dropped(String),
    #[error(
        "not applied within the deadline; it may still commit; retry is safe for idempotent commands"
    )]
    Timeout,
    #[error("the store has stopped")]
    Stopped,
    #[error("the command cannot be encoded: {0}")]
    Encode(String),
}

/// A replica failed in a way that needs an operator (a broken disk or a corrupt store).
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Storage(#[from] StorageFault),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("snapshot data: {0}")]
    Snapshot(String),
    /// A committed entry this build cannot read (written by a newer Portico, or damaged):
    /// applying anything after it would make this replica differ from the others, so it
    /// stops applying and keeps answering from what it has.
    #[error("entry {index} cannot be applied by this build: {why}; upgrade this node")]
    Unreadable { index: u64, why: String },
}

/// An entry this replica applied.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedEntry {
    pub index: u64,
    /// The proposal id, to complete the proposer's wait.
    pub id: Option<String>,
    pub outcome: Outcome,
}

/// What one `advance` produced.
#[derive(Debug, Default)]
pub struct Advanced {
    pub messages: Vec<Message>,
    pub applied: Vec<AppliedEntry>,
    /// The machine changed (entries or a snapshot were applied).
    pub changed: bool,
    /// A membership change was applied.
    pub conf_changed: bool,
}

/// A raft replica with its sled storage and its state machine.
pub struct Replica {
    raw: RawNode<SledStorage>,
    machine: Machine,
    settings: RaftSettings,
    snapshots_taken: u64,
    /// This node was removed from the cluster: it stays silent (a removed leader would
    /// otherwise keep the others from electing a new one).
    removed: bool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.raw.raft.id)
            .finish_non_exhaustive()
    }
}

/// Drops raft-rs's slog records into `tracing` at debug level.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::warn!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning | slog::Level::Info => {
                tracing::debug!(target: "raft", "{}", record.msg())
            }
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

impl Replica {
    /// Opens the replica `id` in `dir`; see [`SledStorage::open`] for bootstrapping.
    pub fn open(
        id: u64,
        initial_voters: &[u64],
        dir: &Path,
        settings: RaftSettings,
    ) -> Result<Replica, ReplicaError> {
        let storage = SledStorage::open(dir, id, initial_voters)?;
        let machine = restore(storage.latest_snapshot())?;
        let config = raft::Config {
            id,
            election_tick: settings.election_ticks,
            heartbeat_tick: settings.heartbeat_ticks,
            applied: machine
                .applied
                .max(storage.latest_snapshot().get_metadata().index),
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        config.validate()?;
        let logger = slog::Logger::root(TracingDrain, slog::o!("raft_id" => id));
        let raw = RawNode::new(&config, storage, &logger)?;
        Ok(Replica {
            raw,
            machine,
            settings,
            snapshots_taken: 0,
            removed: false,
        })
    }

    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Starts an election now (a cluster of one need not wait for a timeout).
    pub fn campaign(&mut self) {
        if let Err(e) = self.raw.campaign() {
            tracing::debug!(error = %e, "campaign refused");
        }
    }

    /// The leader this replica knows (0: none).
    pub fn leader(&self) -> u64 {
        self.raw.raft.leader_id
    }

    pub fn tick(&mut self) {
        if !self.removed {
            self.raw.tick();
        }
    }

    /// True once this node applied its own removal from the cluster.
    pub fn removed(&self) -> bool {
        self.removed
    }

    /// Feeds a message from a peer (a broken one is dropped: raft tolerates loss).
    pub fn step(&mut self, message: Message) {
        if self.removed {
            return;
        }
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(error = %e, "raft message not stepped");
        }
    }

    /// Tells raft whether a snapshot message to `to` reached it. A leader pauses replication
    /// to a peer while a snapshot is in flight; a lost snapshot must be reported or the peer
    /// stays paused.
    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(to, status);
    }

    /// Tells raft that `to` could not be reached (its progress drops back to probing).
    pub fn report_unreachable(&mut self, to: u64) {
        self.raw.report_unreachable(to);
    }

    /// Proposes a command; on a follower raft forwards it to the leader.
    pub fn propose(&mut self, envelope: &Envelope) -> Result<(), ProposeError> {
        if self.removed {
            return Err(ProposeError::Dropped(
                "this node was removed from the cluster".into(),
            ));
        }
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return Err(ProposeError::NoLeader);
        }
        let data = serde_json::to_vec(envelope).map_err(|e| ProposeError::Encode(e.to_string()))?;
        self.raw
            .propose(Vec::new(), data)
            .map_err(|e| ProposeError::Dropped(e.to_string()))
    }

    /// Proposes a membership change.
    pub fn propose_conf_change(&mut self, change: ConfChangeV2) -> Result<(), ProposeError> {
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return Err(ProposeError::NoLeader);
        }
        self.raw
            .propose_conf_change(Vec::new(), change)
            .map_err(|e| ProposeError::Dropped(e.to_string()))
    }

    /// Handles the Ready: persists entries and state, flushes, applies committed entries,
    /// compacts, and returns the messages to send. Messages that depend on the persisted state
    /// are only returned after the flush.
    pub fn advance(&mut self) -> Result<Advanced, ReplicaError> {
        let mut out = Advanced::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut ready = self.raw.ready();
        // A leader may send appends before persisting (raft thesis 10.2.1).
        out.messages.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.machine = restore(&snapshot)?;
            self.raw.mut_store().apply_snapshot(snapshot)?;
            out.changed = true;
        }
        self.apply_entries(ready.take_committed_entries(), &mut out)?;
        self.raw.mut_store().append(ready.entries())?;
        if let Some(hard_state) = ready.hs() {
            self.raw.mut_store().set_hard_state(hard_state.clone())?;
        }
        self.raw.mut_store().flush()?;
        out.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit)?;
        }
        out.messages.extend(light.take_messages());
        self.apply_entries(light.take_committed_entries(), &mut out)?;
        self.raw.advance_apply();
        if self.removed {
            out.messages.clear();
        }
        if out.changed {
            self.raw.mut_store().set_applied(self.machine.applied)?;
            // A new node can only restore a snapshot whose configuration names it, so a
            // membership change always gets a fresh snapshot.
            self.maybe_compact(out.conf_changed)?;
        }
        Ok(out)
    }

    fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
        out: &mut Advanced,
    ) -> Result<(), ReplicaError> {
        for entry in entries {
            out.changed = true;
            self.machine.applied = self.machine.applied.max(entry.index);
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {}
                EntryType::EntryNormal => out.applied.push(self.apply_normal(&entry)?),
                EntryType::EntryConfChangeV2 => {
                    let change = ConfChangeV2::decode(&entry.data[..])
                        .map_err(|e| ReplicaError::Snapshot(e.to_string()))?;
                    let conf_state = self.raw.apply_conf_change(&change)?;
                    self.raw.mut_store().set_conf_state(conf_state)?;
                    self.record_addresses(&change);
                    out.conf_changed = true;
                }
                EntryType::EntryConfChange => {
                    let change = raft::prelude::ConfChange::decode(&entry.data[..])
                        .map_err(|e| ReplicaError::Snapshot(e.to_string()))?;
                    let conf_state = self.raw.apply_conf_change(&change)?;
                    self.raw.mut_store().set_conf_state(conf_state)?;
                    out.conf_changed = true;
                }
            }
        }
        Ok(())
    }

    /// Keeps the addresses a membership change carries, so every node can reach new peers.
    fn record_addresses(&mut self, change: &ConfChangeV2) {
        let address: Option<NodeAddress> = serde_json::from_slice(&change.context).ok();
        for single in &change.changes {
            match single.get_change_type() {
                ConfChangeType::RemoveNode => {
                    Arc::make_mut(&mut self.machine.nodes).remove(&single.node_id);
                    if single.node_id == self.raw.raft.id {
                        tracing::warn!(
                            "this node was removed from the store cluster; it goes silent"
                        );
                        self.removed = true;
                    }
                }
                _ => {
                    if let Some(address) = &address {
                        Arc::make_mut(&mut self.machine.nodes)
                            .insert(single.node_id, address.clone());
                    }
                }
            }
        }
    }

    fn apply_normal(&mut self, entry: &Entry) -> Result<AppliedEntry, ReplicaError> {
        let unreadable = |why: String| ReplicaError::Unreadable {
            index: entry.index,
            why,
        };
        let envelope = serde_json::from_slice::<Envelope>(&entry.data)
            .map_err(|e| unreadable(format!("undecodable command: {e}")))?;
        if !(OLDEST_WIRE_VERSION..=WIRE_VERSION).contains(&envelope.version) {
            return Err(unreadable(format!(
                "wire version {} (this build reads {OLDEST_WIRE_VERSION} to {WIRE_VERSION})",
                envelope.version
            )));
        }
        Ok(AppliedEntry {
            index: entry.index,
            outcome: apply(&mut self.machine, entry.index, &envelope),
            id: Some(envelope.id),
        })
    }

    fn maybe_compact(&mut self, force: bool) -> Result<(), ReplicaError> {
        let snapshot_index = self.raw.store().latest_snapshot().get_metadata().index;
        if !force && self.machine.applied < snapshot_index + self.settings.snapshot_threshold {
            return Ok(());
        }
        let data =
            serde_json::to_vec(&self.machine).map_err(|e| ReplicaError::Snapshot(e.to_string()))?;
        self.raw.mut_store().compact(self.machine.applied, data)?;
        self.raw.mut_store().flush()?;
        self.snapshots_taken += 1;
        Ok(())
    }

    /// Raft's view: role, leader, term, commit and applied index.
    pub fn status(&self) -> ReplicaStatus {
        let raft = &self.raw.raft;
        ReplicaStatus {
            id: raft.id,
            role: raft.state,
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.machine.applied,
            voters: self.raw.store().conf_state().voters.clone(),
            learners: self.raw.store().conf_state().learners.clone(),
            snapshot_index: self.raw.store().latest_snapshot().get_metadata().index,
            snapshots_taken: self.snapshots_taken,
        }
    }
}

/// A replica's raft status.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    pub id: u64,
    pub role: StateRole,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub snapshot_index: u64,
    pub snapshots_taken: u64,
}

/// The machine a snapshot holds (an empty snapshot is the initial machine).
fn restore(snapshot: &Snapshot) -> Result<Machine, ReplicaError> {
    let index = snapshot.get_metadata().index;
    if snapshot.data.is_empty() {
        let mut machine = Machine::default();
        machine.applied = index;
        return Ok(machine);
    }
    let mut machine: Machine = serde_json::from_slice(&snapshot.data)
        .map_err(|e| ReplicaError::Snapshot(e.to_string()))?;
    machine.applied = index;
    machine
        .rehydrate()
        .map_err(|e| ReplicaError::Snapshot(format!("the deployment it holds: {e}")))?;
    Ok(machine)
}
