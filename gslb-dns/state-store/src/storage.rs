//! raft-rs `Storage` on sled: the log (one key per index, big-endian so sled's order is the
//! log's order), the hard state, the conf state, the latest snapshot and the applied index.
//! Writes are made durable with [`SledStorage::flush`], which the node calls before sending
//! any message that depends on them or acknowledging a proposal.

use std::path::Path;

use prost::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

/// Why the store's disk could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageFault {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt {what} in the store: {why}")]
    Corrupt { what: &'static str, why: String },
}

const HARD_STATE: &[u8] = b"hard_state";
const CONF_STATE: &[u8] = b"conf_state";
const SNAPSHOT: &[u8] = b"snapshot";
const APPLIED: &[u8] = b"applied";

fn decode<M: prost::Message + Default>(
    what: &'static str,
    bytes: &[u8],
) -> Result<M, StorageFault> {
    M::decode(bytes).map_err(|e| StorageFault::Corrupt {
        what,
        why: e.to_string(),
    })
}

fn to_raft(fault: StorageFault) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(fault)))
}

/// The most memory sled's page cache may hold (its default is 1 GiB, which every appended
/// entry fills until it is reached): raft reads the newest entries, which stay cached; older
/// pages are read back from disk.
const SLED_CACHE_BYTES: u64 = 8 << 20;

/// The raft log and state of one node, on sled.
pub struct SledStorage {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    last_index: u64,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage")
            .field("hard_state", &self.hard_state)
            .field("snapshot_index", &self.snapshot.get_metadata().index)
            .field("last_index", &self.last_index)
            .finish()
    }
}

impl SledStorage {
    /// Opens (or creates) the store in `dir`. A new store of a node that is one of
    /// `initial_voters` is bootstrapped with that configuration at index 1, the same on every
    /// initial node; any other new store starts empty and catches up from the leader's snapshot.
    pub fn open(dir: &Path, id: u64, initial_voters: &[u64]) -> Result<SledStorage, StorageFault> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .cache_capacity(SLED_CACHE_BYTES)
            .open()?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        let mut storage = SledStorage {
            hard_state: match meta.get(HARD_STATE)? {
                Some(bytes) => decode("hard state", &bytes)?,
                None => HardState::default(),
            },
            conf_state: match meta.get(CONF_STATE)? {
                Some(bytes) => decode("conf state", &bytes)?,
                None => ConfState::default(),
            },
            snapshot: match meta.get(SNAPSHOT)? {
                Some(bytes) => decode("snapshot", &bytes)?,
                None => Snapshot::default(),
            },
            last_index: 0,
            db,
            log,
            meta,
        };
        storage.last_index = match storage.log.last()? {
            Some((key, _)) => index_of(&key)?,
            None => storage.snapshot.get_metadata().index,
        };
        let fresh =
            storage.hard_state == HardState::default() && storage.conf_state.voters.is_empty();
        if fresh && initial_voters.contains(&id) {
            let mut metadata = SnapshotMetadata {
                index: 1,
                term: 1,
                ..Default::default()
            };
            metadata.set_conf_state(ConfState::from((
                initial_voters.to_vec(),
                Vec::<u64>::new(),
            )));
            let mut snapshot = Snapshot::default();
            snapshot.set_metadata(metadata);
            storage.apply_snapshot(snapshot)?;
            storage.flush()?;
        }
        Ok(storage)
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StorageFault> {
        self.db.flush()?;
        Ok(())
    }

    /// Appends entries, replacing any conflicting suffix of the log.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageFault> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for stale in first.index..=self.last_index.max(first.index) {
            batch.remove(&stale.to_be_bytes());
        }
        for entry in entries {
            batch.insert(&entry.index.to_be_bytes(), entry.encode_to_vec());
        }
        self.log.apply_batch(batch)?;
        self.last_index = entries.last().map_or(self.last_index, |e| e.index);
        Ok(())
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageFault> {
        self.meta.insert(HARD_STATE, hard_state.encode_to_vec())?;
        self.hard_state = hard_state;
        Ok(())
    }

    pub fn set_commit(&mut self, commit: u64) -> Result<(), StorageFault> {
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = commit;
        self.set_hard_state(hard_state)
    }

    pub fn set_conf_state(&mut self, conf_state: ConfState) -> Result<(), StorageFault> {
        self.meta.insert(CONF_STATE, conf_state.encode_to_vec())?;
        self.conf_state = conf_state;
        Ok(())
    }

    pub fn set_applied(&mut self, applied: u64) -> Result<(), StorageFault> {
        self.meta.insert(APPLIED, &applied.to_be_bytes())?;
        Ok(())
    }

    /// Replaces the log with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageFault> {
        let metadata = snapshot.get_metadata().clone();
        self.log.clear()?;
        self.last_index = metadata.index;
        let mut hard_state = self.hard_state.clone();
        hard_state.term = hard_state.term.max(metadata.term);
        hard_state.commit = hard_state.commit.max(metadata.index);
        self.set_hard_state(hard_state)?;
        self.set_conf_state(metadata.get_conf_state().clone())?;
        self.meta.insert(SNAPSHOT, snapshot.encode_to_vec())?;
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the machine at `index` and drops the log up to it.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<(), StorageFault> {
        if index <= self.snapshot.get_metadata().index {
            return Ok(());
        }
        let term = self.term_of(index)?;
        let mut metadata = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        metadata.set_conf_state(self.conf_state.clone());
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(metadata);
        snapshot.data = data;
        self.meta.insert(SNAPSHOT, snapshot.encode_to_vec())?;
        self.snapshot = snapshot;
        let mut batch = sled::Batch::default();
        for key in self.log.range(..=index.to_be_bytes()).keys() {
            batch.remove(key?);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    /// The latest snapshot (its index, and its data for restoring the machine).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    fn entry(&self, index: u64) -> Result<Option<Entry>, StorageFault> {
        match self.log.get(index.to_be_bytes())? {
            Some(bytes) => Ok(Some(decode("log entry", &bytes)?)),
            None => Ok(None),
        }
    }

    fn term_of(&self, index: u64) -> Result<u64, StorageFault> {
        let metadata = self.snapshot.get_metadata();
        if index == metadata.index {
            return Ok(metadata.term);
        }
        self.entry(index)?
            .map(|e| e.term)
            .ok_or(StorageFault::Corrupt {
                what: "log",
                why: format!("entry {index} is missing"),
            })
    }
}

fn index_of(key: &[u8]) -> Result<u64, StorageFault> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StorageFault::Corrupt {
        what: "log key",
        why: format!("{} bytes", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl raft::Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot.get_metadata().index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let max_size = max_size.into();
        let mut entries = Vec::new();
        let mut size = 0u64;
        for item in self.log.range(low.to_be_bytes()..high.to_be_bytes()) {
            let (_, bytes) = item.map_err(|e| to_raft(e.into()))?;
            let entry: Entry = decode("log entry", &bytes).map_err(to_raft)?;
            size += bytes.len() as u64;
            if !entries.is_empty() && max_size.is_some_and(|max| size > max) {
                break;
            }
            entries.push(entry);
        }
        if entries.len() as u64 != high - low && max_size.is_none() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let snapshot_index = self.snapshot.get_metadata().index;
        if index < snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.term_of(index).map_err(to_raft)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot.get_metadata().index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        Ok(self.snapshot.clone())
    }
}
