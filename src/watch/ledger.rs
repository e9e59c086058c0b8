//! The ledger of one watch: every ExecutionStop it has seen, by phase and by the set that
//! created it — a few dozen bytes an object, where a cached copy costs kilobytes. It is
//! what counts a set's children (kept from events, never rescanned) and what
//! `flowstop_objects` reports, for settled objects that are in no cache.

use crate::crd::set::{ChildCounts, owner_set};
use crate::crd::{ExecutionStop, ExecutionStopSet, Phase};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Ledger {
    /// By "namespace/name".
    objects: HashMap<Box<str>, Entry>,
    all: ChildCounts,
    /// By "namespace/uid" of the set: its children's names and counts.
    sets: HashMap<Arc<str>, Children>,
}

#[derive(Debug)]
struct Entry {
    phase: Option<Phase>,
    /// "namespace/uid" of the set that created it.
    set: Option<Arc<str>>,
}

/// A set's ExecutionStops: those with a controller ownerReference to its uid, in its
/// namespace.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Children {
    /// The set's name (from its children's ownerReference).
    set_name: Box<str>,
    pub counts: ChildCounts,
    names: HashSet<Box<str>>,
}

impl Children {
    pub fn has(&self, child_name: &str) -> bool {
        self.names.contains(child_name)
    }
}

fn set_key(namespace: &str, uid: &str) -> String {
    format!("{namespace}/{uid}")
}

fn tally(c: &mut ChildCounts, phase: Option<Phase>, add: bool) {
    let n = match phase {
        None | Some(Phase::Pending) => &mut c.pending,
        Some(Phase::Stopping) => &mut c.stopping,
        Some(Phase::Retrying) => &mut c.retrying,
        Some(Phase::Stopped) => &mut c.stopped,
        Some(Phase::AlreadyFinished) => &mut c.already_finished,
        Some(Phase::Failed) => &mut c.failed,
    };
    if add {
        *n += 1;
        c.total += 1;
    } else {
        *n = n.saturating_sub(1);
        c.total = c.total.saturating_sub(1);
    }
}

impl Ledger {
    /// Records `obj` as it is now. Returns the sets whose children's counts changed (to wake
    /// them): its set, and the one it left if its owner changed (orphaned, say).
    pub fn apply(&mut self, obj: &ExecutionStop) -> Vec<ObjectRef<ExecutionStopSet>> {
        let ns = obj.namespace().unwrap_or_default();
        let key: Box<str> = format!("{ns}/{}", obj.name_any()).into();
        let phase = obj.status.as_ref().and_then(|s| s.phase);
        let owner = owner_set(obj);
        let set = owner.map(|o| self.set_slot(&set_key(&ns, &o.uid)));
        let old = self.objects.insert(
            key,
            Entry {
                phase,
                set: set.clone(),
            },
        );
        let unchanged = old
            .as_ref()
            .is_some_and(|o| o.phase == phase && o.set == set);
        if unchanged {
            return vec![];
        }
        let name = obj.name_any();
        let mut wake = vec![];
        if let Some(old) = old {
            tally(&mut self.all, old.phase, false);
            if let Some(s) = &old.set {
                if let Some(left) = self.leave(s, &name, old.phase)
                    && old.set != set
                {
                    wake.push(ObjectRef::new(&left).within(&ns));
                }
            }
        }
        tally(&mut self.all, phase, true);
        if let Some(s) = &set {
            let set_name = owner.map_or("", |o| o.name.as_str());
            let children = self.sets.entry(s.clone()).or_insert_with(|| Children {
                set_name: set_name.into(),
                ..Children::default()
            });
            tally(&mut children.counts, phase, true);
            children.names.insert(name.into());
        }
        wake.extend(owner.map(|o| ObjectRef::new(&o.name).within(&ns)));
        wake
    }

    /// Forgets `obj`. Returns the set whose children's counts changed, if any.
    pub fn delete(&mut self, obj: &ExecutionStop) -> Option<ObjectRef<ExecutionStopSet>> {
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let old = self.objects.remove(format!("{ns}/{name}").as_str())?;
        tally(&mut self.all, old.phase, false);
        let set = old.set.as_ref()?;
        self.leave(set, &name, old.phase);
        owner_set(obj).map(|o| ObjectRef::new(&o.name).within(&ns))
    }

    /// Takes a child out of its set's counts; returns the set's name.
    fn leave(&mut self, set: &Arc<str>, name: &str, phase: Option<Phase>) -> Option<String> {
        let children = self.sets.get_mut(set)?;
        tally(&mut children.counts, phase, false);
        children.names.remove(name);
        let set_name = children.set_name.to_string();
        if children.names.is_empty() {
            self.sets.remove(set);
        }
        Some(set_name)
    }

    /// The shared key of a set, so its children hold one copy of it.
    fn set_slot(&self, key: &str) -> Arc<str> {
        self.sets
            .get_key_value(key)
            .map_or_else(|| key.into(), |(k, _)| k.clone())
    }

    /// The counts of `set`'s children.
    pub fn counts(&self, set: &ExecutionStopSet) -> ChildCounts {
        self.children_of(set)
            .map(|c| c.counts.clone())
            .unwrap_or_default()
    }

    /// Whether `set` has a child called `child_name`.
    pub fn has_child(&self, set: &ExecutionStopSet, child_name: &str) -> bool {
        self.children_of(set).is_some_and(|c| c.has(child_name))
    }

    fn children_of(&self, set: &ExecutionStopSet) -> Option<&Children> {
        let uid = set.metadata.uid.as_deref()?;
        let ns = set.namespace().unwrap_or_default();
        self.sets.get(set_key(&ns, uid).as_str())
    }

    /// The names of the children of the set with `uid` in `ns`.
    pub fn child_names(&self, ns: &str, uid: &str) -> Vec<String> {
        self.sets
            .get(set_key(ns, uid).as_str())
            .map(|c| c.names.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default()
    }

    /// Every object by phase (no status yet counts as Pending).
    pub fn by_phase(&self) -> &ChildCounts {
        &self.all
    }

    /// The sets whose children's counts differ between `self` and `other` (after a
    /// relist).
    pub fn sets_changed_from(&self, other: &Ledger) -> Vec<ObjectRef<ExecutionStopSet>> {
        let set_ref = |key: &str, c: &Children| {
            let ns = key.split_once('/').map_or("", |(ns, _)| ns);
            ObjectRef::new(&c.set_name).within(ns)
        };
        let mut changed: Vec<_> = self
            .sets
            .iter()
            .filter(|(k, c)| other.sets.get(*k).map(|o| &o.counts) != Some(&c.counts))
            .map(|(k, c)| set_ref(k, c))
            .collect();
        changed.extend(
            other
                .sets
                .iter()
                .filter(|(k, _)| !self.sets.contains_key(*k))
                .map(|(k, c)| set_ref(k, c)),
        );
        changed
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ExecutionStopSpec, ExecutionStopStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn set(ns: &str, name: &str, uid: &str) -> ExecutionStopSet {
        ExecutionStopSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: serde_json::from_value(serde_json::json!({"flowName": "f", "maxCount": 10}))
                .unwrap(),
            status: None,
        }
    }

    fn stop(ns: &str, name: &str, phase: Option<Phase>, owner: Option<&str>) -> ExecutionStop {
        ExecutionStop {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "flowstop.dev/v1alpha1".into(),
                        kind: "ExecutionStopSet".into(),
                        name: "s".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: ExecutionStopSpec {
                flow_name: "f".into(),
                execution_name: name.into(),
                options: Default::default(),
                ttl_seconds_after_finished: None,
            },
            status: phase.map(|p| ExecutionStopStatus {
                phase: Some(p),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn counts_follow_events_and_wake_the_set_only_when_they_change() {
        let s = set("a", "s", "u1");
        let mut l = Ledger::default();
        let wake = l.apply(&stop("a", "c1", None, Some("u1")));
        assert_eq!(wake, [ObjectRef::new("s").within("a")]);
        l.apply(&stop("a", "c2", Some(Phase::Stopping), Some("u1")));
        l.apply(&stop("a", "single", Some(Phase::Stopped), None));
        assert_eq!(
            l.apply(&stop("a", "c2", Some(Phase::Stopping), Some("u1"))),
            [],
            "same phase: nothing to wake"
        );
        assert_eq!(
            l.apply(&stop("a", "c2", Some(Phase::Stopped), Some("u1"))),
            [ObjectRef::new("s").within("a")]
        );
        let c = l.counts(&s);
        assert_eq!((c.total, c.pending, c.stopped), (2, 1, 1));
        assert!(l.has_child(&s, "c1") && !l.has_child(&s, "single"));
        assert_eq!((l.by_phase().total, l.by_phase().stopped), (3, 2));
        assert!(l.delete(&stop("a", "c1", None, Some("u1"))).is_some());
        let c = l.counts(&s);
        assert_eq!((c.total, c.pending, c.stopped), (1, 0, 1));
        assert_eq!(l.by_phase().total, 2);
        l.delete(&stop("a", "c2", None, Some("u1")));
        assert_eq!(l.counts(&s), ChildCounts::default());
        assert!(l.sets.is_empty(), "an empty set's entry is dropped");
    }

    #[test]
    fn a_child_is_counted_only_for_the_set_of_its_namespace_and_uid() {
        let mut l = Ledger::default();
        // Another tenant's object pointing at this set's uid from its own namespace.
        l.apply(&stop("b", "c1", None, Some("u1")));
        assert_eq!(l.counts(&set("a", "s", "u1")).total, 0);
        assert_eq!(l.counts(&set("b", "s", "u1")).total, 1);
        assert_eq!(
            l.counts(&set("a", "s", "u2")).total,
            0,
            "another uid: another set"
        );
    }

    #[test]
    fn an_orphaned_child_leaves_its_set_and_wakes_it() {
        let mut l = Ledger::default();
        l.apply(&stop("a", "c1", None, Some("u1")));
        assert_eq!(
            l.apply(&stop("a", "c1", None, None)),
            [ObjectRef::new("s").within("a")],
            "the set it left counts one less"
        );
        assert_eq!(l.counts(&set("a", "s", "u1")).total, 0);
        assert_eq!(l.by_phase().total, 1);
    }

    #[test]
    fn a_relist_names_the_sets_whose_counts_changed() {
        let mut old = Ledger::default();
        old.apply(&stop("a", "c1", None, Some("u1")));
        old.apply(&stop("a", "d1", None, Some("u2")));
        let mut new = Ledger::default();
        new.apply(&stop("a", "c1", Some(Phase::Stopped), Some("u1")));
        new.apply(&stop("a", "e1", None, Some("u3")));
        let changed = new.sets_changed_from(&old);
        assert_eq!(changed.len(), 3, "u1 changed phase, u2 is gone, u3 is new");
        assert!(
            changed
                .iter()
                .all(|r| r.name == "s" && r.namespace.as_deref() == Some("a"))
        );
    }
}
