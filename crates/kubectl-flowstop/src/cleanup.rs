//! What `stop` created in this run, and taking it back when the run does not succeed.
//!
//! An ExecutionStop left behind by a command that reported failure goes on acting after
//! the pipeline has moved on: a Failed one (403) calls StopExecution again when its Secret
//! changes or an hour later, a Retrying or Pending one (a timed-out wait) keeps trying, a
//! refused one goes ahead once a policy allows it. So when `stop` exits with anything but
//! 0 (stopped) or 3 (already finished: final, no further call), it deletes what it
//! created, unless `--keep`. A set's preview that never went live is deleted in any case
//! (unless `--keep`): it was only a preview.

use crate::connect::Kube;
use crate::text::safe;
use flowstop_api::ExecutionStop;
use flowstop_api::exit;
use flowstop_api::set::ExecutionStopSet;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Exit codes for a signal, as a shell reports them (128 + the signal's number).
pub const INTERRUPTED: i32 = 130;
pub const TERMINATED: i32 = 143;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stop,
    Set,
}

impl Kind {
    fn resource(self) -> &'static str {
        match self {
            Kind::Stop => "executionstop",
            Kind::Set => "executionstopset",
        }
    }
}

#[derive(Clone, Debug)]
struct Object {
    kind: Kind,
    name: String,
    /// Whether it may act on executions: an ExecutionStop always, a set once it is sent
    /// live (false while it is a preview).
    live: bool,
}

/// The object this run created, if any. A create under way holds the lock until its
/// answer is in, so a run interrupted in the middle of one still learns the name.
#[derive(Clone, Default)]
pub struct Made(Arc<Mutex<Option<Object>>>);

impl Made {
    /// Creates `obj` and records it. The request runs to its end even if the command is
    /// interrupted meanwhile; nothing is recorded when the create is refused (a 409 is
    /// someone else's object, never deleted).
    pub async fn create<K>(&self, api: &Api<K>, obj: &K, kind: Kind) -> Result<K, kube::Error>
    where
        K: Resource + Clone + Debug + serde::Serialize + serde::de::DeserializeOwned,
        K: Send + Sync + 'static,
    {
        let mut slot = self.0.clone().lock_owned().await;
        let (api, obj) = (api.clone(), obj.clone());
        tokio::spawn(async move {
            let created = api.create(&PostParams::default(), &obj).await;
            if let Ok(o) = &created {
                *slot = Some(Object {
                    kind,
                    name: o.name_any(),
                    live: kind == Kind::Stop,
                });
            }
            created
        })
        .await
        .expect("the create task does not panic")
    }

    /// The set is about to be sent live.
    pub async fn live(&self) {
        if let Some(o) = self.0.lock().await.as_mut() {
            o.live = true;
        }
    }

    /// Called once, as the command exits with `code`: deletes what was created unless the
    /// run succeeded (or `keep`), and says on stderr what it did. Never changes the code.
    pub async fn settle(&self, k: &Kube, code: i32, keep: bool) {
        // A create under way finishes first (bounded: the cluster may be gone).
        let Ok(mut slot) = tokio::time::timeout(Duration::from_secs(10), self.0.lock()).await
        else {
            eprintln!(
                "a create was still under way when the command ended: look for what it may have left with kubectl flowstop get -n {}",
                safe(&k.namespace)
            );
            return;
        };
        let Some(o) = slot.take() else { return };
        let f = fate(code, o.live, keep);
        if f == Fate::Leave {
            return;
        }
        let what = format!("{}/{}", o.kind.resource(), safe(&o.name));
        let delete_it = format!(
            "kubectl delete {} {} -n {}",
            o.kind.resource(),
            safe(&o.name),
            safe(&k.namespace)
        );
        if f == Fate::Keep {
            if o.live {
                eprintln!(
                    "{what} kept (--keep): it may still act on executions (a failed stop tries again when its Secret changes or an hour later, an unfinished one goes on, a refused one goes ahead once a policy allows it); to stop that: {delete_it}"
                );
            } else {
                eprintln!(
                    "{what} kept (--keep): a preview (dryRun: true), it stops nothing unless spec.dryRun is set to false; to remove it: {delete_it}"
                );
            }
            return;
        }
        let deleted = match o.kind {
            Kind::Stop => delete::<ExecutionStop>(k, &o.name).await,
            Kind::Set => delete::<ExecutionStopSet>(k, &o.name).await,
        };
        match deleted {
            Ok(true) if !o.live => {
                eprintln!("{what} deleted: it was a preview only, nothing was stopped")
            }
            Ok(true) => eprintln!(
                "{what} deleted ({}): {}; a StopExecution already sent stays sent. --keep leaves it in place",
                why(code),
                match o.kind {
                    Kind::Stop => "it makes no further calls",
                    // The operator stops a deleted set's children from calling; the
                    // garbage collector removes them through their owner reference.
                    Kind::Set => {
                        "its ExecutionStops make no further calls, and the garbage collector deletes them"
                    }
                }
            ),
            Ok(false) => eprintln!("{what} is gone already"),
            Err(e) => eprintln!(
                "could not delete {what} ({}): it is still there and may go on acting; delete it with: {delete_it}",
                safe(&e.to_string())
            ),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// It succeeded: the object stays as the record, nothing said.
    Leave,
    /// It would be deleted, but --keep: say so, and how to delete it.
    Keep,
    Delete,
}

/// What becomes of the object created as the command exits with `code`. 0 and 3 are
/// outcomes (stopped; already finished, nothing to stop): the object is final and makes no
/// further call. Everything else after a create is a failure, a timeout, an interruption
/// or lost track (1): the object may go on acting, so it goes. A preview that never went
/// live goes whatever the code: it was only a preview.
fn fate(code: i32, live: bool, keep: bool) -> Fate {
    let succeeded = matches!(code, exit::STOPPED | exit::ALREADY_FINISHED);
    match () {
        () if succeeded && live => Fate::Leave,
        () if keep => Fate::Keep,
        () => Fate::Delete,
    }
}

/// Why the command is failing, for the line that says what it deleted.
fn why(code: i32) -> &'static str {
    match code {
        exit::FAILED => "the stop failed",
        exit::FORBIDDEN => {
            "no ExecutionStopPolicy allows it: it would have waited and gone ahead once one did"
        }
        exit::TIMEOUT => "--timeout passed before it was final",
        INTERRUPTED | TERMINATED => "the command was interrupted before it was final",
        _ => "the command could not follow it to the end",
    }
}

/// Deletes the object. A set's ExecutionStops go through their owner reference
/// (background propagation: the garbage collector deletes them where it runs), never by
/// label. `Ok(false)`: it was gone already.
async fn delete<K>(k: &Kube, name: &str) -> Result<bool, kube::Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + Debug,
    K: serde::de::DeserializeOwned,
    <K as Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(k.client.clone(), &k.namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let attempt = tokio::time::timeout(Duration::from_secs(15), api.delete(name, &params));
    match attempt.await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => Ok(false),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(kube::Error::Service(
            "no answer from the cluster within 15 s".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_live_object_of_a_successful_run_stays_unasked() {
        for code in [exit::STOPPED, exit::ALREADY_FINISHED] {
            assert_eq!(fate(code, true, false), Fate::Leave);
            assert_eq!(fate(code, true, true), Fate::Leave);
        }
        for code in [
            exit::ERROR,
            exit::USAGE,
            exit::FAILED,
            exit::FORBIDDEN,
            exit::TIMEOUT,
            exit::ABORTED,
            INTERRUPTED,
            TERMINATED,
        ] {
            assert_eq!(fate(code, true, false), Fate::Delete, "{code}");
            assert_eq!(fate(code, true, true), Fate::Keep, "{code}");
        }
    }

    #[test]
    fn a_preview_that_never_went_live_goes_unless_kept() {
        for code in [
            exit::STOPPED,
            exit::USAGE,
            exit::FAILED,
            exit::ABORTED,
            INTERRUPTED,
        ] {
            assert_eq!(fate(code, false, false), Fate::Delete, "{code}");
            assert_eq!(fate(code, false, true), Fate::Keep, "{code}");
        }
    }

    #[test]
    fn every_failure_says_why() {
        for code in [
            exit::ERROR,
            exit::FAILED,
            exit::FORBIDDEN,
            exit::TIMEOUT,
            INTERRUPTED,
            TERMINATED,
        ] {
            assert!(!why(code).is_empty());
        }
        assert_eq!(why(exit::TIMEOUT), "--timeout passed before it was final");
    }
}
