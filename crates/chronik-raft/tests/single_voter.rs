//! The loop with one voter: pipelined proposals apply in order, groups are
//! created through effects, and a restart replays exactly what was not yet
//! durable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chronik_raft::{
    Effect, GroupId, METADATA_GROUP, MultiRaft, MultiRaftConfig, NoPeers, Prediction, ProposeError, Proposed,
    StartError, StateMachine,
};

/// What `Recorder` answers, at once, for a proposal of this: applying it
/// would change nothing.
const REFUSE: &[u8] = b"refuse";
const REFUSED: u64 = 0;
/// `Recorder` judges a proposal starting with this only when nothing is in
/// flight, and otherwise asks the loop to hold it (`Prediction::Wait`).
const JUDGED: &[u8] = b"judged";

/// (index, data) of each applied entry, per group.
type AppliedEntries = BTreeMap<GroupId, Vec<(u64, Vec<u8>)>>;

/// Applied entries per group, with a "durable" mark that survives restarts
/// the way a flushed file would.
#[derive(Clone, Default)]
struct Recorder {
    applied: Arc<Mutex<AppliedEntries>>,
    durable: Arc<Mutex<BTreeMap<GroupId, u64>>>,
    /// Groups created through effects, as replicated state would record them.
    assigned: Arc<Mutex<BTreeMap<GroupId, Vec<u64>>>>,
    /// How often a judged proposal was asked to wait.
    waits: Arc<Mutex<u64>>,
    /// The indexes judged proposals were appended at, with nothing in flight.
    judged: Arc<Mutex<Vec<u64>>>,
}

impl StateMachine for Recorder {
    type Output = u64;

    fn open_group(&mut self, group: GroupId) -> Option<u64> {
        Some(self.durable.lock().unwrap().get(&group).copied().unwrap_or(0))
    }

    fn assigned_groups(&self) -> Vec<Effect> {
        self.assigned
            .lock()
            .unwrap()
            .clone()
            .into_iter()
            .map(|(group, voters)| Effect::CreateGroup { group, voters })
            .collect()
    }

    fn apply(&mut self, group: GroupId, index: u64, _term: u64, data: &[u8], effects: &mut Vec<Effect>) -> u64 {
        if let Some(new_group) = data.strip_prefix(b"create:") {
            let group: u64 = std::str::from_utf8(new_group).unwrap().parse().unwrap();
            effects.push(Effect::CreateGroup { group, voters: vec![1] });
            self.assigned.lock().unwrap().insert(group, vec![1]);
        }
        self.applied
            .lock()
            .unwrap()
            .entry(group)
            .or_default()
            .push((index, data.to_vec()));
        index
    }

    fn predict(&mut self, _group: GroupId, proposed: Proposed, data: &mut Vec<u8>) -> Prediction<u64> {
        if data == REFUSE {
            Prediction::Refusal(REFUSED)
        } else if data.starts_with(JUDGED) {
            if proposed.applied + 1 == proposed.index {
                self.judged.lock().unwrap().push(proposed.index);
                Prediction::Outcome(proposed.index)
            } else {
                *self.waits.lock().unwrap() += 1;
                Prediction::Wait
            }
        } else {
            Prediction::Unknown
        }
    }

    fn checkpoint(&mut self) -> Vec<(GroupId, u64)> {
        let applied = self.applied.lock().unwrap();
        let mut durable = self.durable.lock().unwrap();
        for (group, entries) in applied.iter() {
            if let Some((index, _)) = entries.last() {
                durable.insert(*group, *index);
            }
        }
        durable.iter().map(|(g, i)| (*g, *i)).collect()
    }
}

/// Starts a single-voter loop on `dir` that applies into `recorder`.
fn start(dir: &std::path::Path, recorder: &Recorder) -> Result<MultiRaft<u64>, StartError> {
    MultiRaft::start(
        &dir.join("raft"),
        MultiRaftConfig::new(1, dir.join("snapshots")),
        recorder.clone(),
        Arc::new(NoPeers),
    )
}

async fn wait_for_leader(raft: &MultiRaft<u64>, group: GroupId) {
    for _ in 0..1000 {
        if raft.status().get(group).and_then(|s| s.leader).is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("group {group} elected no leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_proposals_apply_in_order_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let raft = start(dir.path(), &recorder).unwrap();
    wait_for_leader(&raft, METADATA_GROUP).await;

    assert_eq!(raft.propose(7, b"x".to_vec()).await, Err(ProposeError::UnknownGroup(7)));
    raft.propose(METADATA_GROUP, b"create:7".to_vec()).await.unwrap();
    wait_for_leader(&raft, 7).await;

    // Submit many before awaiting any: all are in flight at once.
    let mut pending = Vec::new();
    for i in 0..500u32 {
        pending.push(raft.submit(7, i.to_be_bytes().to_vec()).await);
    }
    let mut indexes = Vec::new();
    for outcome in pending {
        indexes.push(outcome.await.unwrap().unwrap());
    }
    assert!(
        indexes.windows(2).all(|w| w[1] == w[0] + 1),
        "one entry per proposal, in order"
    );
    let applied: Vec<Vec<u8>> = recorder.applied.lock().unwrap()[&7]
        .iter()
        .map(|(_, d)| d.clone())
        .collect();
    let expected: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(applied, expected);
    raft.shutdown().await;

    // After a clean shutdown everything is durable: nothing is applied twice.
    let durable_7 = recorder.durable.lock().unwrap()[&7];
    recorder.applied.lock().unwrap().clear();
    let raft = start(dir.path(), &recorder).unwrap();
    wait_for_leader(&raft, 7).await;
    let index = raft.propose(7, b"after".to_vec()).await.unwrap();
    assert!(index > durable_7);
    let replayed = recorder.applied.lock().unwrap()[&7].clone();
    assert_eq!(replayed, vec![(index, b"after".to_vec())], "only the new entry applies");
    raft.shutdown().await;

    // State older than the compacted log cannot be rebuilt: refuse to start.
    recorder.durable.lock().unwrap().insert(7, 1);
    let refused = start(dir.path(), &recorder);
    assert!(matches!(refused, Err(StartError::StateBehindLog { group: 7, .. })));
}

/// A group the state assigns to this node but whose Raft log was never
/// created (a crash between applying the entry and creating the group) is
/// created at start, and a leader serves it once it has committed in its term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_creates_assigned_groups_that_have_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    recorder.assigned.lock().unwrap().insert(9, vec![1]);
    let raft = start(dir.path(), &recorder).unwrap();
    wait_for_leader(&raft, 9).await;
    for _ in 0..1000 {
        if raft.status().get(9).is_some_and(|s| s.leader_ready) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        raft.status().get(9).unwrap().leader_ready,
        "the leader became ready to serve"
    );
    let index = raft.propose(9, b"x".to_vec()).await.unwrap();
    assert_eq!(recorder.applied.lock().unwrap()[&9], vec![(index, b"x".to_vec())]);
    raft.shutdown().await;
}

/// A proposal the state machine refuses is answered at once and never
/// appended: the entries around it take consecutive indexes, and apply
/// never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proposal_takes_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let raft = start(dir.path(), &recorder).unwrap();
    wait_for_leader(&raft, METADATA_GROUP).await;
    raft.propose(METADATA_GROUP, b"create:5".to_vec()).await.unwrap();
    wait_for_leader(&raft, 5).await;
    let before = raft.propose(5, b"before".to_vec()).await.unwrap();
    assert_eq!(raft.propose(5, REFUSE.to_vec()).await, Ok(REFUSED));
    let after = raft.propose(5, b"after".to_vec()).await.unwrap();
    assert_eq!(after, before + 1, "the refusal took no index");
    assert_eq!(
        recorder.applied.lock().unwrap()[&5],
        vec![(before, b"before".to_vec()), (after, b"after".to_vec())]
    );
    raft.shutdown().await;
}

/// A proposal the state machine cannot judge yet is held, and so is every
/// later one: the log keeps the order proposals came in, and a held one is
/// appended once the entries before it are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_that_must_wait_is_held_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let raft = start(dir.path(), &recorder).unwrap();
    wait_for_leader(&raft, METADATA_GROUP).await;
    raft.propose(METADATA_GROUP, b"create:6".to_vec()).await.unwrap();
    wait_for_leader(&raft, 6).await;
    // Submitted before any is answered: each judged one finds entries in
    // flight and waits, holding the plain ones behind it.
    let sent: Vec<Vec<u8>> = (0..60u32)
        .map(|i| match i % 3 {
            0 => [JUDGED, &i.to_be_bytes()].concat(),
            _ => i.to_be_bytes().to_vec(),
        })
        .collect();
    let mut answers = Vec::new();
    for data in &sent {
        answers.push(raft.submit(6, data.clone()).await);
    }
    let mut indexes = Vec::new();
    for answer in answers {
        indexes.push(answer.await.unwrap().unwrap());
    }
    assert!(
        indexes.windows(2).all(|w| w[1] == w[0] + 1),
        "one entry per proposal, in the order they came: {indexes:?}"
    );
    let applied = recorder.applied.lock().unwrap()[&6].clone();
    assert_eq!(applied.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(), sent);
    assert!(*recorder.waits.lock().unwrap() > 0, "some proposal was held");
    let judged_entries: Vec<u64> = applied
        .iter()
        .filter(|(_, d)| d.starts_with(JUDGED))
        .map(|(index, _)| *index)
        .collect();
    assert_eq!(
        *recorder.judged.lock().unwrap(),
        judged_entries,
        "every judged entry was appended once judged, none unseen"
    );
    raft.shutdown().await;
}
