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
    /// A failure of either watch counts in `flowstop_watch_errors_total` (kinds
    /// ExecutionStopPolicy, Namespace).
    pub fn watch(
        client: &kube::Client,
        mode: Mode,
        metrics: std::sync::Arc<crate::telemetry::Metrics>,
    ) -> (Self, BoxFuture<'static, ()>) {
        let (policies, policies_writer) = reflector::store();
        let (namespaces, namespaces_writer) = reflector::store();
        let policy_watch = watcher(
            Api::<ExecutionStopPolicy>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .backoff(crate::watch::Patient::default())
        .reflect(policies_writer)
        .for_each({
            let metrics = metrics.clone();
            move |r| log_watch_error("ExecutionStopPolicy", r, metrics.clone())
        });
        let namespace_watch = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .backoff(crate::watch::Patient::default())
        .reflect(namespaces_writer)
        .for_each(move |r| log_watch_error("Namespace", r, metrics.clone()));
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

    /// Caches that have listed nothing but are synced: no policy, no namespace (each
    /// namespace is then read from the API server). For the shell's unit tests.
    #[cfg(test)]
    pub fn none(mode: Mode) -> Self {
        let (policies, mut policies_writer) = reflector::store();
        let (namespaces, mut namespaces_writer) = reflector::store();
        policies_writer.apply_watcher_event(&watcher::Event::InitDone);
        namespaces_writer.apply_watcher_event(&watcher::Event::InitDone);
        Self {
            mode,
            policies,
            namespaces,
        }
    }

    /// Waits until both caches have listed once: before that, no policy seen could mean
    /// "none exists" as well as "not read yet", and a verdict would allow too much.
    pub async fn synced(&self) {
        wait_ready(&self.policies).await;
        wait_ready(&self.namespaces).await;
    }

    /// Whether the policies allow an object in `ns` to stop executions of `flow`. A
    /// namespace the cache has not seen yet (created with the object, say) is read from the
    /// API server: judged without its labels, it would be refused or let through wrongly.
    pub async fn verdict(
        &self,
        client: &kube::Client,
        ns: &str,
        target: &(dyn Target + Sync),
        flow: &str,
        default: Option<&Endpoint>,
    ) -> Result<Verdict, kube::Error> {
        let labels = match self.namespaces.get(&ObjectRef::new(ns)) {
            Some(n) => n.labels().clone(),
            None => Api::<Namespace>::all(client.clone())
                .get_metadata_opt(ns)
                .await?
                .map(|n| n.labels().clone())
                .unwrap_or_default(),
        };
        let all = self.policies.state();
        let named: Vec<(String, &ExecutionStopPolicySpec)> =
            all.iter().map(|p| (p.name_any(), &p.spec)).collect();
        Ok(policy::evaluate(
            self.mode,
            &named,
            &Request {
                namespace: ns,
                namespace_labels: &labels,
                flow,
                region: policy::region_of(target, default),
                operator_credentials: target.credentials_secret_ref().is_none(),
            },
        ))
    }

    /// Both caches, for readiness: the operator is ready only once it can judge.
    pub fn stores(
        &self,
    ) -> (
        Store<ExecutionStopPolicy>,
        Store<PartialObjectMeta<Namespace>>,
    ) {
        (self.policies.clone(), self.namespaces.clone())
    }
}

/// The store's readiness signal wakes only its most recent waiter: poll now and then. A
/// store whose writer is gone never becomes ready (no verdict from a dead cache).
pub async fn wait_ready<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
            Ok(Ok(())) => return,
            Ok(Err(_)) => std::future::pending::<()>().await,
            Err(_) => {}
        }
    }
}

/// Until both watches have listed, nothing is judged (and /readyz says not ready): say why.
async fn log_watch_error<T>(
    kind: &'static str,
    r: Result<T, watcher::Error>,
    metrics: std::sync::Arc<crate::telemetry::Metrics>,
) {
    if let Err(e) = r {
        metrics.watch_failed(kind);
        tracing::warn!(error = %e, "cannot watch {kind} objects (is the CRD installed, and the ClusterRole up to date?)");
    }
}
