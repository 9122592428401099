//! The server-side assignors of the consumer group protocol (KIP-848):
//! `uniform` (balanced and sticky) and `range` (contiguous ranges per topic).
//! Pure functions of the members' subscriptions and the topics' sizes, so
//! the same inputs give the same target on any coordinator.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// A topic (by id) and partition.
pub type TopicPartition = (Uuid, i32);
pub type Partitions = BTreeSet<TopicPartition>;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

/// What the assignor knows of one member.
pub struct MemberSpec<'a> {
    pub id: &'a str,
    /// The subscribed topics that exist.
    pub topics: BTreeSet<Uuid>,
    /// Its current target, kept where the balance allows (stickiness).
    pub current: &'a Partitions,
}

/// The target assignment of every member, by `assignor`'s rule. `sizes`
/// gives each existing topic's partition count.
pub fn assign(assignor: &str, members: &[MemberSpec<'_>], sizes: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Partitions> {
    match assignor {
        RANGE => range(members, sizes),
        _ => uniform(members, sizes),
    }
}

/// Every partition goes to a member subscribed to its topic; members end
/// within one partition of each other wherever their subscriptions allow,
/// and partitions stay where they are unless balance needs them elsewhere.
fn uniform(members: &[MemberSpec<'_>], sizes: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Partitions> {
    let mut target: BTreeMap<String, Partitions> =
        members.iter().map(|m| (m.id.to_string(), Partitions::new())).collect();
    let mut taken = Partitions::new();
    // Stickiness first, up to an even share of what the member can take.
    for member in members {
        let eligible: usize = member
            .topics
            .iter()
            .filter_map(|t| sizes.get(t))
            .map(|n| *n as usize)
            .sum();
        let share = eligible.div_ceil(members.len().max(1));
        for tp in member.current.iter().filter(|tp| member.topics.contains(&tp.0)) {
            let in_range = sizes.get(&tp.0).is_some_and(|n| tp.1 < *n);
            let mine = target.get_mut(member.id).expect("every member has an entry");
            if in_range && mine.len() < share && taken.insert(*tp) {
                mine.insert(*tp);
            }
        }
    }
    // The rest, each to the least loaded subscriber.
    for (topic, count) in sizes {
        for partition in 0..*count {
            let tp = (*topic, partition);
            if taken.contains(&tp) {
                continue;
            }
            let subscribers = members.iter().filter(|m| m.topics.contains(topic));
            if let Some(member) = subscribers.min_by_key(|m| (target[m.id].len(), m.id)) {
                target.get_mut(member.id).expect("listed").insert(tp);
                taken.insert(tp);
            }
        }
    }
    // Then even out: move a partition from a member with two more than
    // another that could take it. Each move lowers the spread, so at most
    // one move per partition; members are scanned from both ends of the
    // load order, so a pass stops at the first pair that is close enough.
    for _ in 0..taken.len() {
        let mut order: Vec<&MemberSpec<'_>> = members.iter().collect();
        order.sort_by_key(|m| (target[m.id].len(), m.id));
        let mut chosen = None;
        'search: for heavy in order.iter().rev() {
            for light in &order {
                if target[heavy.id].len() <= target[light.id].len() + 1 {
                    // The rest of the lighter members are heavier still.
                    break;
                }
                if let Some(tp) = target[heavy.id].iter().rev().find(|tp| light.topics.contains(&tp.0)) {
                    chosen = Some((heavy.id, light.id, *tp));
                    break 'search;
                }
            }
        }
        let Some((from, to, tp)) = chosen else {
            break;
        };
        target.get_mut(from).expect("listed").remove(&tp);
        target.get_mut(to).expect("listed").insert(tp);
    }
    target
}

/// Per topic, its subscribers in member-id order take contiguous ranges,
/// the first `count % members` one partition more.
fn range(members: &[MemberSpec<'_>], sizes: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Partitions> {
    let mut target: BTreeMap<String, Partitions> =
        members.iter().map(|m| (m.id.to_string(), Partitions::new())).collect();
    for (topic, count) in sizes {
        let mut subscribers: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.id)
            .collect();
        subscribers.sort_unstable();
        if subscribers.is_empty() {
            continue;
        }
        let quota = *count as usize / subscribers.len();
        let extra = *count as usize % subscribers.len();
        let mut next = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let take = quota + usize::from(i < extra);
            let mine = target.get_mut(*member).expect("listed");
            mine.extend((next..next + take).map(|p| (*topic, p as i32)));
            next += take;
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    fn run(
        assignor: &str,
        subs: &[(&str, Vec<Uuid>)],
        sizes: &BTreeMap<Uuid, i32>,
        current: &BTreeMap<String, Partitions>,
    ) -> BTreeMap<String, Partitions> {
        let empty = Partitions::new();
        let specs: Vec<MemberSpec<'_>> = subs
            .iter()
            .map(|(id, t)| MemberSpec {
                id,
                topics: t.iter().copied().collect(),
                current: current.get(*id).unwrap_or(&empty),
            })
            .collect();
        assign(assignor, &specs, sizes)
    }

    fn check_complete_and_disjoint(target: &BTreeMap<String, Partitions>, sizes: &BTreeMap<Uuid, i32>) {
        let all: Vec<_> = target.values().flatten().collect();
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(all.len(), unique.len(), "a partition assigned twice: {target:?}");
        assert_eq!(all.len() as i32, sizes.values().sum::<i32>(), "a partition unassigned");
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let t = topics(2);
        let sizes: BTreeMap<Uuid, i32> = [(t[0], 7), (t[1], 5)].into();
        let all = |ids: &[&'static str]| -> Vec<(&'static str, Vec<Uuid>)> {
            ids.iter().map(|id| (*id, t.clone())).collect()
        };
        let first = run(UNIFORM, &all(&["a", "b", "c"]), &sizes, &BTreeMap::new());
        check_complete_and_disjoint(&first, &sizes);
        assert!(first.values().all(|p| p.len() == 4), "{first:?}");
        // A fourth member takes 3; the others keep most of theirs.
        let second = run(UNIFORM, &all(&["a", "b", "c", "d"]), &sizes, &first);
        check_complete_and_disjoint(&second, &sizes);
        assert!(second.values().all(|p| p.len() == 3), "{second:?}");
        for id in ["a", "b", "c"] {
            assert_eq!(
                second[id].intersection(&first[id]).count(),
                3,
                "{id} kept its partitions"
            );
        }
        // A member leaves: only its partitions move.
        let third = run(UNIFORM, &all(&["a", "b", "d"]), &sizes, &second);
        check_complete_and_disjoint(&third, &sizes);
        for id in ["a", "b", "d"] {
            assert!(third[id].is_superset(&second[id]), "{id} lost a partition");
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let t = topics(2);
        let sizes: BTreeMap<Uuid, i32> = [(t[0], 4), (t[1], 4)].into();
        let subs = [("a", vec![t[0]]), ("b", vec![t[0], t[1]]), ("c", vec![t[1]])];
        let target = run(UNIFORM, &subs, &sizes, &BTreeMap::new());
        check_complete_and_disjoint(&target, &sizes);
        assert!(target["a"].iter().all(|tp| tp.0 == t[0]));
        assert!(target["c"].iter().all(|tp| tp.0 == t[1]));
        let counts: Vec<usize> = target.values().map(BTreeSet::len).collect();
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{target:?}"
        );
    }

    #[test]
    fn uniform_handles_a_large_group() {
        let t = topics(10);
        let sizes: BTreeMap<Uuid, i32> = t.iter().map(|id| (*id, 300)).collect();
        let ids: Vec<String> = (0..400).map(|i| format!("m{i:03}")).collect();
        // Every member on every topic but one, so subscriptions differ.
        let subs: Vec<(&str, Vec<Uuid>)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), t.iter().copied().filter(|x| *x != t[i % 10]).collect()))
            .collect();
        let target = run(UNIFORM, &subs, &sizes, &BTreeMap::new());
        check_complete_and_disjoint(&target, &sizes);
        let counts: Vec<usize> = target.values().map(BTreeSet::len).collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let t = topics(1);
        let sizes: BTreeMap<Uuid, i32> = [(t[0], 5)].into();
        let subs = [("b", t.clone()), ("a", t.clone())];
        let target = run(RANGE, &subs, &sizes, &BTreeMap::new());
        check_complete_and_disjoint(&target, &sizes);
        assert_eq!(target["a"], [(t[0], 0), (t[0], 1), (t[0], 2)].into());
        assert_eq!(target["b"], [(t[0], 3), (t[0], 4)].into());
    }
}
