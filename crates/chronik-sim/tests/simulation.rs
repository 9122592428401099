//! The simulator's own guarantees: a seed replays exactly, a fixed range of
//! seeds holds every invariant on 3 and 5 nodes, and every planted bug is
//! caught within a bounded number of seeds.

use std::time::Duration;

use chronik_raft::PlantedBug;
use chronik_sim::{Config, Report, run};

fn config(seed: u64, nodes: usize, seconds: u64) -> Config {
    Config {
        seed,
        nodes,
        duration: Duration::from_secs(seconds),
        planted_bug: None,
        misassign_offsets: false,
        upgrade: false,
        keep_history: false,
    }
}

fn explain(report: &Report) -> String {
    format!(
        "seed {} ({} nodes) violated: {}\nschedule:\n{}\nreplay: cargo run -p chronik-sim -- --seed {} --nodes {}",
        report.seed,
        report.nodes,
        report.violations[0],
        report.schedule.join("\n"),
        report.seed,
        report.nodes
    )
}

#[test]
fn a_seed_replays_byte_for_byte() {
    let mut keep = config(7, 3, 8);
    keep.keep_history = true;
    let first = run(&keep);
    let second = run(&keep);
    assert!(first.violations.is_empty(), "{}", explain(&first));
    assert!(first.faults > 0 && first.stats.acked_records > 0, "{first:?}");
    assert_eq!(first.history, second.history);
    assert_eq!(first.digest, second.digest);
    let other = run(&config(8, 3, 8));
    assert_ne!(first.digest, other.digest, "another seed, another run");
}

fn sweep(seeds: std::ops::Range<u64>, nodes: usize) {
    let mut faults = 0;
    let mut acked = 0;
    for seed in seeds.clone() {
        let report = run(&config(seed, nodes, 10));
        assert!(report.violations.is_empty(), "{}", explain(&report));
        faults += report.faults;
        acked += report.stats.acked_records;
    }
    // The sweep must have exercised something, or passing means nothing.
    assert!(faults >= seeds.count() * 3, "only {faults} faults injected");
    assert!(acked > 1000, "only {acked} records acknowledged");
}

#[test]
fn seeds_of_three_nodes_hold_every_invariant() {
    sweep(1..13, 3);
}

#[test]
fn seeds_of_five_nodes_hold_every_invariant() {
    sweep(101..107, 5);
}

/// A rolling upgrade's last step: the cluster moves from entries whose
/// offsets apply assigns to entries carrying their leader's offsets while
/// producers, transactions and faults go on.
#[test]
fn an_upgrade_under_load_holds_every_invariant() {
    for seed in 201..207 {
        let mut upgrading = config(seed, 3, 10);
        upgrading.upgrade = true;
        let report = run(&upgrading);
        assert!(report.violations.is_empty(), "{} --upgrade", explain(&report));
        assert!(report.stats.acked_records > 100, "{report:?}");
    }
}

/// The first seed of `seeds` whose run catches `bug`.
fn first_catch(bug: PlantedBug, mut seeds: std::ops::RangeInclusive<u64>) -> Option<(u64, String)> {
    seeds.find_map(|seed| {
        let mut planted = config(seed, 3, 20);
        planted.planted_bug = Some(bug);
        let report = run(&planted);
        report.violations.first().map(|v| (seed, v.clone()))
    })
}

#[test]
fn a_leader_serving_reads_without_the_read_gate_is_caught() {
    let caught = first_catch(PlantedBug::ReadWithoutGate, 1..=10);
    assert!(caught.is_some(), "10 seeds did not catch reads without the read gate");
}

#[test]
fn a_leader_serving_reads_without_a_lease_is_caught() {
    // Seed 7 of 1-10 catches it (7 and 19 of seeds 1-40, since leaders
    // hold batches back until they can judge them).
    let caught = first_catch(PlantedBug::ReadWithoutLease, 1..=10);
    assert!(caught.is_some(), "seeds 1-10 did not catch reads without a lease");
}

#[test]
fn acknowledging_before_fsync_is_caught() {
    // acks=1 records are not promised to survive a leader's loss, so only
    // the acks=all ones can show it: seed 3 is the first that does.
    let caught = first_catch(PlantedBug::AckBeforeFsync, 1..=5);
    assert!(caught.is_some(), "5 seeds did not catch acks before fsync");
}

/// Found wanting when this bug was first planted: the simulator's wrapper
/// of the state machine did not pass the new calls on, so no simulated run
/// wrote a record once. Now 18 of seeds 1-20 catch it, seed 1 first: a
/// power loss keeps the references in the Raft log and loses the bytes
/// they name, and the restarted node cannot apply its log.
#[test]
fn references_to_segments_not_yet_fsynced_are_caught() {
    let caught = first_catch(PlantedBug::ReferenceBeforeSync, 1..=3);
    assert!(
        caught.is_some(),
        "seeds 1-3 did not catch references to unsynced segments"
    );
}

/// Found by the first sweep that wrote records once (seed 6094 of
/// 6000-6199): a node already down since a power loss of the whole
/// cluster lost power again, and the model cut its segments back to its
/// checkpoint a second time, past bytes it had fsynced before going down
/// and that its Raft log referred to. A node that is down loses nothing
/// more.
#[test]
fn a_power_loss_of_a_node_already_down_loses_nothing_more() {
    let report = run(&config(6094, 3, 20));
    assert!(report.violations.is_empty(), "{}", explain(&report));
}

/// A leader's forecast that puts a batch at the wrong offset: every
/// replica refuses the entry at apply, and the workload reports it (in a
/// debug build the leader's own check of its forecast panics at that entry
/// first). Seed 1 catches it within half a second.
#[test]
fn a_forecast_that_misassigns_offsets_is_caught() {
    let caught = (1..=3).find(|&seed| {
        let mut planted = config(seed, 3, 20);
        planted.misassign_offsets = true;
        !run(&planted).violations.is_empty()
    });
    assert!(caught.is_some(), "seeds 1-3 did not catch misassigned offsets");
}

/// A partition move stalled: the group's leader fell asleep while the node
/// receiving the new replica was down, and that replica, created empty,
/// never campaigns, so nothing woke the leader to send it a snapshot. Found
/// as 5 of seeds 201-320 on 5 nodes in the first sweep with sleeping
/// groups. Now a leader does not sleep during a move, and wakes the groups
/// a returning node lags in.
#[test]
fn moves_finish_while_groups_sleep() {
    for seed in [222, 309] {
        let report = run(&config(seed, 5, 10));
        assert!(report.violations.is_empty(), "{}", explain(&report));
    }
}

/// Seeds that found a defect, kept with the code before its fix planted.
/// Each must fail with the defect and pass without it. (A change to the
/// simulator's own choices changes what a seed does: then find the seeds
/// anew with `chronik-sim --seeds 1..50 --plant ...`.)
#[test]
fn regression_seeds_fail_with_their_defect_and_pass_without_it() {
    let seeds = [
        // A leader paused (SIGSTOP) past its successor's election served,
        // on waking, a high watermark below what readers had seen (first
        // found as seed 106 on 5 nodes). Fixed by leadership leases, and no
        // votes for an election timeout after a restart, which leases count on.
        // (Seeds found anew when the workload began to send acks=1 batches,
        // and again when it began to write transactions; the last stable
        // offset going back is now what shows it first; and again when idle
        // groups began to sleep, with quiet spells in the workload; and
        // again when election timeouts became less spread; and again when
        // leaders began to refuse batches before proposing them, and to
        // hold them back until they can judge them.)
        (7, 3, 20, PlantedBug::ReadWithoutLease),
        // The defect of the safety round: a new leader served reads before
        // it had committed in its term and applied up to its commit.
        (1, 3, 20, PlantedBug::ReadWithoutGate),
        // A node removed from a partition and added back granted votes
        // before the leader's snapshot gave it a configuration, forgetting
        // its earlier self's vote: a leader without the latest entries was
        // elected and served a high watermark below what readers had seen.
        // Found as seed 212 in a 5-node sweep with partition moves (it also
        // panicked on heartbeats committing beyond its empty log). Since a
        // node is added back only once its old replica is gone, few seeds
        // reach it: 139 of 101-300 does first, since leaders hold batches
        // back until they can judge them (192 did before that, since they
        // refuse batches before proposing them; 102 before that, since cut
        // links began to refuse at random and leases were halved; 164 before that,
        // when election timeouts became less spread; 125 before that, 143
        // before idle groups slept, 113 before transactions, 166 before
        // acks=1 batches).
        (139, 5, 10, PlantedBug::StaleIncarnation),
    ];
    for (seed, nodes, seconds, defect) in seeds {
        let mut with_defect = config(seed, nodes, seconds);
        with_defect.planted_bug = Some(defect);
        let report = run(&with_defect);
        assert!(!report.violations.is_empty(), "seed {seed} no longer finds {defect:?}");
        let report = run(&config(seed, nodes, seconds));
        assert!(report.violations.is_empty(), "{}", explain(&report));
    }
}
