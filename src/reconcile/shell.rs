//! What every kind's pass shares, written once: the status write, Events, the credentials
//! the decisions see, and the error policy. A kind's own pass keeps only what differs.

use super::{Error, MANAGER};
use crate::decide::{self, Credentials};
use crate::telemetry::Metrics;
use fnf::Account;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// One object's status as the API server holds it (as of our last read or write), and the
/// one way it is written.
pub struct Stored<K, S> {
    api: Api<K>,
    name: String,
    resource_version: String,
    status: Option<S>,
}

impl<K, S> Stored<K, S>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq + Clone,
{
    pub fn new(api: Api<K>, obj: &K, status: Option<S>) -> Self {
        Self {
            api,
            name: obj.name_any(),
            resource_version: obj.resource_version().unwrap_or_default(),
            status,
        }
    }

    pub fn status(&self) -> Option<&S> {
        self.status.as_ref()
    }

    /// Server-side apply of the whole status, conditional on the resourceVersion we read,
    /// so a second writer (an old leader, say) loses instead of overwriting. Nothing is
    /// sent when the status is what the server holds.
    pub async fn write(&mut self, status: &S, metrics: &Metrics) -> Result<(), Error> {
        if self.status.as_ref() == Some(status) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"resourceVersion": self.resource_version},
            "status": status,
        });
        match self
            .api
            .patch_status(
                &self.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(o) => {
                metrics.status_written();
                self.resource_version = o.resource_version().unwrap_or_default();
                self.status = Some(status.clone());
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict),
            Err(e) => Err(e.into()),
        }
    }
}

/// Deletes a final object whose TTL has passed: this very object (its uid a precondition,
/// so a new one of the same name is never taken for it), never anything in the cloud.
pub async fn delete<K>(client: &kube::Client, obj: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&obj.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(
                name = obj.name_any(),
                namespace = obj.namespace(),
                "deleted: its ttlSecondsAfterFinished has passed"
            );
            Ok(())
        }
        // Gone already, or a new object of that name: nothing of ours to delete.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Publishes an Event on `obj`. Best effort and off the critical path: a stop never waits
/// for its Events, and the note is bounded.
pub fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    event: decide::Event,
    action: &'static str,
) {
    let event = Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.as_str().into(),
        note: Some(event.note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    let (recorder, reference) = (recorder.clone(), obj.object_ref(&()));
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
    });
}

/// What the decisions know of the credentials read in this pass (if any).
pub fn credentials(account: &Option<(Account, Option<String>)>) -> Credentials<'_> {
    match account {
        None => Credentials::Unread,
        Some((_, None)) => Credentials::Operator,
        Some((_, Some(version))) => Credentials::Secret(version),
    }
}

/// After a failed pass: a lost write race is retried at once (the object changed, so its
/// next pass reads the new version), anything else after a pause.
pub fn error_policy<K: ResourceExt>(
    obj: &K,
    error: &Error,
    metrics: &Metrics,
) -> controller::Action {
    metrics.reconciled(error.category());
    tracing::warn!(name = obj.name_any(), namespace = obj.namespace(), %error, "reconcile failed");
    match error {
        Error::Conflict => controller::Action::requeue(Duration::from_millis(200)),
        Error::Kube(_) => controller::Action::requeue(Duration::from_secs(5)),
    }
}
