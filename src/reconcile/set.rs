//! The shell around `decide::set`: count the set's ExecutionStops from the cache, list the
//! matching executions when asked, create the ExecutionStops, write status.

use super::credentials::NoAccount;
use super::{Context, Error, MANAGER, credentials, limiter_key};
use crate::crd::set::{
    ChildCounts, ExecutionStopSet, ExecutionStopSetStatus, SET_LABEL, SetPhase, is_child,
};
use crate::crd::{ExecutionStop, ExecutionStopSpec, Phase};
use crate::decide::policy::Verdict;
use crate::decide::set::{Action, Decision, Input, Outcome, Page};
use crate::decide::{self, Reason};
use crate::ratelimit::BULK_HORIZON;
use fnf::{Account, ErrorKind, ListRequest};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A page of ListExecutions: within both the documented [1, 100] and the SDKs' "1–99".
const PAGE: u32 = 99;

/// ExecutionStops created at the same time.
const CREATES_IN_FLIGHT: usize = 16;

/// While a set is Stopping, its counts are written at most this often: a set of 1,000 is
/// not rewritten on each child's every step. Phase changes are written at once.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub struct SetContext {
    pub base: Arc<Context>,
    /// The ExecutionStops the operator watches, for counting a set's children.
    pub children: Store<ExecutionStop>,
    /// When each set's progress (by uid) was last written.
    pub progress_written: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl SetContext {
    pub fn new(base: Arc<Context>, children: Store<ExecutionStop>) -> Self {
        Self {
            base,
            children,
            progress_written: Default::default(),
        }
    }

    /// How long to hold back a progress-only write of this set, if at all.
    fn hold_back(
        &self,
        uid: &str,
        old: Option<SetPhase>,
        new: Option<SetPhase>,
    ) -> Option<Duration> {
        let mut written = self
            .progress_written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !(old == Some(SetPhase::Stopping) && new == Some(SetPhase::Stopping)) {
            written.remove(uid);
            return None;
        }
        let now = Instant::now();
        match written.get(uid) {
            Some(at) if now.duration_since(*at) < PROGRESS_EVERY => {
                Some(PROGRESS_EVERY - now.duration_since(*at))
            }
            _ => {
                written.insert(uid.to_string(), now);
                None
            }
        }
    }
}

/// The ExecutionStop of `execution` in `set`: the same name every time, so a restart that
/// creates it again finds it instead of making a second one. 64 bits of SHA-256: the chance
/// that two of a set's 10,000 executions share a name is about 3 in 10^12 (and a name
/// taken all the same is reported as taken, never counted).
pub fn child_name(set: &str, execution: &str) -> String {
    let digest = Sha256::digest(execution.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{set}-{hex}")
}

fn children(
    store: &Store<ExecutionStop>,
    set: &ExecutionStopSet,
) -> (ChildCounts, BTreeSet<String>) {
    let mut counts = ChildCounts::default();
    let mut names = BTreeSet::new();
    for c in store.state().iter().filter(|c| is_child(set, c)) {
        names.insert(c.spec.execution_name.clone());
        counts.total += 1;
        match c.status.as_ref().and_then(|s| s.phase) {
            None | Some(Phase::Pending) => counts.pending += 1,
            Some(Phase::Stopping) => counts.stopping += 1,
            Some(Phase::Retrying) => counts.retrying += 1,
            Some(Phase::Stopped) => counts.stopped += 1,
            Some(Phase::AlreadyFinished) => counts.already_finished += 1,
            Some(Phase::Failed) => counts.failed += 1,
        }
    }
    (counts, names)
}

struct Pass<'a> {
    ctx: &'a SetContext,
    api: Api<ExecutionStopSet>,
    obj: &'a ExecutionStopSet,
    status: ExecutionStopSetStatus,
    stored: Option<ExecutionStopSetStatus>,
    resource_version: String,
    account: Option<(Account, Option<String>)>,
    /// What the ExecutionStopPolicies say of this set, as of the start of the pass.
    verdict: Verdict,
}

impl Pass<'_> {
    fn decide(&self, observed: &Outcome) -> Decision {
        let (counts, existing) = children(&self.ctx.children, self.obj);
        let credentials = match &self.account {
            None => decide::Credentials::Unread,
            Some((_, None)) => decide::Credentials::Operator,
            Some((_, Some(v))) => decide::Credentials::Secret(v),
        };
        decide::set::decide(&Input {
            spec: &self.obj.spec,
            status: &self.status,
            generation: self.obj.metadata.generation.unwrap_or(1),
            credentials,
            outcome: observed,
            children: &counts,
            existing: &existing,
            now: Timestamp::now(),
            jitter: rand::random::<f64>(),
            policy: &self.ctx.base.policy,
            verdict: &self.verdict,
        })
    }

    async fn write(&mut self) -> Result<(), Error> {
        if self.stored.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": "flowstop.dev/v1alpha1",
            "kind": "ExecutionStopSet",
            "metadata": {"resourceVersion": self.resource_version},
            "status": &self.status,
        });
        match self
            .api
            .patch_status(
                &self.obj.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(o) => {
                self.ctx.base.metrics.status_written();
                self.resource_version = o.resource_version().unwrap_or_default();
                self.stored = Some(self.status.clone());
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    fn publish(&self, (warning, reason, note): (bool, Reason, String)) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.as_str().into(),
            note: Some(note.chars().take(1000).collect()),
            action: "StopExecutions".into(),
            secondary: None,
        };
        let (recorder, reference) = (self.ctx.base.recorder.clone(), self.obj.object_ref(&()));
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "cannot publish event");
            }
        });
    }

    async fn read_credentials(&mut self) -> Result<Outcome, Error> {
        let ns = self.obj.namespace().unwrap_or_default();
        Ok(
            match credentials::account(&self.ctx.base, &ns, &self.obj.spec).await? {
                Ok(account) => {
                    self.account = Some(account);
                    Outcome::Nothing
                }
                Err(NoAccount::Unusable(m)) => Outcome::Unusable(m),
                Err(NoAccount::NotAllowed(m)) => Outcome::EndpointNotAllowed(m),
                Err(NoAccount::Missing(m)) => Outcome::NoCredentials(m),
            },
        )
    }

    /// One page of matching executions, through the shared limiter. A slot more than a
    /// second away is not waited for: the worker goes back to other objects, and this set
    /// comes again when the slot may be free (`Err`).
    async fn list(
        &self,
        started_before: Option<Timestamp>,
        next_token: Option<String>,
    ) -> Result<Outcome, Duration> {
        let ctx = &self.ctx.base;
        let account = &self
            .account
            .as_ref()
            .expect("credentials read before a call")
            .0;
        // ListExecutions is one of the service's "other operations", as StopExecution is:
        // one bucket, so one limiter, or a set listing while its children stop would be
        // throttled by its own stops.
        let key = limiter_key(account, "stop");
        ctx.metrics
            .waited(ctx.stop_limiter.acquire_within(&key, BULK_HORIZON).await?);
        let sel = &self.obj.spec.selector;
        let time = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let req = ListRequest {
            flow_name: self.obj.spec.flow_name.clone(),
            status: Some(sel.status.unwrap_or_default().as_str().into()),
            execution_name_prefix: sel.execution_name_prefix.clone(),
            started_time_begin: sel.started_after.as_ref().map(|t| time(t.0)),
            started_time_end: started_before.map(time),
            next_token,
            limit: Some(PAGE),
        };
        let started = Instant::now();
        let page = ctx.fnf.list(account, &req).await;
        let outcome = match &page {
            Ok(_) => "ok",
            Err(e) => e.kind().as_str(),
        };
        ctx.metrics
            .call("ListExecutions", outcome, started.elapsed().as_secs_f64());
        Ok(Outcome::Listed(match page {
            Ok(p) => {
                ctx.stop_limiter.succeeded(&key);
                Ok(Page {
                    names: p.executions.into_iter().filter_map(|e| e.name).collect(),
                    next_token: p.next_token,
                })
            }
            Err(e) => {
                if e.kind() == ErrorKind::Throttled {
                    ctx.stop_limiter.throttled(&key);
                }
                Err(e)
            }
        }))
    }

    /// One ExecutionStop per execution; one this set created already is left as it is. A
    /// name held by anything else is reported, never taken for a child.
    async fn create(&self, executions: Vec<String>) -> Result<Outcome, Error> {
        let set = self.obj;
        let ns = set.namespace().unwrap_or_default();
        let api: Api<ExecutionStop> = Api::namespaced(self.ctx.base.client.clone(), &ns);
        let owner = set
            .controller_owner_ref(&())
            .expect("a stored set has a uid");
        let spec = &set.spec;
        let taken = futures::stream::iter(executions)
            .map(|execution| {
                let child = ExecutionStop {
                    metadata: ObjectMeta {
                        name: Some(child_name(&set.name_any(), &execution)),
                        namespace: Some(ns.clone()),
                        labels: Some([(SET_LABEL.to_string(), set.name_any())].into()),
                        owner_references: Some(vec![owner.clone()]),
                        ..ObjectMeta::default()
                    },
                    spec: ExecutionStopSpec {
                        flow_name: spec.flow_name.clone(),
                        execution_name: execution,
                        cause: spec.cause.clone(),
                        error: spec.error.clone(),
                        region_id: spec.region_id.clone(),
                        endpoint: spec.endpoint.clone(),
                        credentials_secret_ref: spec.credentials_secret_ref.clone(),
                        max_attempts: spec.max_attempts,
                    },
                    status: None,
                };
                let api = api.clone();
                async move {
                    let name = child.name_any();
                    match api.create(&PostParams::default(), &child).await {
                        Ok(_) => Ok(None),
                        Err(kube::Error::Api(e)) if e.code == 409 => {
                            match api.get_opt(&name).await? {
                                Some(there) if is_child(set, &there) => Ok(None),
                                // Gone meanwhile: the next pass creates it.
                                None => Err(Error::Conflict),
                                Some(_) => Ok(Some(child.spec.execution_name)),
                            }
                        }
                        Err(e) => Err(Error::from(e)),
                    }
                }
            })
            .buffer_unordered(CREATES_IN_FLIGHT)
            .try_collect::<Vec<Option<String>>>()
            .await?;
        let mut taken: Vec<String> = taken.into_iter().flatten().collect();
        taken.sort();
        for execution in &taken {
            tracing::warn!(
                set = set.name_any(),
                execution,
                child = child_name(&set.name_any(), execution),
                "an ExecutionStop name this set needs is taken by an object it did not create"
            );
        }
        Ok(Outcome::Created { taken })
    }
}

#[tracing::instrument(skip_all, fields(namespace = obj.namespace(), name = obj.name_any()))]
pub async fn reconcile(
    obj: Arc<ExecutionStopSet>,
    ctx: Arc<SetContext>,
) -> Result<controller::Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(controller::Action::await_change());
    }
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ExecutionStopSet> = Api::namespaced(ctx.base.client.clone(), &ns);
    // A listing goes a page a pass and comes straight back: the watch cache may not show
    // the last page's NextToken yet, and reading that page again would waste a call and
    // lose the status write. Read it fresh.
    let obj = match obj.status.as_ref().and_then(|s| s.listing.as_ref()) {
        Some(_) => match api.get_opt(&obj.name_any()).await? {
            Some(fresh) => Arc::new(fresh),
            None => return Ok(controller::Action::await_change()),
        },
        None => obj,
    };
    let verdict = ctx
        .base
        .verdict(&ns, &obj.spec, &obj.spec.flow_name)
        .await?;
    let mut pass = Pass {
        ctx: &ctx,
        api,
        obj: &obj,
        status: obj.status.clone().unwrap_or_default(),
        stored: obj.status.clone(),
        resource_version: obj.resource_version().unwrap_or_default(),
        account: None,
        verdict,
    };
    let mut observed = Outcome::Nothing;
    let mut events = vec![];
    let then = loop {
        let d = pass.decide(&observed);
        pass.status = d.status;
        if d.event.as_ref().is_some_and(|e| e.1 == Reason::Forbidden) {
            ctx.base.metrics.denied("ExecutionStopSet");
        }
        events.extend(d.event);
        observed = match d.action {
            Action::Done => break controller::Action::await_change(),
            Action::Wait(w) => break controller::Action::requeue(w),
            Action::ReadCredentials => pass.read_credentials().await?,
            Action::List {
                started_before,
                next_token,
            } => {
                // The snapshot's time is on record before anything is listed.
                pass.write().await?;
                match pass.list(started_before, next_token).await {
                    Ok(listed) => listed,
                    // No slot within a second: give the worker back, come again.
                    Err(later) => break controller::Action::requeue(later),
                }
            }
            Action::Create(executions) => pass.create(executions).await?,
        };
    };
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    let old = pass.stored.as_ref().and_then(|s| s.phase);
    if let Some(wait) = ctx.hold_back(uid, old, pass.status.phase) {
        // Progress only: written on the next pass, at most a second from now.
        ctx.base.metrics.reconciled("ok");
        return Ok(controller::Action::requeue(wait));
    }
    pass.write().await?;
    for e in events {
        pass.publish(e);
    }
    ctx.base.metrics.reconciled("ok");
    Ok(then)
}

pub fn error_policy(
    obj: Arc<ExecutionStopSet>,
    error: &Error,
    ctx: Arc<SetContext>,
) -> controller::Action {
    ctx.base.metrics.reconciled(error.category());
    tracing::warn!(name = obj.name_any(), namespace = obj.namespace(), %error, "reconcile failed");
    match error {
        Error::Conflict => controller::Action::requeue(Duration::from_millis(200)),
        Error::Kube(_) => controller::Action::requeue(Duration::from_secs(5)),
    }
}
