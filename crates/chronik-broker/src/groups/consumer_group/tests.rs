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
