//! The shell's side of tenancy: caches of the ExecutionStopPolicies and of the namespaces'
//! labels, and the verdict `decide::policy` gives for an object from them. No API call is
//! made per object: both are watched.

use crate::crd::Target;
use crate::crd::policy::{ExecutionStopPolicy, ExecutionStopPolicySpec};
use crate::decide::policy::{self, Mode, Request, Verdict};
use fnf::Endpoint;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::time::Duration;

pub struct Policies {
    pub mode: Mode,
    policies: Store<ExecutionStopPolicy>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
}

impl Policies {
    /// The caches, and the watches that fill them (the caller runs those).
    pub fn watch(client: &kube::Client, mode: Mode) -> (Self, BoxFuture<'static, ()>) {
        let (policies, policies_writer) = reflector::store();
        let (namespaces, namespaces_writer) = reflector::store();
        let policy_watch = watcher(
            Api::<ExecutionStopPolicy>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .reflect(policies_writer)
        .for_each(|_| async {});
        let namespace_watch = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .reflect(namespaces_writer)
        .for_each(|_| async {});
        let run = futures::future::join(policy_watch, namespace_watch)
            .map(|_| ())
            .boxed();
        (
            Self {
                mode,
                policies,
                namespaces,
            },
            run,
        )
    }

    /// Waits until both caches have listed once: before that, no policy seen could mean
    /// "none exists" as well as "not read yet", and a verdict would allow too much.
    pub async fn synced(&self) {
        wait_ready(&self.policies).await;
        wait_ready(&self.namespaces).await;
    }

    /// Whether the policies allow an object in `ns` to stop executions of `flow`.
    pub fn verdict(
        &self,
        ns: &str,
        target: &dyn Target,
        flow: &str,
        default: Option<&Endpoint>,
    ) -> Verdict {
        let labels = self
            .namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        let all = self.policies.state();
        let named: Vec<(String, &ExecutionStopPolicySpec)> =
            all.iter().map(|p| (p.name_any(), &p.spec)).collect();
        policy::evaluate(
            self.mode,
            &named,
            &Request {
                namespace: ns,
                namespace_labels: &labels,
                flow,
                region: policy::region_of(target, default),
                operator_credentials: target.credentials_secret_ref().is_none(),
            },
        )
    }
}

/// The store's readiness signal wakes only its most recent waiter: poll now and then.
async fn wait_ready<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    while tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready())
        .await
        .is_err()
    {}
}
