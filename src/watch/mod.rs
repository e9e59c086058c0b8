//! One watch per kind and namespace scope, shared by every controller that reads it: it
//! keeps the ledger of all ExecutionStops (`ledger`), a cache of only those that can still
//! act, the ExecutionStopSets' cache, and wakes the controllers.
//!
//! Why not a cache of everything: automation creates an ExecutionStop per stop and never
//! deletes it, so a year of them is 100,000 objects. A settled one (`decide::settled`) can
//! never act again, so it is in no cache and reaches no controller — which also makes
//! "a final object makes no call" hold by construction. It costs a ledger entry, which is
//! all a set's counts and `flowstop_objects` need.

pub mod initial;
pub mod ledger;

use crate::crd::set::SET_LABEL;
use crate::crd::{ExecutionStop, ExecutionStopSet};
use crate::telemetry::Metrics;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
pub use initial::InitialList;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
pub use ledger::Ledger;
use std::sync::{Arc, Mutex, MutexGuard};

/// What one scope's watches hold, for the controllers and the metrics.
#[derive(Clone)]
pub struct Scope {
    /// The ExecutionStops that can still act (not settled).
    pub stops: Store<ExecutionStop>,
    pub sets: Store<ExecutionStopSet>,
    pub ledger: SharedLedger,
}

#[derive(Clone, Debug, Default)]
pub struct SharedLedger(Arc<Mutex<Ledger>>);

impl SharedLedger {
    pub fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The controllers' wake-ups: single ExecutionStops, those of sets, and sets.
pub struct Wakes {
    pub singles: UnboundedReceiver<ObjectRef<ExecutionStop>>,
    pub bulk: UnboundedReceiver<ObjectRef<ExecutionStop>>,
    pub sets: UnboundedReceiver<ObjectRef<ExecutionStopSet>>,
}

#[derive(Clone)]
struct Senders {
    singles: UnboundedSender<ObjectRef<ExecutionStop>>,
    bulk: UnboundedSender<ObjectRef<ExecutionStop>>,
    sets: UnboundedSender<ObjectRef<ExecutionStopSet>>,
}

impl Senders {
    fn stop(&self, (obj, bulk): &Wake) {
        let lane = if *bulk { &self.bulk } else { &self.singles };
        let _ = lane.unbounded_send(obj.clone());
    }

    fn set(&self, set: ObjectRef<ExecutionStopSet>) {
        let _ = self.sets.unbounded_send(set);
    }
}

/// Starts watching ExecutionStops and ExecutionStopSets in `api`'s scope: the returned
/// future runs the watches (for ever; it retries with backoff).
pub fn scope(
    stops: Api<ExecutionStop>,
    sets: Api<ExecutionStopSet>,
    initial: InitialList,
    metrics: Arc<Metrics>,
) -> (Scope, Wakes, impl Future<Output = ()> + Send + 'static) {
    let (singles_tx, singles) = unbounded();
    let (bulk_tx, bulk) = unbounded();
    let (sets_tx, sets_rx) = unbounded();
    let tx = Senders {
        singles: singles_tx,
        bulk: bulk_tx,
        sets: sets_tx,
    };
    let stop_writer = Writer::default();
    let set_writer = Writer::default();
    let scope = Scope {
        stops: stop_writer.as_reader(),
        sets: set_writer.as_reader(),
        ledger: SharedLedger::default(),
    };
    let run = {
        let (ledger, tx2) = (scope.ledger.clone(), tx.clone());
        let stops = stripped(stops, initial, metrics.clone(), "ExecutionStop");
        let sets = stripped(sets, initial, metrics, "ExecutionStopSet");
        let stops = watch_stops(stops, stop_writer, ledger.clone(), tx);
        let sets = watch_sets(sets, set_writer, ledger, scope.stops.clone(), tx2);
        async move {
            futures::future::join(stops, sets).await;
        }
    };
    let wakes = Wakes {
        singles,
        bulk,
        sets: sets_rx,
    };
    (scope, wakes, run)
}

/// A watch whose objects keep only what reconcile reads: managedFields and kubectl's
/// last-applied copy are most of an object's size. The initial list is streamed or goes in
/// pages (`initial`); never one list response of every object.
fn stripped<K>(
    api: Api<K>,
    initial: InitialList,
    metrics: Arc<Metrics>,
    kind: &'static str,
) -> impl Stream<Item = watcher::Event<K>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    initial::events(api, initial)
        .modify(|o: &mut K| {
            let meta = o.meta_mut();
            meta.managed_fields = None;
            if let Some(a) = meta.annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .backoff(Patient::default())
        .filter_map(move |ev| {
            let metrics = metrics.clone();
            async move {
                match ev {
                    Ok(ev) => {
                        metrics.watched(kind);
                        Some(ev)
                    }
                    Err(e) => {
                        // Retried with backoff; a watch that keeps failing leaves the operator
                        // acting on what it last saw, which someone on call must be told
                        // (FlowstopWatchFailing).
                        metrics.watch_failed(kind);
                        tracing::warn!(kind, error = %e, "watch failed; retrying");
                        None
                    }
                }
            }
        })
}

/// kube-runtime's default backoff (0.8 s doubling to 30 s, with jitter), reset only after
/// two minutes without a failure. Why not `default_backoff()`: its stream resets the backoff
/// on every event, and a paged watcher yields `Init` before each list attempt, so a list
/// that kept failing was retried about once a second for as long as it failed.
#[derive(Default)]
pub struct Patient(watcher::DefaultBackoff);

impl Iterator for Patient {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl kube::runtime::utils::Backoff for Patient {
    fn reset(&mut self) {}
}

fn settled(obj: &ExecutionStop) -> bool {
    crate::decide::settled(
        &obj.spec,
        obj.status.as_ref(),
        crate::decide::retention::managed_by_gitops(obj.labels(), obj.annotations()),
    )
}

/// An ExecutionStop to wake, and whether it is a set's (the bulk lane).
type Wake = (ObjectRef<ExecutionStop>, bool);

fn wake(obj: &ExecutionStop) -> Wake {
    (
        ObjectRef::from_obj(obj),
        obj.labels().contains_key(SET_LABEL),
    )
}

/// A (re)list under way: what it has found so far; it replaces the old view at its end,
/// so an object deleted while the watch was down drops out.
#[derive(Default)]
struct Relist {
    ledger: Ledger,
    wake: Vec<Wake>,
}

async fn watch_stops(
    events: impl Stream<Item = watcher::Event<ExecutionStop>>,
    mut cache: Writer<ExecutionStop>,
    ledger: SharedLedger,
    tx: Senders,
) {
    let mut events = std::pin::pin!(events);
    let mut relist: Option<Relist> = None;
    while let Some(ev) = events.next().await {
        match ev {
            watcher::Event::Init => {
                cache.apply_watcher_event(&watcher::Event::Init);
                relist = Some(Relist::default());
            }
            watcher::Event::InitApply(obj) => {
                let r = relist.get_or_insert_with(Relist::default);
                r.ledger.apply(&obj);
                if !settled(&obj) {
                    r.wake.push(wake(&obj));
                    cache.apply_watcher_event(&watcher::Event::InitApply(obj));
                }
            }
            watcher::Event::InitDone => {
                // The ledger first, then the cache (which turns ready): a set waits for this
                // cache to be ready before it counts its children in the ledger. Both before
                // any wake-up: a controller woken for an object finds it.
                let r = relist.take().unwrap_or_default();
                let changed = r.ledger.sets_changed_from(&ledger.lock());
                *ledger.lock() = r.ledger;
                cache.apply_watcher_event(&watcher::Event::InitDone);
                for obj in &r.wake {
                    tx.stop(obj);
                }
                for set in changed {
                    tx.set(set);
                }
            }
            watcher::Event::Apply(obj) => {
                let sets = ledger.lock().apply(&obj);
                if settled(&obj) {
                    cache.apply_watcher_event(&watcher::Event::Delete(obj));
                } else {
                    let woken = wake(&obj);
                    cache.apply_watcher_event(&watcher::Event::Apply(obj));
                    tx.stop(&woken);
                }
                sets.into_iter().for_each(|s| tx.set(s));
            }
            watcher::Event::Delete(obj) => {
                let set = ledger.lock().delete(&obj);
                cache.apply_watcher_event(&watcher::Event::Delete(obj));
                if let Some(set) = set {
                    tx.set(set);
                }
            }
        }
    }
}

async fn watch_sets(
    events: impl Stream<Item = watcher::Event<ExecutionStopSet>>,
    mut cache: Writer<ExecutionStopSet>,
    ledger: SharedLedger,
    stops: Store<ExecutionStop>,
    tx: Senders,
) {
    let mut events = std::pin::pin!(events);
    let mut relist: Vec<ObjectRef<ExecutionStopSet>> = vec![];
    while let Some(ev) = events.next().await {
        cache.apply_watcher_event(&ev);
        match ev {
            watcher::Event::Init => relist.clear(),
            watcher::Event::InitApply(set) => relist.push(ObjectRef::from_obj(&set)),
            watcher::Event::InitDone => relist.drain(..).for_each(|s| tx.set(s)),
            watcher::Event::Apply(set) => tx.set(ObjectRef::from_obj(&set)),
            // A deleted set wakes its ExecutionStops, which then see it gone and stop
            // calling (settled ones are in no cache and have nothing to stop).
            watcher::Event::Delete(set) => {
                let ns = set.namespace().unwrap_or_default();
                let uid = set.metadata.uid.clone().unwrap_or_default();
                for child in ledger.lock().child_names(&ns, &uid) {
                    if let Some(obj) = stops.get(&ObjectRef::new(&child).within(&ns)) {
                        tx.stop(&wake(&obj));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ExecutionStopSpec, ExecutionStopStatus, Phase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use watcher::Event;

    fn stop(name: &str, phase: Option<Phase>, ttl: Option<u32>) -> ExecutionStop {
        ExecutionStop {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: ExecutionStopSpec {
                flow_name: "f".into(),
                execution_name: name.into(),
                options: Default::default(),
                ttl_seconds_after_finished: ttl,
            },
            status: phase.map(|p| ExecutionStopStatus {
                phase: Some(p),
                ..Default::default()
            }),
        }
    }

    /// Feeds `events` through `watch_stops`; returns the cache, the ledger and who was woken.
    async fn feed(
        events: Vec<Event<ExecutionStop>>,
    ) -> (Store<ExecutionStop>, SharedLedger, Vec<String>) {
        let (singles, mut woken) = unbounded();
        let (bulk, _) = unbounded();
        let (sets, _) = unbounded();
        let writer = Writer::default();
        let cache = writer.as_reader();
        let ledger = SharedLedger::default();
        let tx = Senders {
            singles,
            bulk,
            sets,
        };
        watch_stops(futures::stream::iter(events), writer, ledger.clone(), tx).await;
        let mut names = vec![];
        while let Ok(r) = woken.try_recv() {
            names.push(r.name);
        }
        (cache, ledger, names)
    }

    fn cached(cache: &Store<ExecutionStop>) -> Vec<String> {
        let mut names: Vec<String> = cache.state().iter().map(|o| o.name_any()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_settled_object_is_counted_but_never_cached_nor_woken() {
        let (cache, ledger, woken) = feed(vec![
            Event::Init,
            Event::InitApply(stop("done", Some(Phase::Stopped), None)),
            Event::InitApply(stop("going", Some(Phase::Stopping), None)),
            // Final, but its TTL still has to delete it: it acts once more.
            Event::InitApply(stop("expiring", Some(Phase::Stopped), Some(60))),
            Event::InitDone,
        ])
        .await;
        assert_eq!(cached(&cache), ["expiring", "going"]);
        assert_eq!(woken, ["going", "expiring"]);
        let l = ledger.lock();
        assert_eq!(
            (l.len(), l.by_phase().stopped, l.by_phase().stopping),
            (3, 2, 1)
        );
    }

    #[tokio::test]
    async fn an_object_leaves_the_cache_when_it_settles_and_a_relist_drops_the_deleted() {
        let (cache, ledger, woken) = feed(vec![
            Event::Init,
            Event::InitApply(stop("a", Some(Phase::Stopping), None)),
            Event::InitApply(stop("b", None, None)),
            Event::InitDone,
            Event::Apply(stop("a", Some(Phase::Stopped), None)),
            // The watch broke; "b" was deleted meanwhile.
            Event::Init,
            Event::InitApply(stop("a", Some(Phase::Stopped), None)),
            Event::InitDone,
        ])
        .await;
        assert!(cached(&cache).is_empty(), "{:?}", cached(&cache));
        assert_eq!(woken, ["a", "b"], "the settled update wakes nobody");
        let l = ledger.lock();
        assert_eq!((l.len(), l.by_phase().stopped), (1, 1));
    }
}
