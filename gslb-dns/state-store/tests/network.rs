//! The store on an in-memory network (raft-rs style): replicas on real sled directories,
//! messages routed by the test with drops, cut links, isolation, crashes and restarts from
//! the same directory, under randomized fault schedules from printed seeds.
//!
//! The writes are RTT samples with deployment changes mixed in (the first node to find no
//! deployment proposes a seed, as gslb-dns does; later changes add and remove a site), so
//! replicas apply reports against a deployment that changes under them.
//!
//! Properties checked for every seed: no acknowledged write is lost (every applied sample
//! and every applied deployment version is in the final machine), all replicas converge to
//! the same machine, enough writes were acknowledged for the run to mean something, and a
//! leader exists within two election timeouts after healing. `STORE_SEEDS=N` runs more
//! seeds; `STORE_SEED=S` replays one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use raft::StateRole;
use raft::prelude::Message;
use state_store::{Outcome, RaftSettings, Replica};
use topology::Timestamp;
use topology::wire::config::DeploymentChange;
use topology::wire::{Command, Envelope, RttReport, RttSample, WIRE_VERSION};

/// A small deterministic generator (xorshift64*), so a seed replays a schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const ELECTION_TICKS: usize = 10;
/// raft-rs draws each election timeout from [ELECTION_TICKS, 2 * ELECTION_TICKS): the longest
/// a single election timeout can be.
const MAX_ELECTION_TIMEOUT: usize = 2 * ELECTION_TICKS;

struct Network {
    ids: Vec<u64>,
    replicas: BTreeMap<u64, Option<Replica>>,
    dirs: BTreeMap<u64, PathBuf>,
    /// The two deployments changes alternate between (the default, and it with `lon`).
    documents: [String; 2],
    queue: VecDeque<Message>,
    cut: BTreeSet<(u64, u64)>,
    drop_percent: u64,
    /// Proposal id -> proposing node, until applied there.
    pending: BTreeMap<String, u64>,
    /// Acknowledged writes: proposal id -> the prefix it wrote.
    acknowledged: BTreeMap<String, ipnet::IpNet>,
    /// Proposal id -> the document of a deployment change, until applied.
    proposed_documents: BTreeMap<String, String>,
    /// Applied deployment changes: (log index, document).
    acknowledged_versions: Vec<(u64, String)>,
    written: u64,
    settings: RaftSettings,
}

impl Network {
    fn new(seed: u64, size: u64, settings: RaftSettings) -> Network {
        let ids: Vec<u64> = (1..=size).collect();
        let root =
            std::env::temp_dir().join(format!("portico-store-net-{}-{seed}", std::process::id()));
        let shm = PathBuf::from("/dev/shm");
        let root = if shm.is_dir() {
            shm.join(root.file_name().unwrap())
        } else {
            root
        };
        let _ = std::fs::remove_dir_all(&root);
        let with_lon = format!(
            "{}\n[[site]]\nname = \"lon\"\nclient_networks = [\"127.4.0.0/16\"]\n",
            topology::DEFAULT_CONFIG.replace(
                "{ site = \"sin\", node = \"sin-2\", address = \"127.0.30.2\" },",
                "{ site = \"sin\", node = \"sin-2\", address = \"127.0.30.2\" },\n    { site = \"lon\", node = \"lon-1\", address = \"127.0.40.1\" },",
            )
        );
        let documents = [
            topology::deployment_document(topology::DEFAULT_CONFIG).unwrap(),
            topology::deployment_document(&with_lon).unwrap(),
        ];
        let mut network = Network {
            replicas: BTreeMap::new(),
            dirs: ids
                .iter()
                .map(|id| (*id, root.join(format!("node-{id}"))))
                .collect(),
            ids,
            documents,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            drop_percent: 0,
            pending: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            proposed_documents: BTreeMap::new(),
            acknowledged_versions: Vec::new(),
            written: 0,
            settings,
        };
        for id in network.ids.clone() {
            network.start(id);
        }
        network
    }

    fn start(&mut self, id: u64) {
        // sled releases its file lock from a background thread shortly after a drop.
        let mut attempts = 0;
        let replica = loop {
            match Replica::open(id, &self.ids, &self.dirs[&id], self.settings.clone()) {
                Ok(replica) => break replica,
                Err(e) if attempts < 100 && e.to_string().contains("lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("replica {id} failed to open: {e}"),
            }
        };
        self.replicas.insert(id, Some(replica));
    }

    fn crash(&mut self, id: u64) {
        self.replicas.insert(id, None);
        self.pending.retain(|_, node| *node != id);
    }

    fn live(&self) -> Vec<u64> {
        self.replicas
            .iter()
            .filter(|(_, r)| r.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn advance(&mut self, id: u64, rng: &mut Rng) {
        let Some(Some(replica)) = self.replicas.get_mut(&id) else {
            return;
        };
        let advanced = replica
            .advance()
            .unwrap_or_else(|e| panic!("replica {id}: {e}"));
        for entry in advanced.applied {
            let Some(request) = entry.id else { continue };
            if self.pending.get(&request) != Some(&id) {
                continue;
            }
            self.pending.remove(&request);
            // Refused writes (a sample before the seed, a change against another version)
            // were answered as refused: nothing to keep.
            if entry.outcome != Outcome::Applied {
                self.proposed_documents.remove(&request);
                continue;
            }
            match self.proposed_documents.remove(&request) {
                Some(document) => self.acknowledged_versions.push((entry.index, document)),
                None => {
                    let prefix = prefix_of(&request);
                    self.acknowledged.insert(request, prefix);
                }
            }
        }
        for message in advanced.messages {
            if self.cut.contains(&(message.from, message.to)) || rng.chance(self.drop_percent) {
                self.lost(&message);
                continue;
            }
            self.queue.push_back(message);
        }
    }

    fn tick(&mut self, rng: &mut Rng) {
        for id in self.live() {
            if let Some(Some(replica)) = self.replicas.get_mut(&id) {
                replica.tick();
            }
            self.advance(id, rng);
        }
        self.deliver(rng);
    }

    /// Delivers queued messages (and what they cause) until the network is quiet.
    fn deliver(&mut self, rng: &mut Rng) {
        let mut budget = 100_000;
        while let Some(message) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "message storm");
            let to = message.to;
            if let Some(Some(replica)) = self.replicas.get_mut(&to) {
                let snapshot_from = is_snapshot(&message).then_some(message.from);
                replica.step(message);
                if let Some(from) = snapshot_from
                    && let Some(Some(sender)) = self.replicas.get_mut(&from)
                {
                    sender.report_snapshot(to, true);
                }
                self.advance(to, rng);
            } else {
                self.lost(&message);
            }
        }
    }

    /// A message that never arrives; a lost snapshot is reported to its sender, as the
    /// transport does.
    fn lost(&mut self, message: &Message) {
        if is_snapshot(message)
            && let Some(Some(sender)) = self.replicas.get_mut(&message.from)
        {
            sender.report_snapshot(message.to, false);
        }
    }

    /// Proposes a write at `at`: a seed if that node has no deployment yet, sometimes a
    /// deployment change against the version it sees, else an RTT sample.
    fn propose(&mut self, at: u64, rng: &mut Rng) {
        let change = rng.chance(8);
        self.propose_write(at, change, rng);
    }

    fn propose_sample(&mut self, at: u64, rng: &mut Rng) {
        self.propose_write(at, false, rng);
    }

    fn propose_change(&mut self, at: u64, rng: &mut Rng) {
        self.propose_write(at, true, rng);
    }

    fn propose_write(&mut self, at: u64, change: bool, rng: &mut Rng) {
        let Some(Some(replica)) = self.replicas.get_mut(&at) else {
            return;
        };
        self.written += 1;
        let id = format!("w{}", self.written);
        let version = replica.machine().version();
        let (command, document) = if version == 0 || change {
            // The next document in turn (a seed is the default deployment).
            let document = self.documents[(version % 2) as usize].clone();
            let change = DeploymentChange {
                document: document.clone(),
                expect_version: Some(version),
                who: format!("node {at}"),
                why: "network test".into(),
                rollback_of: None,
                note: None,
            };
            (Command::Deployment(change), Some(document))
        } else {
            let sample = Command::RttSamples(RttReport {
                site: "fra".into(),
                samples: vec![RttSample {
                    prefix: prefix_of(&id),
                    rtt_us: self.written as u32,
                    samples: 1,
                }],
            });
            (sample, None)
        };
        let envelope = Envelope {
            version: WIRE_VERSION,
            id: id.clone(),
            proposed_at: Timestamp(self.written * 1000),
            command,
        };
        if replica.propose(&envelope).is_ok() {
            self.pending.insert(id.clone(), at);
            if let Some(document) = document {
                self.proposed_documents.insert(id, document);
            }
        }
        self.advance(at, rng);
    }

    /// Ticks until none of `writes` is pending any more (a few election timeouts at most).
    fn settle(&mut self, seed: u64, writes: &[String], rng: &mut Rng) {
        let mut waited = 0;
        while writes.iter().any(|id| self.pending.contains_key(id)) {
            self.tick(rng);
            waited += 1;
            assert!(
                waited <= 4 * MAX_ELECTION_TIMEOUT,
                "seed {seed}: writes after healing not acknowledged: {writes:?}"
            );
        }
    }

    fn leader(&self) -> Option<u64> {
        let live = self.live();
        let leaders: Vec<u64> = live
            .iter()
            .filter(|id| {
                self.replicas[id]
                    .as_ref()
                    .is_some_and(|r| r.status().role == StateRole::Leader)
            })
            .copied()
            .collect();
        match leaders.as_slice() {
            [leader]
                if live
                    .iter()
                    .all(|id| self.replicas[id].as_ref().unwrap().status().leader == *leader) =>
            {
                Some(*leader)
            }
            _ => None,
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.replicas.clear();
        if let Some(dir) = self.dirs.values().next().and_then(|d| d.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn is_snapshot(message: &Message) -> bool {
    message.get_msg_type() == raft::prelude::MessageType::MsgSnapshot
}

/// A unique /24 per write, from its id.
fn prefix_of(id: &str) -> ipnet::IpNet {
    let n: u32 = id[1..].parse().expect("w<counter>");
    ipnet::IpNet::new(std::net::IpAddr::V4((0x0A00_0000 + (n << 8)).into()), 24).unwrap()
}

fn run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let size = if rng.chance(50) { 3 } else { 5 };
    let settings = RaftSettings {
        election_ticks: ELECTION_TICKS,
        heartbeat_ticks: 2,
        snapshot_threshold: 20 + rng.below(40),
    };
    let mut net = Network::new(seed, size, settings);
    for _round in 0..250 {
        if rng.chance(8) {
            let id = net.ids[rng.below(size) as usize];
            match rng.below(6) {
                0 if net.live().len() as u64 > size / 2 + 1 || rng.chance(30) => net.crash(id),
                1 => {
                    if net.replicas[&id].is_none() {
                        net.start(id);
                    }
                }
                2 => {
                    for other in net.ids.clone() {
                        net.cut.insert((id, other));
                        net.cut.insert((other, id));
                    }
                }
                3 => {
                    let other = net.ids[rng.below(size) as usize];
                    net.cut.insert((id, other));
                }
                4 => net.drop_percent = rng.below(30),
                _ => {
                    net.cut.clear();
                    net.drop_percent = 0;
                }
            }
        }
        net.tick(&mut rng);
        for _ in 0..rng.below(3) {
            let live = net.live();
            if !live.is_empty() {
                let at = live[rng.below(live.len() as u64) as usize];
                net.propose(at, &mut rng);
            }
        }
        net.deliver(&mut rng);
    }
    // Heal: every link up, every node running.
    net.cut.clear();
    net.drop_percent = 0;
    for id in net.ids.clone() {
        if net.replicas[&id].is_none() {
            net.start(id);
        }
    }
    let mut ticks = 0;
    while net.leader().is_none() {
        net.tick(&mut rng);
        ticks += 1;
        if ticks > 2 * MAX_ELECTION_TIMEOUT {
            for id in net.live() {
                let status = net.replicas[&id].as_ref().unwrap().status();
                eprintln!(
                    "  node {id}: {:?} leader {} term {} commit {} applied {}",
                    status.role, status.leader, status.term, status.commit, status.applied
                );
            }
        }
        assert!(
            ticks <= 2 * MAX_ELECTION_TIMEOUT,
            "seed {seed}: no leader within 2 election timeouts after healing"
        );
    }
    eprintln!("  seed {seed}: leader {ticks} ticks after healing");
    // A healed cluster takes writes: samples and a deployment change at the leader are all
    // acknowledged within a few election timeouts.
    // A healed cluster takes writes: a deployment change (after the seed, if none got
    // through), then samples at the leader, all acknowledged within a few election timeouts.
    let leader = net.leader().expect("a leader");
    let versions = net.acknowledged_versions.len();
    for _attempt in 0..8 {
        // Refused when the leader had not yet applied the newest version: as an operator
        // would, look again and retry.
        net.propose_change(leader, &mut rng);
        net.settle(seed, &[format!("w{}", net.written)], &mut rng);
        let total = net.acknowledged_versions.len();
        if total > versions && total >= MIN_ACKNOWLEDGED_VERSIONS {
            break;
        }
    }
    assert!(
        net.acknowledged_versions.len() > versions,
        "seed {seed}: no deployment change applies after healing"
    );
    let first_after = net.written + 1;
    for _ in 0..AFTER_HEALING_SAMPLES {
        net.propose_sample(leader, &mut rng);
    }
    let after: Vec<String> = (first_after..=net.written)
        .map(|n| format!("w{n}"))
        .collect();
    net.settle(seed, &after, &mut rng);
    let applied_samples = after
        .iter()
        .filter(|id| net.acknowledged.contains_key(*id))
        .count();
    assert_eq!(
        applied_samples, AFTER_HEALING_SAMPLES,
        "seed {seed}: every sample after healing applies"
    );
    // Let every replica catch up, then compare.
    for _ in 0..4 * ELECTION_TICKS {
        net.tick(&mut rng);
    }
    let machines: Vec<(u64, state_store::Machine)> = net
        .ids
        .iter()
        .map(|id| (*id, net.replicas[id].as_ref().unwrap().machine().clone()))
        .collect();
    let (first_id, first) = &machines[0];
    for (id, machine) in &machines[1..] {
        assert_eq!(
            machine, first,
            "seed {seed}: replica {id} differs from replica {first_id}"
        );
    }
    let prefixes = first.rtt.get("fra").cloned().unwrap_or_default();
    for (request, prefix) in &net.acknowledged {
        assert!(
            prefixes.contains_key(prefix),
            "seed {seed}: acknowledged write {request} ({prefix}) lost"
        );
    }
    for (index, document) in &net.acknowledged_versions {
        let kept = first
            .config_versions
            .iter()
            .find(|v| v.record.index == *index)
            .unwrap_or_else(|| panic!("seed {seed}: the deployment applied at {index} is lost"));
        assert_eq!(&kept.document, document, "seed {seed}: version at {index}");
    }
    let current = first.current_version().expect("a deployment");
    assert_eq!(
        first.deployment().map(|d| d.sites.len()),
        Some(if current.document == net.documents[1] {
            4
        } else {
            3
        }),
        "seed {seed}: the deployment read is the current document"
    );
    eprintln!(
        "  seed {seed}: {} samples and {} deployment versions acknowledged",
        net.acknowledged.len(),
        net.acknowledged_versions.len()
    );
    assert!(
        net.acknowledged.len() >= MIN_ACKNOWLEDGED_SAMPLES,
        "seed {seed}: only {} samples acknowledged: the schedule tested too little",
        net.acknowledged.len()
    );
    assert!(
        net.acknowledged_versions.len() >= MIN_ACKNOWLEDGED_VERSIONS,
        "seed {seed}: only {} deployment versions acknowledged",
        net.acknowledged_versions.len()
    );
}

/// Samples written at the leader once the network has healed (all must apply).
const AFTER_HEALING_SAMPLES: usize = 10;
/// Every schedule must acknowledge at least this many samples: those written after healing
/// (most schedules acknowledge 80 to 200; one of crashes and partitions may get none through
/// before healing, and the writes after it keep such a run from passing on nothing)...
const MIN_ACKNOWLEDGED_SAMPLES: usize = AFTER_HEALING_SAMPLES;
/// ...and this many deployment versions (the seed and the change after healing).
const MIN_ACKNOWLEDGED_VERSIONS: usize = 2;

#[test]
fn randomized_fault_schedules_lose_no_acknowledged_write() {
    let seeds: Vec<u64> = match std::env::var("STORE_SEED") {
        Ok(seed) => vec![seed.parse().expect("STORE_SEED is a number")],
        Err(_) => {
            let count: u64 = std::env::var("STORE_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(100);
            (1..=count).collect()
        }
    };
    for seed in seeds {
        eprintln!("store network schedule seed {seed} (replay: STORE_SEED={seed})");
        run(seed);
    }
}

#[test]
fn a_restarted_replica_catches_up_from_snapshot_and_log() {
    let mut rng = Rng(7);
    let settings = RaftSettings {
        election_ticks: ELECTION_TICKS,
        heartbeat_ticks: 2,
        snapshot_threshold: 10,
    };
    let mut net = Network::new(1_000_001, 3, settings);
    while net.leader().is_none() {
        net.tick(&mut rng);
    }
    net.crash(3);
    for _ in 0..60 {
        while net.leader_among_live().is_none() {
            net.tick(&mut rng);
        }
        let leader = net.leader_among_live().unwrap();
        net.propose(leader, &mut rng);
        net.tick(&mut rng);
    }
    net.start(3);
    for _ in 0..4 * ELECTION_TICKS {
        net.tick(&mut rng);
    }
    let leader = net.replicas[&1].as_ref().unwrap().machine().clone();
    let restarted = net.replicas[&3].as_ref().unwrap();
    assert!(
        restarted.status().snapshot_index > 0,
        "caught up through a snapshot"
    );
    assert_eq!(restarted.machine(), &leader);
    assert_eq!(
        net.acknowledged.len() + net.acknowledged_versions.len(),
        60,
        "every write acknowledged"
    );
}

impl Network {
    fn leader_among_live(&self) -> Option<u64> {
        self.live()
            .into_iter()
            .find(|id| self.replicas[id].as_ref().unwrap().status().role == StateRole::Leader)
    }
}
