//! The shell around `decide::set`: count the set's ExecutionStops from the ledger, list the
//! matching executions when asked, create the ExecutionStops, write status.

use super::shell::{self, Stored};
use super::{Context, Error, credentials, limiter_key};
use crate::crd::set::{ExecutionStopSet, ExecutionStopSetStatus, SET_LABEL, is_child};
use crate::crd::{ExecutionStop, ExecutionStopSpec};
use crate::decide::Reason;
use crate::decide::policy::Verdict;
use crate::decide::set::{Action, Decision, Input, Outcome, Pace, Page};
use crate::ratelimit::BULK_HORIZON;
use fnf::{Account, ErrorKind, ListRequest};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A page of ListExecutions: within both the documented [1, 100] and the SDKs' "1–99".
const PAGE: u32 = 99;

/// ExecutionStops created at the same time.
const CREATES_IN_FLIGHT: usize = 16;

pub struct SetContext {
    pub base: Arc<Context>,
    /// Every ExecutionStop the operator watches in this scope, by set: a set's children.
    pub ledger: crate::watch::SharedLedger,
    /// The ExecutionStops' cache of the same watch: ready once the ledger holds every
    /// object. Until then a set's children cannot be counted.
    pub stops: Store<ExecutionStop>,
    /// When each set's progress (by uid) was last written (`decide::set::pace`).
    pub progress_written: Mutex<HashMap<String, Timestamp>>,
}

impl SetContext {
    pub fn new(base: Arc<Context>, scope: &crate::watch::Scope) -> Self {
        Self {
            base,
            ledger: scope.ledger.clone(),
            stops: scope.stops.clone(),
            progress_written: Default::default(),
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

struct Pass<'a> {
    ctx: &'a SetContext,
    obj: &'a ExecutionStopSet,
    status: ExecutionStopSetStatus,
    stored: Stored<ExecutionStopSet, ExecutionStopSetStatus>,
    account: Option<(Account, Option<String>)>,
    /// What the ExecutionStopPolicies say of this set, as of the start of the pass.
    verdict: Verdict,
    /// Pages of ListExecutions read in this pass.
    pages: u32,
    /// Time this pass has spent listing: waiting for slots and for ListExecutions.
    listing: Duration,
}

impl Pass<'_> {
    fn decide(&self, observed: &Outcome) -> Decision {
        // Counted from events as they come, never by scanning: a pass costs the same for a
        // set of 10 and of 10,000.
        let counts = self.ctx.ledger.lock().counts(self.obj);
        let set_name = self.obj.name_any();
        let existing = |execution: &str| {
            self.ctx
                .ledger
                .lock()
                .has_child(self.obj, &child_name(&set_name, execution))
        };
        crate::decide::set::decide(&Input {
            spec: &self.obj.spec,
            status: &self.status,
            generation: self.obj.metadata.generation.unwrap_or(1),
            credentials: shell::credentials(&self.account),
            outcome: observed,
            children: &counts,
            has_child: &existing,
            pages_this_pass: self.pages,
            pass_listing: self.listing,
            now: Timestamp::now(),
            jitter: rand::random::<f64>(),
            tuning: &self.ctx.base.tuning,
            verdict: &self.verdict,
            endpoints: &self.ctx.base.endpoints,
            gitops_managed: crate::decide::retention::managed_by_gitops(
                self.obj.labels(),
                self.obj.annotations(),
            ),
        })
    }

    async fn write(&mut self) -> Result<(), Error> {
        self.stored
            .write(&self.status, &self.ctx.base.metrics)
            .await
    }

    async fn read_credentials(&mut self) -> Result<Outcome, Error> {
        let ns = self.obj.namespace().unwrap_or_default();
        Ok(
            match credentials::account(&self.ctx.base, &ns, &self.obj.spec).await? {
                Ok(account) => {
                    self.account = Some(account);
                    Outcome::Nothing
                }
                Err(cannot) => Outcome::Cannot(cannot),
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
                        options: spec.options.clone(),
                        ttl_seconds_after_finished: None,
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
    // The sets' watch may sync before the ExecutionStops' does: counting children from a
    // half-listed ledger would write wrong counts (and a restart would write at rest).
    // Polled: the cache's readiness wakes only its latest waiter, and several sets (and
    // /readyz) wait at once.
    super::policy::wait_ready(&ctx.stops).await;
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ExecutionStopSet> = Api::namespaced(ctx.base.client.clone(), &ns);
    let Some(obj) = current(obj, &api).await? else {
        return Ok(controller::Action::await_change());
    };
    let verdict = ctx
        .base
        .verdict(&ns, &obj.spec, &obj.spec.flow_name)
        .await?;
    let mut pass = Pass {
        ctx: &ctx,
        obj: &obj,
        status: obj.status.clone().unwrap_or_default(),
        stored: Stored::new(api, &obj, obj.status.clone()),
        account: None,
        verdict,
        pages: 0,
        listing: Duration::ZERO,
    };
    let (then, events) = match pass.run().await? {
        Ran::Deleted => return Ok(controller::Action::await_change()),
        Ran::Then(then, events) => (then, events),
    };
    let then = pass.paced_write(then).await?;
    for event in events {
        shell::publish(&ctx.base.recorder, &*obj, event, "StopExecutions");
    }
    ctx.base.metrics.reconciled("ok");
    Ok(then)
}

/// A listing goes some pages a pass and comes straight back: the watch cache may not show
/// the last pass's NextToken yet, and reading those pages again would waste calls and lose
/// the status write. Such a set is read fresh (none: it is gone).
async fn current(
    obj: Arc<ExecutionStopSet>,
    api: &Api<ExecutionStopSet>,
) -> Result<Option<Arc<ExecutionStopSet>>, Error> {
    if obj
        .status
        .as_ref()
        .and_then(|s| s.listing.as_ref())
        .is_none()
    {
        return Ok(Some(obj));
    }
    Ok(api.get_opt(&obj.name_any()).await?.map(Arc::new))
}

/// How a set's pass ended.
enum Ran {
    /// Its TTL had passed: it is deleted.
    Deleted,
    /// When to come back, and the Events to publish once the status is written.
    Then(controller::Action, Vec<crate::decide::Event>),
}

impl Pass<'_> {
    /// Decides and performs until the pass ends: `PAGES_PER_PASS` pages at most, then
    /// waiting or done.
    async fn run(&mut self) -> Result<Ran, Error> {
        let mut observed = Outcome::Nothing;
        let mut events = vec![];
        let then = loop {
            let d = self.decide(&observed);
            self.status = d.status;
            if d.events.iter().any(|e| e.reason == Reason::Forbidden) {
                self.ctx.base.metrics.denied("ExecutionStopSet");
            }
            events.extend(d.events);
            observed = match d.action {
                Action::Done => break controller::Action::await_change(),
                Action::Delete => {
                    shell::delete(&self.ctx.base.client, self.obj).await?;
                    return Ok(Ran::Deleted);
                }
                Action::Wait(w) => break controller::Action::requeue(w),
                Action::ReadCredentials => self.read_credentials().await?,
                Action::List {
                    started_before,
                    next_token,
                } => {
                    // Before the pass's first page the status decided so far goes on
                    // record (nothing is sent if it is unchanged): the snapshot's time
                    // before anything is listed, and a pass that started from a stale view
                    // of the set fails here (409) before it spends a call. The pages read
                    // go on record when the pass ends, not one write each.
                    if self.pages == 0 {
                        self.write().await?;
                    }
                    let t0 = Instant::now();
                    let listed = self.list(started_before, next_token).await;
                    self.listing += t0.elapsed();
                    match listed {
                        Ok(listed) => {
                            self.pages += 1;
                            listed
                        }
                        // No slot within a second: give the worker back, come again.
                        Err(later) => break controller::Action::requeue(later),
                    }
                }
                Action::Create(executions) => self.create(executions).await?,
            };
        };
        Ok(Ran::Then(then, events))
    }

    /// Writes the pass's status, unless it is progress only and not due yet
    /// (`decide::set::pace`): then it is a later pass's.
    async fn paced_write(&mut self, then: controller::Action) -> Result<controller::Action, Error> {
        let uid = self.obj.metadata.uid.as_deref().unwrap_or_default();
        let now = Timestamp::now();
        let last = self.ctx.progress(uid, None);
        Ok(
            match crate::decide::set::pace(self.stored.status(), &self.status, last, now) {
                Pace::Unchanged => then,
                Pace::Hold(wait) => controller::Action::requeue(wait),
                Pace::Write { progress } => {
                    self.write().await?;
                    self.ctx.progress(uid, Some(progress.then_some(now)));
                    then
                }
            },
        )
    }
}

impl SetContext {
    /// When this set's progress was last written; with `record`, first sets it (a time)
    /// or forgets it (`None`: the last write was not progress only).
    fn progress(&self, uid: &str, record: Option<Option<Timestamp>>) -> Option<Timestamp> {
        let mut written = self
            .progress_written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match record {
            Some(Some(at)) => {
                written.insert(uid.to_string(), at);
            }
            Some(None) => {
                written.remove(uid);
            }
            None => {}
        }
        written.get(uid).copied()
    }
}

pub fn error_policy(
    obj: Arc<ExecutionStopSet>,
    error: &Error,
    ctx: Arc<SetContext>,
) -> controller::Action {
    shell::error_policy(&*obj, error, &ctx.base.metrics)
}
