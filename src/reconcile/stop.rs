//! The ExecutionStop's pass: what only a single stop does (the attempt record before the
//! call, StopExecution and DescribeExecution, the set it belongs to, the lanes).

use super::shell::{self, Stored};
use super::{Context, Error, credentials, limiter_key};
use crate::crd::set::{SET_LABEL, owner_set};
use crate::crd::{ExecutionStop, ExecutionStopSet, ExecutionStopStatus};
use crate::decide::policy::Verdict;
use crate::decide::{self, Action, Decision, Input, Outcome};
use crate::ratelimit::{Lane, RateLimiter};
use fnf::{Account, ErrorKind, Execution, FnfError, StopRequest};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller;
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One object's pass. `status` is always the newest status `decide` returned: every
/// decision is made on the outcome of the one before it, never on an older copy.
struct Pass<'a> {
    ctx: &'a Context,
    obj: ExecutionStop,
    status: ExecutionStopStatus,
    stored: Stored<ExecutionStop, ExecutionStopStatus>,
    account: Option<(Account, Option<String>)>,
    /// Events of this pass, published (folded) when it ends.
    events: Vec<decide::Event>,
    /// The ExecutionStopSet that created this object is gone.
    abandoned: bool,
    /// What the ExecutionStopPolicies say of this object, as of the last look.
    verdict: Verdict,
}

/// Whether the ExecutionStopSet that created this object is gone (or going). The cache
/// answers when it has the set; otherwise the API server does, so a lagging cache never
/// abandons a live set's ExecutionStop.
///
/// A set deleted with `--cascade=orphan` is not going for its children: Kubernetes' orphan
/// means they live on as objects of their own (the garbage collector removes their
/// ownerReference), so they carry on.
async fn abandoned(ctx: &Context, obj: &ExecutionStop) -> Result<bool, Error> {
    let Some(owner) = owner_set(obj) else {
        return Ok(false);
    };
    let ns = obj.namespace().unwrap_or_default();
    let key = ObjectRef::<ExecutionStopSet>::new(&owner.name).within(&ns);
    let live = |set: &ExecutionStopSet| {
        set.metadata.uid.as_ref() == Some(&owner.uid)
            && (set.metadata.deletion_timestamp.is_none()
                || set.finalizers().iter().any(|f| f == "orphan"))
    };
    let cached = ctx
        .sets
        .get()
        .into_iter()
        .flatten()
        .find_map(|s| s.get(&key));
    if cached.as_deref().is_some_and(live) {
        return Ok(false);
    }
    let api: Api<ExecutionStopSet> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(!api.get_opt(&owner.name).await?.as_ref().is_some_and(live))
}

impl Pass<'_> {
    fn decide(&self, observed: &Outcome) -> Decision {
        decide::decide(&Input {
            spec: &self.obj.spec,
            status: &self.status,
            generation: self.obj.metadata.generation.unwrap_or(1),
            uid: self.obj.metadata.uid.as_deref().unwrap_or(""),
            abandoned: self.abandoned,
            created: self
                .obj
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0),
            credentials: shell::credentials(&self.account),
            outcome: observed,
            now: Timestamp::now(),
            jitter: rand::random::<f64>(),
            tuning: &self.ctx.tuning,
            verdict: &self.verdict,
            endpoints: &self.ctx.endpoints,
            gitops_managed: decide::retention::managed_by_gitops(
                self.obj.labels(),
                self.obj.annotations(),
            ),
        })
    }

    async fn look_at_policies(&mut self) -> Result<(), Error> {
        let ns = self.obj.namespace().unwrap_or_default();
        let spec = &self.obj.spec;
        self.verdict = self.ctx.verdict(&ns, spec, &spec.flow_name).await?;
        Ok(())
    }

    /// Takes a decision's status as the current one, and keeps its event.
    fn adopt(&mut self, d: &Decision) {
        self.status = d.status.clone();
        self.events.extend(d.event.clone());
        if d.event
            .as_ref()
            .is_some_and(|e| e.reason == decide::Reason::Forbidden)
        {
            self.ctx.metrics.denied("ExecutionStop");
        }
        if d.retry {
            self.ctx.metrics.retry();
        }
    }

    async fn write(&mut self) -> Result<(), Error> {
        self.stored.write(&self.status, &self.ctx.metrics).await
    }

    /// Writes what the pass decided, publishes its events and says when to come back.
    async fn finish(&mut self, then: controller::Action) -> Result<controller::Action, Error> {
        self.write().await?;
        // A set's ExecutionStop reports only trouble: its set tells the story of all of them
        // (its own Events and counts), and a Normal Event per child would be a fourth API
        // write per execution.
        let of_set = owner_set(&self.obj).is_some();
        for event in decide::fold_events(std::mem::take(&mut self.events)) {
            if of_set && !event.warning {
                continue;
            }
            shell::publish(&self.ctx.recorder, &self.obj, event, "StopExecution");
        }
        self.ctx.metrics.reconciled("ok");
        Ok(then)
    }

    /// Endpoint and keys, read once per pass; what was seen instead when they cannot be had.
    async fn read_credentials(&mut self) -> Result<Outcome, Error> {
        let ns = self.obj.namespace().unwrap_or_default();
        Ok(
            match credentials::account(self.ctx, &ns, &self.obj.spec).await? {
                Ok(account) => {
                    self.account = Some(account);
                    Outcome::Nothing
                }
                Err(cannot) => Outcome::Cannot(cannot),
            },
        )
    }

    /// The ExecutionStops of a set wait behind single ones for the quota (and are
    /// reconciled by workers of their own: see `run::controllers`).
    fn lane(&self) -> Lane {
        lane_of(&self.obj)
    }

    fn account(&self) -> &Account {
        // `decide` asks for calls only once the credentials have been read.
        &self
            .account
            .as_ref()
            .expect("credentials read before a call")
            .0
    }

    async fn call_stop(&self, request_id: String) -> Outcome {
        let account = self.account();
        let key = limiter_key(account, "stop");
        let req = StopRequest {
            flow_name: self.obj.spec.flow_name.clone(),
            execution_name: self.obj.spec.execution_name.clone(),
            cause: self.obj.spec.options.cause.clone(),
            error: self.obj.spec.options.error.clone(),
            request_id: Some(request_id),
        };
        let started = Instant::now();
        let result = self.ctx.fnf.stop(account, &req).await;
        self.after_call(
            "StopExecution",
            &key,
            &self.ctx.stop_limiter,
            &result,
            started,
        );
        Outcome::Stop(result)
    }

    async fn call_describe(&self, wait: u32) -> Outcome {
        let account = self.account();
        let key = limiter_key(account, "describe");
        self.ctx
            .metrics
            .waited(self.ctx.describe_limiter.acquire(&key, self.lane()).await);
        let started = Instant::now();
        let spec = &self.obj.spec;
        let result = self
            .ctx
            .fnf
            .describe(account, &spec.flow_name, &spec.execution_name, wait)
            .await;
        self.after_call(
            "DescribeExecution",
            &key,
            &self.ctx.describe_limiter,
            &result,
            started,
        );
        Outcome::Describe(result)
    }

    fn after_call(
        &self,
        action: &str,
        key: &str,
        limiter: &RateLimiter,
        r: &Result<Execution, FnfError>,
        started: Instant,
    ) {
        let outcome = match r {
            Ok(_) => "ok",
            Err(e) => e.kind().as_str(),
        };
        self.ctx
            .metrics
            .call(action, outcome, started.elapsed().as_secs_f64());
        match r {
            Err(e) if e.kind() == ErrorKind::Throttled => limiter.throttled(key),
            Ok(_) => limiter.succeeded(key),
            Err(_) => {}
        }
        tracing::debug!(action, outcome, "fnf call");
    }
}

fn lane_of(obj: &ExecutionStop) -> Lane {
    if obj.labels().contains_key(SET_LABEL) {
        Lane::Bulk
    } else {
        Lane::Interactive
    }
}

/// One pass over an ExecutionStop, by the controller of `lane`. An object whose set label
/// was just added or removed belongs to the other lane's controller: this one leaves it.
#[tracing::instrument(skip_all, fields(namespace = obj.namespace(), name = obj.name_any()))]
pub async fn reconcile(
    obj: Arc<ExecutionStop>,
    ctx: Arc<Context>,
    lane: Lane,
) -> Result<controller::Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ExecutionStop> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(obj) = current(&obj, &api, lane).await? else {
        return Ok(controller::Action::await_change());
    };
    let mut pass = Pass {
        ctx: &ctx,
        abandoned: abandoned(&ctx, &obj).await?,
        status: obj.status.clone().unwrap_or_default(),
        stored: Stored::new(api, &obj, obj.status.clone()),
        obj,
        account: None,
        events: vec![],
        verdict: Verdict::Allowed,
    };
    pass.look_at_policies().await?;
    pass.run().await
}

/// The object to act on: none when it belongs to the other lane's controller. The watch
/// cache may lag our own last write: an attempt that looks in flight may be finished
/// already, so such an object is read fresh first.
async fn current(
    obj: &ExecutionStop,
    api: &Api<ExecutionStop>,
    lane: Lane,
) -> Result<Option<ExecutionStop>, Error> {
    if lane_of(obj) != lane {
        return Ok(None);
    }
    if obj
        .status
        .as_ref()
        .is_some_and(|s| s.pending_request_id.is_some())
    {
        let fresh = api.get_opt(&obj.name_any()).await?;
        return Ok(fresh.filter(|f| lane_of(f) == lane));
    }
    Ok(Some(obj.clone()))
}

impl Pass<'_> {
    /// Decides and performs until the pass ends (a final or waiting decision, or the
    /// calls-per-pass budget), writing status as it goes.
    async fn run(mut self) -> Result<controller::Action, Error> {
        let mut observed = Outcome::Nothing;
        let mut calls = 0;
        loop {
            let mut d = self.decide(&observed);
            if let Action::Stop { .. } = d.action {
                if decide::yields(calls, &d.action, &self.ctx.tuning) {
                    // Enough calls for one pass: let other objects have a turn. The
                    // attempt is not recorded; the next pass decides it again.
                    return self
                        .finish(controller::Action::requeue(Duration::ZERO))
                        .await;
                }
                match self.slot(&observed).await? {
                    Some(again) => d = again,
                    None => return Ok(controller::Action::await_change()),
                }
            }
            self.adopt(&d);
            if decide::yields(calls, &d.action, &self.ctx.tuning) {
                // A DescribeExecution past the budget: what was decided with it (the last
                // answer's record) is kept and written; the call is the next pass's.
                return self
                    .finish(controller::Action::requeue(Duration::ZERO))
                    .await;
            }
            observed = match d.action {
                Action::Done => return self.finish(controller::Action::await_change()).await,
                Action::Delete => {
                    shell::delete(&self.ctx.client, &self.obj).await?;
                    return Ok(controller::Action::await_change());
                }
                Action::Wait(w) => return self.finish(controller::Action::requeue(w)).await,
                Action::ReadCredentials => self.read_credentials().await?,
                Action::Describe { wait_seconds } => {
                    calls += 1;
                    self.call_describe(wait_seconds).await
                }
                Action::Stop { request_id } => {
                    // The attempt is on record before the call goes out.
                    self.write().await?;
                    calls += 1;
                    self.call_stop(request_id).await
                }
            };
        }
    }

    /// Waits for a StopExecution slot, then decides again from the same status and
    /// observation: the set may have been deleted or the policies changed meanwhile, and
    /// the recorded attempt time must be the real one (a Stop stays a Stop when only time
    /// has passed: a table test holds `decide` to that). None: the operator is shutting
    /// down — nothing of this attempt is recorded before its slot, so the object is left
    /// as it is for the next leader instead of holding the Lease while a queue of slots
    /// drains (a rolling restart mid-burst).
    async fn slot(&mut self, observed: &Outcome) -> Result<Option<Decision>, Error> {
        let key = limiter_key(self.account(), "stop");
        let mut stopping = self.ctx.stopping.clone();
        let waited = tokio::select! {
            waited = self.ctx.stop_limiter.acquire(&key, self.lane()) => waited,
            _ = stopping.wait_for(|s| *s) => return Ok(None),
        };
        self.ctx.metrics.waited(waited);
        self.abandoned = abandoned(self.ctx, &self.obj).await?;
        self.look_at_policies().await?;
        Ok(Some(self.decide(observed)))
    }
}

pub fn error_policy(
    obj: Arc<ExecutionStop>,
    error: &Error,
    ctx: Arc<Context>,
) -> controller::Action {
    shell::error_policy(&*obj, error, &ctx.metrics)
}
