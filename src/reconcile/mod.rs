//! The thin shell around `decide`: read the object and its Secret, ask `decide`, make the
//! call it asks for, write status by server-side apply when it changed, and requeue.

mod credentials;
pub mod policy;
pub mod set;

pub use credentials::SecretCache;

use crate::crd::set::{SET_LABEL, owner_set};
use crate::crd::{ExecutionStop, ExecutionStopSet, ExecutionStopStatus};
use crate::decide::policy::Verdict;
use crate::decide::{self, Action, Decision, Input, Outcome, Policy};
use crate::ratelimit::{Lane, RateLimiter};
use crate::telemetry::Metrics;
use credentials::NoAccount;
use fnf::{Account, ErrorKind, Execution, FnfApi, FnfError, Provider, StopRequest};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The field manager of every status write.
pub const MANAGER: &str = "flowstop";

/// At most this many fnf calls in one reconcile; then the object goes back in the queue
/// so others get their turn.
const CALLS_PER_RECONCILE: u32 = 4;

pub struct Context {
    pub client: kube::Client,
    pub fnf: Arc<dyn FnfApi>,
    /// The default endpoint and where objects' requests may go.
    pub endpoints: decide::endpoint::Endpoints,
    /// The operator's own credentials, or why there are none.
    pub operator_credentials: Result<Provider, String>,
    pub policy: Policy,
    /// StopExecution and ListExecutions: the service's "other operations" bucket.
    pub stop_limiter: RateLimiter,
    pub describe_limiter: RateLimiter,
    /// The ExecutionStopSets the operator watches, to tell whether an ExecutionStop's set
    /// still exists. Filled once the controllers are built.
    pub sets: std::sync::OnceLock<Vec<Store<ExecutionStopSet>>>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub secrets: SecretCache,
    /// The ExecutionStopPolicies and namespace labels, for the tenancy verdict.
    pub policies: policy::Policies,
    /// True once the operator is shutting down (a signal, a lost Lease).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// Whether the policies allow an object of `ns` to stop executions of `flow`, now.
    pub async fn verdict(
        &self,
        ns: &str,
        target: &(dyn crate::crd::Target + Sync),
        flow: &str,
    ) -> Result<Verdict, Error> {
        self.policies.synced().await;
        Ok(self
            .policies
            .verdict(
                &self.client,
                ns,
                target,
                flow,
                self.endpoints.default.as_ref(),
            )
            .await?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the object changed while its status was being written")]
    Conflict,
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Conflict => "conflict",
        }
    }
}

/// Rate limits apply per AccessKeyId and region, as the service's quotas do
/// (`endpoint::quota_region`): no spelling of an endpoint makes a bucket of its own.
fn limiter_key(account: &Account, class: &str) -> String {
    format!(
        "{}|{}|{class}",
        decide::endpoint::quota_region(&account.endpoint).unwrap_or_default(),
        account.credentials.access_key_id
    )
}

/// One object's pass. `status` is always the newest status `decide` returned: every
/// decision is made on the outcome of the one before it, never on an older copy.
struct Pass<'a> {
    ctx: &'a Context,
    api: Api<ExecutionStop>,
    obj: ExecutionStop,
    status: ExecutionStopStatus,
    /// What the API server holds, as of our last read or write.
    stored: Option<ExecutionStopStatus>,
    resource_version: String,
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
        let credentials = match &self.account {
            None => decide::Credentials::Unread,
            Some((_, None)) => decide::Credentials::Operator,
            Some((_, Some(v))) => decide::Credentials::Secret(v),
        };
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
            credentials,
            outcome: observed,
            now: Timestamp::now(),
            jitter: rand::random::<f64>(),
            policy: &self.ctx.policy,
            verdict: &self.verdict,
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

    /// Server-side apply of the whole current status, conditional on the resourceVersion
    /// we read, so a second writer (an old leader, say) loses instead of overwriting.
    async fn write(&mut self) -> Result<(), Error> {
        if self.stored.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": "flowstop.dev/v1alpha1",
            "kind": "ExecutionStop",
            "metadata": {"resourceVersion": self.resource_version},
            "status": &self.status,
        });
        let name = self.obj.name_any();
        match self
            .api
            .patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(o) => {
                self.ctx.metrics.status_written();
                self.resource_version = o.resource_version().unwrap_or_default();
                self.stored = Some(self.status.clone());
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes what the pass decided, publishes its events and says when to come back.
    async fn finish(&mut self, then: controller::Action) -> Result<controller::Action, Error> {
        self.write().await?;
        for event in decide::fold_events(std::mem::take(&mut self.events)) {
            self.publish(event);
        }
        self.ctx.metrics.reconciled("ok");
        Ok(then)
    }

    /// Events are best effort and off the critical path: a stop must not wait for them.
    fn publish(&self, ev: decide::Event) {
        let event = Event {
            type_: if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.as_str().into(),
            note: Some(ev.note.chars().take(1000).collect()),
            action: "StopExecution".into(),
            secondary: None,
        };
        let (recorder, reference) = (self.ctx.recorder.clone(), self.obj.object_ref(&()));
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "cannot publish event");
            }
        });
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
                Err(NoAccount::Unusable(m)) => Outcome::Unusable(m),
                Err(NoAccount::NotAllowed(m)) => Outcome::EndpointNotAllowed(m),
                Err(NoAccount::Missing(m)) => Outcome::NoCredentials(m),
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
            cause: self.obj.spec.cause.clone(),
            error: self.obj.spec.error.clone(),
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
    if lane_of(&obj) != lane {
        return Ok(controller::Action::await_change());
    }
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<ExecutionStop> = Api::namespaced(ctx.client.clone(), &ns);
    let mut obj = (*obj).clone();
    // The watch cache may lag our own last write: an attempt that looks in flight may be
    // finished already. Read it fresh before acting on it.
    if obj
        .status
        .as_ref()
        .is_some_and(|s| s.pending_request_id.is_some())
    {
        match api.get_opt(&obj.name_any()).await? {
            Some(fresh) if lane_of(&fresh) == lane => obj = fresh,
            _ => return Ok(controller::Action::await_change()),
        }
    }
    let gone = abandoned(&ctx, &obj).await?;
    let mut pass = Pass {
        ctx: &ctx,
        abandoned: gone,
        api,
        status: obj.status.clone().unwrap_or_default(),
        stored: obj.status.clone(),
        resource_version: obj.resource_version().unwrap_or_default(),
        obj,
        account: None,
        events: vec![],
        verdict: Verdict::Allowed,
    };
    pass.look_at_policies().await?;
    let mut observed = Outcome::Nothing;
    let mut calls = 0;
    loop {
        let mut d = pass.decide(&observed);
        if let Action::Stop { .. } = d.action {
            if calls >= CALLS_PER_RECONCILE {
                // Enough calls for one pass: let other objects have a turn.
                return pass
                    .finish(controller::Action::requeue(Duration::ZERO))
                    .await;
            }
            let key = limiter_key(pass.account(), "stop");
            let mut stopping = ctx.stopping.clone();
            let waited = tokio::select! {
                waited = ctx.stop_limiter.acquire(&key, pass.lane()) => waited,
                // Shutting down: nothing of this attempt is recorded before its slot, so
                // leave the object as it is for the next leader instead of holding the
                // Lease while a queue of slots drains (a rolling restart mid-burst).
                _ = stopping.wait_for(|s| *s) => return Ok(controller::Action::await_change()),
            };
            ctx.metrics.waited(waited);
            // The set may have been deleted, or the policies changed, while this call
            // waited for its turn.
            pass.abandoned = abandoned(&ctx, &pass.obj).await?;
            pass.look_at_policies().await?;
            // Decide again after the wait, from the same status and observation, so the
            // recorded attempt time is the real one. A Stop stays a Stop when only time
            // has passed (a table test holds `decide` to that).
            d = pass.decide(&observed);
        }
        pass.adopt(&d);
        observed = match d.action {
            Action::Done => return pass.finish(controller::Action::await_change()).await,
            Action::Wait(w) => return pass.finish(controller::Action::requeue(w)).await,
            Action::ReadCredentials => pass.read_credentials().await?,
            Action::Describe { .. } if calls >= CALLS_PER_RECONCILE => {
                return pass
                    .finish(controller::Action::requeue(Duration::ZERO))
                    .await;
            }
            Action::Describe { wait_seconds } => {
                calls += 1;
                pass.call_describe(wait_seconds).await
            }
            Action::Stop { request_id } => {
                // The attempt is on record before the call goes out.
                pass.write().await?;
                calls += 1;
                pass.call_stop(request_id).await
            }
        };
    }
}

pub fn error_policy(
    obj: Arc<ExecutionStop>,
    error: &Error,
    ctx: Arc<Context>,
) -> controller::Action {
    ctx.metrics.reconciled(error.category());
    tracing::warn!(name = obj.name_any(), namespace = obj.namespace(), %error, "reconcile failed");
    match error {
        Error::Conflict => controller::Action::requeue(Duration::from_millis(200)),
        Error::Kube(_) => controller::Action::requeue(Duration::from_secs(5)),
    }
}
