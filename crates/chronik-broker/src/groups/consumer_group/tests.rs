use super::*;

const SESSION: i64 = 10_000;

fn topics() -> Topics {
    [("t".to_string(), (Uuid::from_u128(7), 6))].into()
}

fn join(group: &mut ConsumerGroup, id: &str, now: i64) -> Reply {
    let request = Heartbeat {
        member_id: id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 5_000,
        subscribed: Some(vec!["t".into()]),
        ..Heartbeat::default()
    };
    group.heartbeat(request, &topics(), now).unwrap()
}

fn beat(group: &mut ConsumerGroup, id: &str, epoch: i32, owned: &Partitions, now: i64) -> Result<Reply, Refusal> {
    let request = Heartbeat {
        member_id: id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..Heartbeat::default()
    };
    group.heartbeat(request, &topics(), now)
}

/// A member as the client sees it: what it owns and its epoch.
struct Client {
    id: &'static str,
    epoch: i32,
    owned: Partitions,
}

impl Client {
    fn join(group: &mut ConsumerGroup, id: &'static str, now: i64) -> Client {
        let reply = join(group, id, now);
        Client {
            id,
            epoch: reply.member_epoch,
            owned: reply.assignment.unwrap_or_default(),
        }
    }

    fn beat(&mut self, group: &mut ConsumerGroup, now: i64) {
        let reply = beat(group, self.id, self.epoch, &self.owned, now).unwrap();
        self.epoch = reply.member_epoch;
        if let Some(assignment) = reply.assignment {
            self.owned = assignment;
        }
    }
}

fn no_partition_owned_twice(clients: &[&Client]) {
    let mut seen = Partitions::new();
    for client in clients {
        for tp in &client.owned {
            assert!(seen.insert(*tp), "{tp:?} owned by two members");
        }
    }
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_gives_them_up() {
    let mut group = ConsumerGroup::new("g", SESSION);
    let mut a = Client::join(&mut group, "a", 0);
    assert_eq!(a.owned.len(), 6);
    let mut b = Client::join(&mut group, "b", 1);
    assert!(b.owned.is_empty(), "a still owns every partition");
    no_partition_owned_twice(&[&a, &b]);
    for now in 2..10 {
        a.beat(&mut group, now);
        no_partition_owned_twice(&[&a, &b]);
        b.beat(&mut group, now);
        no_partition_owned_twice(&[&a, &b]);
    }
    assert_eq!((a.owned.len(), b.owned.len()), (3, 3));
    assert_eq!(a.epoch, group.epoch());
    assert_eq!(b.epoch, group.epoch());
    assert_eq!(group.state_name(), "Stable");

    // b leaves cleanly: a gets everything back.
    let left = group
        .heartbeat(
            Heartbeat {
                member_id: "b".into(),
                member_epoch: -1,
                ..Heartbeat::default()
            },
            &topics(),
            20,
        )
        .unwrap();
    assert_eq!(left.member_epoch, -1);
    a.beat(&mut group, 21);
    assert_eq!(a.owned.len(), 6);
}

#[test]
fn silent_members_are_fenced_and_their_partitions_freed() {
    let mut group = ConsumerGroup::new("g", SESSION);
    let mut a = Client::join(&mut group, "a", 0);
    join(&mut group, "b", 1);
    a.beat(&mut group, 2); // told to give up half
    assert_eq!(a.owned.len(), 3);
    group.tick(SESSION + 10);
    assert!(group.is_empty(), "both sessions ran out");
    assert_eq!(
        beat(&mut group, "a", a.epoch, &a.owned, SESSION + 11).unwrap_err().0,
        ResponseError::UnknownMemberId
    );
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let mut group = ConsumerGroup::new("g", SESSION);
    let first = join(&mut group, "a", 0);
    let owned_by_a = first.assignment.unwrap();
    join(&mut group, "b", 1);
    // a keeps heartbeating but never gives its partitions up.
    let reply = beat(&mut group, "a", first.member_epoch, &owned_by_a, 2).unwrap();
    assert_eq!(reply.assignment.unwrap().len(), 3);
    for now in [1_000, 3_000, 5_001] {
        let _ = beat(&mut group, "b", 1, &Partitions::new(), now);
        let _ = beat(&mut group, "a", first.member_epoch, &owned_by_a, now);
    }
    group.tick(5_003);
    assert_eq!(group.members().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["b"]);
}

#[test]
fn epochs_are_checked() {
    let mut group = ConsumerGroup::new("g", SESSION);
    let first = join(&mut group, "a", 0);
    let owned = first.assignment.unwrap();
    assert_eq!(
        beat(&mut group, "a", first.member_epoch + 5, &owned, 1).unwrap_err().0,
        ResponseError::FencedMemberEpoch
    );
    assert_eq!(group.validate_commit("a", first.member_epoch), Ok(()));
    assert_eq!(group.validate_commit("a", 0), Err(ResponseError::StaleMemberEpoch));
    assert_eq!(group.validate_commit("", -1), Err(ResponseError::UnknownMemberId));
    let refused = group.heartbeat(
        Heartbeat {
            member_id: "c".into(),
            member_epoch: 0,
            subscribed: Some(vec!["t".into()]),
            assignor: Some("sticky".into()),
            ..Heartbeat::default()
        },
        &topics(),
        2,
    );
    assert_eq!(refused.unwrap_err().0, ResponseError::UnsupportedAssignor);
}

fn join_static(group: &mut ConsumerGroup, id: &str, instance: &str, now: i64) -> Result<Reply, Refusal> {
    let request = Heartbeat {
        member_id: id.into(),
        member_epoch: 0,
        instance_id: Some(instance.into()),
        rebalance_timeout_ms: 5_000,
        subscribed: Some(vec!["t".into()]),
        ..Heartbeat::default()
    };
    group.heartbeat(request, &topics(), now)
}

#[test]
fn a_static_member_takes_over_its_old_self_only_after_it_left() {
    let mut group = ConsumerGroup::new("g", SESSION);
    let first = join_static(&mut group, "a", "instance-1", 0).unwrap();
    let owned = first.assignment.clone().unwrap();
    let refused = join_static(&mut group, "b", "instance-1", 1).unwrap_err();
    assert_eq!(refused.0, ResponseError::UnreleasedInstanceId);
    // A restart: the old process leaves with -2 and keeps its partitions...
    let left = group
        .heartbeat(
            Heartbeat {
                member_id: "a".into(),
                member_epoch: -2,
                ..Heartbeat::default()
            },
            &topics(),
            2,
        )
        .unwrap();
    assert_eq!(left.member_epoch, -2);
    let epoch = group.epoch();
    // ...and the new one gets them back with the same member epoch, without a rebalance.
    let back = join_static(&mut group, "b", "instance-1", 3).unwrap();
    assert_eq!(back.member_epoch, first.member_epoch);
    assert_eq!(back.assignment, Some(owned));
    assert_eq!(group.epoch(), epoch);
    assert_eq!(group.members().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["b"]);
    // A static member that never comes back is let go when its session ends.
    group
        .heartbeat(
            Heartbeat {
                member_id: "b".into(),
                member_epoch: -2,
                ..Heartbeat::default()
            },
            &topics(),
            4,
        )
        .unwrap();
    group.tick(4 + SESSION + 1);
    assert!(group.is_empty());
}

#[test]
fn a_restored_group_carries_on() {
    let mut group = ConsumerGroup::new("g", SESSION);
    let first = join(&mut group, "a", 0);
    let snapshot = group.take_unsaved().expect("joining changes the group");
    assert!(group.take_unsaved().is_none());
    let json = serde_json::to_vec(&snapshot).unwrap();
    let mut restored = ConsumerGroup::restore("g", serde_json::from_slice(&json).unwrap(), SESSION, 100);
    let reply = beat(
        &mut restored,
        "a",
        first.member_epoch,
        &first.assignment.clone().unwrap(),
        101,
    )
    .unwrap();
    assert_eq!(reply.member_epoch, first.member_epoch);
    assert_eq!(
        reply.assignment, first.assignment,
        "a new coordinator resends the assignment"
    );
}

mod search {
    //! Random joins, heartbeats, clean leaves, silences and clock jumps by
    //! clients that follow the protocol: at every step no partition is held
    //! by two members of the group, and once everyone heartbeats again the
    //! group settles with every partition owned, evenly.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Join(usize),
        Beat(usize),
        /// The client acts on the assignment it was last sent: gives up the
        /// partitions it lacks (after committing), then takes the new ones.
        Settle(usize),
        Leave(usize),
        /// Time passes; members that did not heartbeat may be fenced.
        Wait(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            1 => (0..5usize).prop_map(Step::Join),
            4 => (0..5usize).prop_map(Step::Beat),
            3 => (0..5usize).prop_map(Step::Settle),
            1 => (0..5usize).prop_map(Step::Leave),
            1 => (0..12_000i64).prop_map(Step::Wait),
        ]
    }

    struct Model {
        id: String,
        joined: bool,
        epoch: i32,
        owned: Partitions,
        /// An assignment received and not yet acted on.
        pending: Option<Partitions>,
    }

    fn apply(client: &mut Model, reply: Result<Reply, Refusal>) {
        match reply {
            Ok(reply) => {
                client.epoch = reply.member_epoch;
                if let Some(assignment) = reply.assignment {
                    client.pending = Some(assignment);
                }
            }
            // Fenced or unknown: the client gives everything up and rejoins later.
            Err(_) => {
                client.joined = false;
                client.owned.clear();
                client.pending = None;
            }
        }
    }

    fn heartbeat(group: &mut ConsumerGroup, client: &mut Model, now: i64) {
        let request = Heartbeat {
            member_id: client.id.clone(),
            member_epoch: client.epoch,
            rebalance_timeout_ms: -1,
            owned: Some(client.owned.clone()),
            ..Heartbeat::default()
        };
        let reply = group.heartbeat(request, &topics(), now);
        apply(client, reply);
    }

    fn members_hold_disjoint_partitions(group: &ConsumerGroup, clients: &[Model]) {
        let live: BTreeSet<&str> = group.members().map(|m| m.id.as_str()).collect();
        let mut seen = Partitions::new();
        for client in clients.iter().filter(|c| live.contains(c.id.as_str())) {
            for tp in &client.owned {
                assert!(seen.insert(*tp), "{tp:?} held by two members");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn no_partition_has_two_owners(steps in proptest::collection::vec(step(), 1..120)) {
            let mut group = ConsumerGroup::new("g", SESSION);
            let mut clients: Vec<Model> = (0..5)
                .map(|i| Model { id: format!("m{i}"), joined: false, epoch: 0, owned: Partitions::new(), pending: None })
                .collect();
            let mut now = 0;
            for step in steps {
                now += 10;
                match step {
                    Step::Join(i) if !clients[i].joined => {
                        let reply = group.heartbeat(
                            Heartbeat {
                                member_id: clients[i].id.clone(),
                                member_epoch: 0,
                                rebalance_timeout_ms: 5_000,
                                subscribed: Some(vec!["t".into()]),
                                ..Heartbeat::default()
                            },
                            &topics(),
                            now,
                        );
                        clients[i].joined = true;
                        clients[i].owned.clear();
                        clients[i].pending = None;
                        apply(&mut clients[i], reply);
                    }
                    Step::Beat(i) if clients[i].joined => heartbeat(&mut group, &mut clients[i], now),
                    Step::Settle(i) => {
                        if let Some(assignment) = clients[i].pending.take() {
                            clients[i].owned = assignment;
                        }
                    }
                    Step::Leave(i) if clients[i].joined => {
                        let request = Heartbeat { member_id: clients[i].id.clone(), member_epoch: -1, ..Heartbeat::default() };
                        let _ = group.heartbeat(request, &topics(), now);
                        clients[i].joined = false;
                        clients[i].owned.clear();
                        clients[i].pending = None;
                    }
                    Step::Wait(ms) => {
                        now += ms;
                        group.tick(now);
                    }
                    _ => {}
                }
                members_hold_disjoint_partitions(&group, &clients);
            }
            // Everyone still in heartbeats until the group settles.
            for _ in 0..10 {
                now += 10;
                for client in clients.iter_mut().filter(|c| c.joined) {
                    heartbeat(&mut group, client, now);
                    if let Some(assignment) = client.pending.take() {
                        client.owned = assignment;
                    }
                }
                members_hold_disjoint_partitions(&group, &clients);
            }
            let live: Vec<&Model> = clients.iter().filter(|c| c.joined).collect();
            if !live.is_empty() {
                let owned: usize = live.iter().map(|c| c.owned.len()).sum();
                prop_assert_eq!(owned, 6, "every partition owned once the group settles");
                let counts: Vec<usize> = live.iter().map(|c| c.owned.len()).collect();
                prop_assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
                prop_assert_eq!(group.state_name(), "Stable");
            }
        }
    }
}
