//! The thin shell around `decide`: read the object and its Secret, ask `decide`, make the
//! call it asks for, write status by server-side apply when it changed, and requeue.

mod credentials;

pub use credentials::SecretCache;

use crate::crd::{ExecutionStop, ExecutionStopSpec, ExecutionStopStatus};
use crate::decide::{self, Action, Decision, Input, Outcome, Policy};
use crate::fnf::{Account, Endpoint, Execution, FnfApi, FnfError, Provider, StopRequest};
use crate::ratelimit::RateLimiter;
use crate::telemetry::Metrics;
use credentials::Found;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller;
use kube::runtime::events::{Event, EventType, Recorder};
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
    pub default_endpoint: Option<Endpoint>,
    pub allow_insecure_http: bool,
    /// The operator's own credentials, or why there are none.
    pub operator_credentials: Result<Provider, String>,
    pub policy: Policy,
    pub stop_limiter: RateLimiter,
    pub describe_limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub secrets: SecretCache,
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

/// What the shell saw, owned; `decide` borrows it as an `Outcome`.
enum Observed {
    Nothing,
    NoCredentials(String),
    Unusable(String),
    Stop(Result<Execution, FnfError>),
    Describe(Result<Execution, FnfError>),
}

impl Observed {
    fn outcome(&self) -> Outcome<'_> {
        match self {
            Self::Nothing => Outcome::Nothing,
            Self::NoCredentials(m) => Outcome::NoCredentials(m.clone()),
            Self::Unusable(m) => Outcome::Unusable(m.clone()),
            Self::Stop(r) => Outcome::Stop(r.as_ref()),
            Self::Describe(r) => Outcome::Describe(r.as_ref()),
        }
    }
}

fn endpoint(spec: &ExecutionStopSpec, ctx: &Context) -> Result<Endpoint, String> {
    match (&spec.endpoint, &spec.region_id, &ctx.default_endpoint) {
        (Some(url), _, _) => Endpoint::url(url, ctx.allow_insecure_http).map_err(|e| e.to_string()),
        (None, Some(region), _) => Endpoint::region(region, false).map_err(|e| e.to_string()),
        (None, None, Some(default)) => Ok(default.clone()),
        (None, None, None) => Err("no endpoint: set spec.regionId or spec.endpoint, or start the operator with --region or --endpoint".into()),
    }
}

/// Rate limits apply per endpoint and AccessKeyId, as the service's quotas do.
fn limiter_key(account: &Account, class: &str) -> String {
    format!(
        "{}|{}|{class}",
        account.endpoint.base_url(),
        account.credentials.access_key_id
    )
}

/// One object's pass.
struct Pass<'a> {
    ctx: &'a Context,
    api: Api<ExecutionStop>,
    obj: ExecutionStop,
    status: ExecutionStopStatus,
    resource_version: String,
    account: Option<(Account, Option<String>)>,
}

impl Pass<'_> {
    fn decide(&self, observed: &Observed) -> Decision {
        let version = self.account.as_ref().and_then(|(_, v)| v.as_deref());
        decide::decide(&Input {
            spec: &self.obj.spec,
            status: &self.status,
            generation: self.obj.metadata.generation.unwrap_or(1),
            uid: self.obj.metadata.uid.as_deref().unwrap_or(""),
            created: self
                .obj
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0),
            credentials_version: version,
            outcome: observed.outcome(),
            now: Timestamp::now(),
            jitter: rand::random::<f64>(),
            policy: &self.ctx.policy,
        })
    }

    /// Server-side apply of the whole status, conditional on the resourceVersion we read,
    /// so a second writer (an old leader, say) loses instead of overwriting.
    async fn write(&mut self, status: &ExecutionStopStatus) -> Result<(), Error> {
        if *status == self.status && self.obj.status.is_some() {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": "flowstop.dev/v1alpha1",
            "kind": "ExecutionStop",
            "metadata": {"resourceVersion": self.resource_version},
            "status": status,
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
                self.status = status.clone();
                self.obj.status = Some(status.clone());
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Events are best effort and off the critical path: a stop must not wait for them.
    fn publish(&self, d: &Decision) {
        let Some(ev) = &d.event else { return };
        let event = Event {
            type_: if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.into(),
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

    /// Endpoint and keys, once per pass; None with the reason when they cannot be had.
    async fn account(&mut self) -> Result<Result<Account, Observed>, Error> {
        if let Some((a, _)) = &self.account {
            return Ok(Ok(a.clone()));
        }
        let endpoint = match endpoint(&self.obj.spec, self.ctx) {
            Ok(e) => e,
            Err(m) => return Ok(Err(Observed::Unusable(m))),
        };
        match credentials::find(
            &self.ctx.client,
            &self.ctx.secrets,
            &self.ctx.operator_credentials,
            &self.obj,
        )
        .await?
        {
            Found::Keys(credentials, version) => {
                let account = Account {
                    endpoint,
                    credentials,
                };
                self.account = Some((account.clone(), version));
                Ok(Ok(account))
            }
            Found::Missing(m) => Ok(Err(Observed::NoCredentials(m))),
        }
    }

    async fn call_stop(&self, account: &Account, request_id: String) -> Observed {
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
        Observed::Stop(result)
    }

    async fn call_describe(&self, account: &Account, wait: u32) -> Observed {
        let key = limiter_key(account, "describe");
        self.ctx
            .metrics
            .waited(self.ctx.describe_limiter.acquire(&key).await);
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
        Observed::Describe(result)
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
            Err(e) => e.category(),
        };
        self.ctx
            .metrics
            .call(action, outcome, started.elapsed().as_secs_f64());
        match r {
            Err(e) if e.category() == "throttled" => limiter.throttled(key),
            Ok(_) => limiter.succeeded(key),
            Err(_) => {}
        }
        tracing::debug!(action, outcome, "fnf call");
    }
}

#[tracing::instrument(skip_all, fields(namespace = obj.namespace(), name = obj.name_any()))]
pub async fn reconcile(
    obj: Arc<ExecutionStop>,
    ctx: Arc<Context>,
) -> Result<controller::Action, Error> {
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
            Some(fresh) => obj = fresh,
            None => return Ok(controller::Action::await_change()),
        }
    }
    let mut pass = Pass {
        ctx: &ctx,
        api,
        status: obj.status.clone().unwrap_or_default(),
        resource_version: obj.resource_version().unwrap_or_default(),
        obj,
        account: None,
    };
    let uid = pass.obj.metadata.uid.clone().unwrap_or_default();
    let mut observed = Observed::Nothing;
    let mut calls = 0;
    // The "Stopping" event of an attempt, held until its outcome is known.
    let mut held: Option<Decision> = None;
    loop {
        let d = pass.decide(&observed);
        let requeue = match d.action {
            Action::Done => Some(controller::Action::await_change()),
            Action::Wait(w) => Some(controller::Action::requeue(w)),
            // Enough calls for one pass: let other objects have a turn. A Stop is not
            // written here, since that would record an attempt that was not made.
            Action::Describe { .. } if calls >= CALLS_PER_RECONCILE => {
                Some(controller::Action::requeue(Duration::ZERO))
            }
            Action::Stop { .. } if calls >= CALLS_PER_RECONCILE => {
                return Ok(controller::Action::requeue(Duration::ZERO));
            }
            _ => None,
        };
        if let Some(requeue) = requeue {
            pass.write(&d.status).await?;
            // "Stopping" followed by "Stopped" in the same pass says nothing the second
            // does not: publish the outcome alone.
            if let Some(earlier) = held.take() {
                let same_pass_success = d.event.as_ref().is_some_and(|e| !e.warning)
                    && !earlier.event.as_ref().is_some_and(|e| e.warning);
                if !same_pass_success {
                    pass.publish(&earlier);
                }
            }
            pass.publish(&d);
            ctx.metrics.phase(&uid, pass.status.phase);
            if d.event
                .as_ref()
                .is_some_and(|e| e.reason == crate::decide::reason::RETRYING)
            {
                ctx.metrics.retry();
            }
            ctx.metrics.reconciled("ok");
            return Ok(requeue);
        }
        calls += 1;
        let account = match pass.account().await? {
            Ok(a) => a,
            Err(why) => {
                observed = why;
                continue;
            }
        };
        observed = match d.action {
            Action::Stop { .. } => {
                ctx.metrics.waited(
                    ctx.stop_limiter
                        .acquire(&limiter_key(&account, "stop"))
                        .await,
                );
                // Decide again after the wait, so the recorded attempt time is the real one.
                // On the same observation: the status on record may still hold what that
                // observation settled (a pending attempt a Describe just resolved), and
                // deciding from it alone would ask for that Describe again, forever.
                let d = pass.decide(&observed);
                let Action::Stop { request_id } = d.action.clone() else {
                    continue;
                };
                // The attempt is on record before the call goes out.
                pass.write(&d.status).await?;
                if let Some(earlier) = held.replace(d.clone()) {
                    pass.publish(&earlier);
                }
                pass.call_stop(&account, request_id).await
            }
            Action::Describe { wait_seconds } => pass.call_describe(&account, wait_seconds).await,
            Action::Done | Action::Wait(_) => unreachable!("returned above"),
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
