//! The decision: from (spec, status, what the last call returned, now) to the next action
//! and the new status. Pure: no I/O, no clock, no randomness (the jitter is an input).

pub mod endpoint;
pub mod policy;
pub mod retention;
pub mod set;
mod status;
#[cfg(test)]
mod tests;

pub use status::{Reason, condition};
use status::{execution_info, last_error, printable, second, second_ceil, set_phase};

use crate::crd::{ExecutionStopSpec, ExecutionStopStatus, LastError, Phase};
use fnf::{ErrorKind, Execution, ExecutionStatus, FnfError};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Retry tuning: the operator-wide timings and bounds that shape decisions ("policy" is
/// kept for ExecutionStopPolicy, the tenancy verdict).
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// Attempts when the spec does not say.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Long-poll of DescribeExecution when confirming a stop (0–60 s).
    pub describe_wait: u32,
    /// How often a Failed-by-403 object checks whether its Secret changed.
    pub credentials_recheck: Duration,
    /// After this long, a Failed-by-403 object tries once more even if nothing changed.
    pub credentials_retry: Duration,
    /// How long a stop that answered Running may take to show as Stopped before it is sent again.
    pub confirm_window: Duration,
    /// Delay before retrying after a 429 (the rate limiter does the real pacing).
    pub throttle_retry: Duration,
    /// How often a dry-run ExecutionStopSet lists its matches again.
    pub preview_refresh: Duration,
    /// How often an object refused by the ExecutionStopPolicies is looked at again.
    pub policy_recheck: Duration,
    /// How long StopExecution may be throttled (429) in a row before the object gives up.
    /// A 429 is back-pressure, not a failed attempt: it never counts against maxAttempts.
    pub throttle_limit: Duration,
    /// Pages one ExecutionStopSet listing may take before it is taken for endless.
    pub list_page_limit: u32,
    /// fnf calls one pass over an ExecutionStop may make before it goes back in the queue,
    /// so a slow object cannot keep a worker from the others.
    pub calls_per_pass: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            describe_wait: 10,
            credentials_recheck: Duration::from_secs(300),
            credentials_retry: Duration::from_secs(3600),
            confirm_window: Duration::from_secs(300),
            throttle_retry: Duration::from_millis(50),
            preview_refresh: Duration::from_secs(300),
            policy_recheck: Duration::from_secs(30),
            throttle_limit: Duration::from_secs(1800),
            list_page_limit: 1000,
            calls_per_pass: 4,
        }
    }
}

/// What the shell observed since the last decision.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// No call made yet in this pass.
    Nothing,
    /// No call can be made as the object stands.
    Cannot(Cannot),
    Stop(Result<Execution, FnfError>),
    Describe(Result<Execution, FnfError>),
}

/// Why no call can be made for an object as it stands: the one "cannot call" type, for
/// both kinds, from the endpoint check and the credentials read alike. (The tenancy verdict
/// is an input of its own: it is judged before every call, not once per pass.)
#[derive(Clone, Debug, PartialEq)]
pub enum Cannot {
    /// The credentials could not be had (missing Secret or key, empty chain).
    NoCredentials(String),
    /// The request cannot be made at all (e.g. no endpoint, or plain http off loopback).
    Unusable(String),
    /// The endpoint's host is not one the operator's credentials may be sent to.
    EndpointNotAllowed(String),
}

/// What the shell knows of the object's credentials in this pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Credentials<'a> {
    /// Not read yet: read them (`Action::ReadCredentials`) before a call needs them.
    Unread,
    /// The operator's own (environment or RRSA).
    Operator,
    /// The object's Secret, at this resourceVersion.
    Secret(&'a str),
}

pub struct Input<'a> {
    pub spec: &'a ExecutionStopSpec,
    pub status: &'a ExecutionStopStatus,
    pub generation: i64,
    pub uid: &'a str,
    /// The ExecutionStopSet that created this object is gone: make no further calls.
    pub abandoned: bool,
    pub created: Timestamp,
    pub credentials: Credentials<'a>,
    pub outcome: &'a Outcome,
    pub now: Timestamp,
    /// Uniform in [0, 1): the random part of the backoff.
    pub jitter: f64,
    pub tuning: &'a Tuning,
    /// Whether the ExecutionStopPolicies allow this stop now.
    pub verdict: &'a policy::Verdict,
    /// Where objects' requests may go (the operator's configuration): judged here, before
    /// any key is read, as the verdict is.
    pub endpoints: &'a endpoint::Endpoints,
    /// A GitOps tool (or Helm) manages the object (`retention::managed_by_gitops`): its TTL
    /// never deletes it.
    pub gitops_managed: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Final: nothing more to do unless the object changes.
    Done,
    /// Come back after this long; no call now.
    Wait(Duration),
    /// Persist the new status (it records the attempt), then call StopExecution with this id.
    Stop { request_id: String },
    /// Call DescribeExecution, long-polling this many seconds.
    Describe { wait_seconds: u32 },
    /// Read the endpoint and credentials (one Secret `get` at most), then decide again.
    ReadCredentials,
    /// Final, and its `ttlSecondsAfterFinished` has passed: delete the object (no call).
    Delete,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub warning: bool,
    pub reason: Reason,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub status: ExecutionStopStatus,
    /// A transition worth a Kubernetes Event.
    pub event: Option<Event>,
    /// A retry was scheduled after a retryable error.
    pub retry: bool,
}

/// Whether a pass that has made `calls` fnf calls hands `action` to the next pass instead.
/// The shell then records no attempt for a StopExecution (the next pass decides it again)
/// and keeps the status decided with a DescribeExecution (it holds the last answer).
pub fn yields(calls: u32, action: &Action, tuning: &Tuning) -> bool {
    calls >= tuning.calls_per_pass
        && matches!(action, Action::Stop { .. } | Action::Describe { .. })
}

/// Whether an ExecutionStop can never act again while its status stays as it is: final,
/// not waiting to try changed credentials, and no TTL that would delete it (none, or a
/// GitOps tool manages it). For such an object `decide` returns `Done`, with its status
/// unchanged and no Event, whatever else it is given (a table test holds it to that), so the
/// operator keeps it out of the controllers and their cache altogether: 100,000 finished
/// objects cost a ledger entry each, not a cached copy.
pub fn settled(
    spec: &ExecutionStopSpec,
    status: Option<&ExecutionStopStatus>,
    gitops_managed: bool,
) -> bool {
    status.is_some_and(|s| {
        s.phase.is_some_and(Phase::is_final)
            && s.rejected_credentials_version.is_none()
            && (spec.ttl_seconds_after_finished.is_none() || gitops_managed)
    })
}

/// Full-jitter exponential backoff after `attempts` failed attempts.
pub fn backoff(tuning: &Tuning, attempts: u32, jitter: f64) -> Duration {
    let exp = tuning
        .backoff_base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let cap = exp.min(tuning.backoff_max);
    cap.mul_f64(jitter.clamp(0.0, 1.0))
        .max(Duration::from_millis(100))
}

fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t + SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

pub fn decide(i: &Input<'_>) -> Decision {
    let mut s = i.status.clone();
    let old_phase = s.phase;
    let (action, reason_set) = match i.outcome {
        Outcome::Nothing
            if i.abandoned
                && (!s.phase.is_some_and(Phase::is_final)
                    || s.rejected_credentials_version.is_some()) =>
        {
            refused(
                i,
                &mut s,
                Reason::SetDeleted,
                "the ExecutionStopSet that created this ExecutionStop was deleted; no further calls",
            )
        }
        Outcome::Nothing => next_step(i, &mut s),
        // A rejected object whose Secret is gone stays as it is: there is nothing new to try.
        Outcome::Cannot(Cannot::NoCredentials(_)) if s.rejected_credentials_version.is_some() => {
            (Action::Wait(i.tuning.credentials_recheck), None)
        }
        Outcome::Cannot(cannot) => cannot_call(i, &mut s, cannot),
        Outcome::Stop(Ok(e)) => answered(i, &mut s, e),
        Outcome::Stop(Err(e)) => stop_failed(i, &mut s, e),
        Outcome::Describe(Ok(e)) => described(i, &mut s, e),
        Outcome::Describe(Err(e)) => {
            s.last_error = Some(last_error(e));
            failure(i, &mut s, e, false)
        }
    };
    // A call needs an endpoint it may go to, and keys: judge the one and read the other
    // first, deciding nothing else yet.
    if matches!(i.outcome, Outcome::Nothing)
        && i.credentials == Credentials::Unread
        && matches!(
            action,
            Action::Stop { .. } | Action::Describe { .. } | Action::ReadCredentials
        )
    {
        return before_any_call(i);
    }
    let event = transition_event(old_phase, &s, reason_set, i);
    Decision {
        retry: reason_set == Some(Reason::Retrying),
        action,
        status: s,
        event,
    }
}

/// No credentials to be had: Pending, looked for again (more slowly as the object ages).
fn no_credentials(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    message: &str,
) -> (Action, Option<Reason>) {
    s.last_error = Some(LastError {
        code: Reason::CredentialsNotFound.as_str().into(),
        message: printable(message, 1024),
        http_status: None,
        request_id: None,
        retryable: true,
    });
    set_phase(
        s,
        Phase::Pending,
        Reason::CredentialsNotFound,
        message,
        i.generation,
        i.now,
    );
    // Poll slowly for a Secret that may never come: a quarter of the object's age.
    let age = until(i.created, i.now);
    (
        Action::Wait((age / 4).clamp(Duration::from_secs(2), Duration::from_secs(300))),
        Some(Reason::CredentialsNotFound),
    )
}

/// StopExecution answered with success: that call is the one that counts.
fn answered(i: &Input<'_>, s: &mut ExecutionStopStatus, e: &Execution) -> (Action, Option<Reason>) {
    // Our call was answered: it is the one that counts.
    s.throttled_since = None;
    let attempt = s.pending_request_id.take();
    s.unconfirmed_request_id = None;
    s.request_id = e
        .request_id
        .as_deref()
        .map(|r| printable(r, 128))
        .or(attempt);
    s.execution = Some(execution_info(e));
    s.last_error = None;
    s.next_attempt_time = None;
    if e.status == ExecutionStatus::Stopped {
        stopped(i, s)
    } else if e.status.is_final() {
        finished(i, s, e)
    } else {
        let msg = format!("StopExecution accepted (status {}); confirming", e.status);
        confirming(i, s, &msg, i.tuning.describe_wait)
    }
}

/// StopExecution failed: already completed, a garbled success, or a failure to retry or end on.
fn stop_failed(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    e: &FnfError,
) -> (Action, Option<Reason>) {
    if e.kind() != ErrorKind::Throttled {
        s.throttled_since = None;
    }
    let attempt = s.pending_request_id.take();
    if e.outcome_unknown() {
        // The call may have reached the service and stopped the execution.
        s.unconfirmed_request_id = attempt.or(s.unconfirmed_request_id.take());
    }
    s.last_error = Some(last_error(e));
    if e.kind() == ErrorKind::AlreadyCompleted {
        confirming(
            i,
            s,
            "execution already completed; reading its final status",
            0,
        )
    } else if garbled_success(e) {
        // The service said yes but the answer is unreadable: the stop probably
        // happened. Look instead of sending it again.
        let msg = format!("unreadable answer to StopExecution ({e}); confirming");
        confirming(i, s, &msg, 0)
    } else {
        failure(i, s, e, true)
    }
}

/// DescribeExecution answered: final (by us, or by someone else), or still running.
fn described(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    e: &Execution,
) -> (Action, Option<Reason>) {
    s.execution = Some(execution_info(e));
    // A retry time here can only be a failed DescribeExecution's (a StopExecution
    // clears it when recorded), and this one answered: it is over. Left standing, a
    // retry decided below would wait for it still Stopping, and the next pass would
    // take the unconfirmed attempt for an accepted one and wait out the confirm window.
    s.next_attempt_time = None;
    if e.status.is_final() {
        // Stopped by us only if one of our attempts can have done it: one that was
        // answered with success, or one whose answer was lost. Otherwise someone
        // else stopped it (another object, a person, a script) and it had already
        // ended when our call arrived.
        let ours = s
            .request_id
            .clone()
            .or(s.pending_request_id.take())
            .or(s.unconfirmed_request_id.take());
        match ours {
            Some(id) if e.status == ExecutionStatus::Stopped => {
                s.request_id = Some(id);
                s.last_error = None;
                s.next_attempt_time = None;
                stopped(i, s)
            }
            _ => finished(i, s, e),
        }
    } else if let Some(attempt) = s.pending_request_id.take() {
        // After a restart: the recorded attempt did not stop it (or never went
        // out, or is still under way): try again, remembering it may yet land.
        s.unconfirmed_request_id = Some(attempt);
        attempt_or_give_up(i, s)
    } else {
        let since = s
            .last_attempt_time
            .as_ref()
            .map_or(Duration::ZERO, |t| until(t.0, i.now));
        if since < i.tuning.confirm_window {
            let msg = format!("waiting for the execution to stop (status {})", e.status);
            confirming(i, s, &msg, i.tuning.describe_wait)
        } else {
            // Accepted but not effective in time: send it again; the accepted
            // call may still land.
            if let Some(id) = s.request_id.take() {
                s.unconfirmed_request_id = Some(id);
            }
            attempt_or_give_up(i, s)
        }
    }
}

/// Before the first call of a pass: where it would go is judged here (a precondition, as the
/// tenancy verdict is), so a refused endpoint sees no key read and no connection; then the
/// keys are read.
fn before_any_call(i: &Input<'_>) -> Decision {
    let Err(cannot) = endpoint::resolve(i.spec, i.endpoints) else {
        return Decision {
            action: Action::ReadCredentials,
            status: i.status.clone(),
            event: None,
            retry: false,
        };
    };
    let mut s = i.status.clone();
    let (action, reason) = cannot_call(i, &mut s, &cannot);
    let event = transition_event(i.status.phase, &s, reason, i);
    Decision {
        action,
        status: s,
        event,
        retry: false,
    }
}

/// No call can be made as the object stands.
fn cannot_call(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    cannot: &Cannot,
) -> (Action, Option<Reason>) {
    match cannot {
        Cannot::NoCredentials(message) => no_credentials(i, s, message),
        Cannot::Unusable(message) => refused(i, s, Reason::InvalidRequest, message),
        Cannot::EndpointNotAllowed(message) => refused(i, s, Reason::EndpointNotAllowed, message),
    }
}

/// The events of one pass, as they should be published: a success says all that a
/// "Stopping" or "Confirming" before it in the same pass would; an attempt that does not
/// settle in the pass keeps its first such event; warnings are always kept.
pub fn fold_events(events: Vec<Event>) -> Vec<Event> {
    let settled = events.last().is_some_and(|e| {
        !e.warning && matches!(e.reason, Reason::Stopped | Reason::AlreadyFinished)
    });
    let mut kept_progress = false;
    let last = events.len().saturating_sub(1);
    events
        .into_iter()
        .enumerate()
        .filter(|(n, e)| {
            if e.warning || (settled && *n == last) {
                return true;
            }
            if settled || kept_progress {
                return false;
            }
            kept_progress = true;
            true
        })
        .map(|(_, e)| e)
        .collect()
}

/// A request that cannot be made: Failed at once, with no call.
fn refused(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    why: Reason,
    message: &str,
) -> (Action, Option<Reason>) {
    s.last_error = Some(LastError {
        code: why.as_str().into(),
        message: printable(message, 1024),
        http_status: None,
        request_id: None,
        retryable: false,
    });
    s.next_attempt_time = None;
    s.rejected_credentials_version = None;
    if let Some(attempt) = s.pending_request_id.take() {
        s.unconfirmed_request_id = Some(attempt);
    }
    set_phase(s, Phase::Failed, why, message, i.generation, i.now);
    (Action::Done, Some(why))
}

/// StopExecution calls allowed in total: the object's, or the operator's default.
fn max_attempts(i: &Input<'_>) -> u32 {
    i.spec
        .options
        .max_attempts
        .unwrap_or(i.tuning.max_attempts)
        .max(1)
}

/// With nothing observed yet: what the current status calls for.
fn next_step(i: &Input<'_>, s: &mut ExecutionStopStatus) -> (Action, Option<Reason>) {
    // Retention: a final object (not one waiting to try new credentials) goes once its TTL
    // has passed, and is looked at again when it will have.
    if s.phase.is_some_and(Phase::is_final) && s.rejected_credentials_version.is_none() {
        let ttl = i.spec.ttl_seconds_after_finished;
        match retention::retention(ttl, i.gitops_managed, &s.conditions, i.now) {
            retention::Retention::Delete => return (Action::Delete, None),
            retention::Retention::After(d) => return (Action::Wait(d), None),
            retention::Retention::Keep => {}
        }
    }
    match s.phase {
        // Refused by policy: waits, and is carried out once some policy allows it.
        Some(Phase::Pending) if s.denied_by_policy => match i.verdict {
            policy::Verdict::Allowed => {
                s.denied_by_policy = false;
                s.last_error = None;
                attempt_or_give_up(i, s)
            }
            policy::Verdict::Denied(_) => (Action::Wait(i.tuning.policy_recheck), None),
        },
        Some(Phase::Failed) if s.rejected_credentials_version.is_some() => {
            let changed = match i.credentials {
                // Whether the Secret changed is only known by reading it.
                Credentials::Unread if i.spec.options.credentials_secret_ref.is_some() => {
                    return (Action::ReadCredentials, None);
                }
                Credentials::Secret(v) => s.rejected_credentials_version.as_deref() != Some(v),
                Credentials::Unread | Credentials::Operator => false,
            };
            let last = s.last_attempt_time.as_ref().map_or(i.now, |t| t.0);
            let retry_at = plus(last, i.tuning.credentials_retry);
            if changed || i.now >= retry_at {
                s.rejected_credentials_version = None;
                return stop_attempt(i, s, true);
            }
            (
                Action::Wait(until(i.now, retry_at).min(i.tuning.credentials_recheck)),
                Some(Reason::CredentialsRejected),
            )
        }
        Some(p) if p.is_final() => (Action::Done, None),
        _ if s.pending_request_id.is_some() => {
            // An attempt was recorded but its outcome was not: it may have gone out.
            // Look before calling again.
            let msg = "confirming the outcome of an attempt in progress before trying again";
            confirming(i, s, msg, 0)
        }
        // Accepted, or possibly done by a call whose answer was lost: look, do not resend.
        Some(Phase::Stopping) if s.request_id.is_some() || s.unconfirmed_request_id.is_some() => (
            Action::Describe {
                wait_seconds: i.tuning.describe_wait,
            },
            Some(Reason::Confirming),
        ),
        _ => attempt_or_give_up(i, s),
    }
}

/// The next StopExecution attempt when its time has come, or giving up at maxAttempts.
fn attempt_or_give_up(i: &Input<'_>, s: &mut ExecutionStopStatus) -> (Action, Option<Reason>) {
    let max = max_attempts(i);
    if let Some(next) = &s.next_attempt_time {
        if next.0 > i.now {
            return (Action::Wait(until(i.now, next.0)), None);
        }
    }
    if s.attempts >= max {
        let msg = format!("gave up after {} attempts", s.attempts);
        return give_up(i, s, &msg);
    }
    stop_attempt(i, s, false)
}

/// Pending with Forbidden: no call; looked at again every `policy_recheck`, as a missing
/// Secret is, and carried out once a policy allows it.
fn forbid(i: &Input<'_>, s: &mut ExecutionStopStatus, why: &str) -> (Action, Option<Reason>) {
    s.last_error = Some(LastError {
        code: Reason::Forbidden.as_str().into(),
        message: printable(why, 1024),
        http_status: None,
        request_id: None,
        retryable: false,
    });
    s.next_attempt_time = None;
    set_phase(
        s,
        Phase::Pending,
        Reason::Forbidden,
        why,
        i.generation,
        i.now,
    );
    (
        Action::Wait(i.tuning.policy_recheck),
        Some(Reason::Forbidden),
    )
}

/// Failed with RetriesExhausted; an attempt still pending stays known as unconfirmed.
fn give_up(i: &Input<'_>, s: &mut ExecutionStopStatus, msg: &str) -> (Action, Option<Reason>) {
    s.next_attempt_time = None;
    if let Some(attempt) = s.pending_request_id.take() {
        s.unconfirmed_request_id = Some(attempt);
    }
    set_phase(
        s,
        Phase::Failed,
        Reason::RetriesExhausted,
        msg,
        i.generation,
        i.now,
    );
    (Action::Done, Some(Reason::RetriesExhausted))
}

/// Records a new attempt; the shell persists this status before making the call.
fn stop_attempt(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    extra: bool,
) -> (Action, Option<Reason>) {
    // Every StopExecution is checked against the policies as they are now.
    if let policy::Verdict::Denied(why) = i.verdict {
        return forbid(i, s, why);
    }
    // A retry after changed credentials does not count against maxAttempts.
    if !extra {
        s.attempts += 1;
    }
    let request_id = format!("{}-{}", i.uid, s.attempts);
    s.pending_request_id = Some(request_id.clone());
    s.last_attempt_time = Some(second(i.now));
    s.next_attempt_time = None;
    let msg = format!("calling StopExecution (attempt {})", s.attempts);
    set_phase(
        s,
        Phase::Stopping,
        Reason::Stopping,
        &msg,
        i.generation,
        i.now,
    );
    (Action::Stop { request_id }, Some(Reason::Stopping))
}

/// Stays Stopping and asks DescribeExecution how the execution stands.
fn confirming(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    msg: &str,
    wait_seconds: u32,
) -> (Action, Option<Reason>) {
    set_phase(
        s,
        Phase::Stopping,
        Reason::Confirming,
        msg,
        i.generation,
        i.now,
    );
    (Action::Describe { wait_seconds }, Some(Reason::Confirming))
}

fn stopped(i: &Input<'_>, s: &mut ExecutionStopStatus) -> (Action, Option<Reason>) {
    let msg = format!(
        "execution {} of flow {} stopped",
        i.spec.execution_name, i.spec.flow_name
    );
    set_phase(
        s,
        Phase::Stopped,
        Reason::Stopped,
        &msg,
        i.generation,
        i.now,
    );
    (Action::Done, Some(Reason::Stopped))
}

fn finished(i: &Input<'_>, s: &mut ExecutionStopStatus, e: &Execution) -> (Action, Option<Reason>) {
    s.next_attempt_time = None;
    let msg = format!("execution had already ended with status {}", e.status);
    set_phase(
        s,
        Phase::AlreadyFinished,
        Reason::AlreadyFinished,
        &msg,
        i.generation,
        i.now,
    );
    (Action::Done, Some(Reason::AlreadyFinished))
}

/// A 2xx whose body could not be read.
fn garbled_success(e: &FnfError) -> bool {
    matches!(
        e,
        FnfError::BadResponse {
            status: 200..=299,
            ..
        }
    )
}

/// A failed call. `counts`: StopExecution failures count against maxAttempts.
fn failure(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    e: &FnfError,
    counts: bool,
) -> (Action, Option<Reason>) {
    // A read-only DescribeExecution may always be asked again, even after a garbled answer.
    if e.retryable() || (!counts && garbled_success(e)) {
        return retry(i, s, e, counts);
    }
    s.next_attempt_time = None;
    // A DescribeExecution that fails for good leaves the attempt it was confirming unknown.
    if let Some(attempt) = s.pending_request_id.take() {
        s.unconfirmed_request_id = Some(attempt);
    }
    if !counts && e.kind() == ErrorKind::Auth {
        if let Some(id) = s.request_id.clone() {
            // StopExecution answered with success, and only the confirmation is refused:
            // sending the stop again could add nothing, and neither could asking again.
            let msg = format!(
                "StopExecution was accepted (RequestId {id}) but cannot be confirmed: \
                 DescribeExecution was refused ({e}); grant fnf:DescribeExecution to these \
                 credentials to have stops confirmed. No further calls are made"
            );
            set_phase(
                s,
                Phase::Stopped,
                Reason::StopAccepted,
                &msg,
                i.generation,
                i.now,
            );
            return (Action::Done, Some(Reason::StopAccepted));
        }
    }
    let why = match e.kind() {
        ErrorKind::Auth => {
            s.rejected_credentials_version = Some(match i.credentials {
                Credentials::Secret(v) => v.to_string(),
                Credentials::Unread | Credentials::Operator => "operator".to_string(),
            });
            set_phase(
                s,
                Phase::Failed,
                Reason::CredentialsRejected,
                &e.to_string(),
                i.generation,
                i.now,
            );
            return (
                Action::Wait(i.tuning.credentials_recheck),
                Some(Reason::CredentialsRejected),
            );
        }
        ErrorKind::NotFound => Reason::NotFound,
        // What is left cannot pass by asking again: the request as it stands was refused,
        // or the answer was unusable.
        ErrorKind::AlreadyCompleted
        | ErrorKind::Throttled
        | ErrorKind::Conflict
        | ErrorKind::Server
        | ErrorKind::Invalid
        | ErrorKind::BadResponse
        | ErrorKind::Timeout
        | ErrorKind::Connect
        | ErrorKind::Credentials
        | ErrorKind::Other => Reason::InvalidRequest,
    };
    set_phase(s, Phase::Failed, why, &e.to_string(), i.generation, i.now);
    (Action::Done, Some(why))
}

/// A failure that may pass: retried after a backoff (a 429 at once, through the limiter),
/// or given up on at maxAttempts (StopExecution) or the confirm window (DescribeExecution).
fn retry(
    i: &Input<'_>,
    s: &mut ExecutionStopStatus,
    e: &FnfError,
    counts: bool,
) -> (Action, Option<Reason>) {
    let since_attempt = s
        .last_attempt_time
        .as_ref()
        .map_or(Duration::ZERO, |t| until(t.0, i.now));
    if !counts && since_attempt >= i.tuning.confirm_window {
        // DescribeExecution does not count as an attempt, so bound it by time instead.
        let msg = format!(
            "gave up confirming after {} s: {e}",
            since_attempt.as_secs()
        );
        return give_up(i, s, &msg);
    }
    if counts && e.kind() == ErrorKind::Throttled {
        // A 429 is back-pressure, not a failure: the call was not carried out, so it is
        // not an attempt (the retry reuses its RequestId). Bounded by time instead.
        s.attempts = s.attempts.saturating_sub(1);
        let since = s.throttled_since.get_or_insert_with(|| second(i.now)).0;
        let throttled_for = until(since, i.now);
        if throttled_for >= i.tuning.throttle_limit {
            let msg = format!(
                "gave up: every StopExecution was throttled for {} s: {e}",
                throttled_for.as_secs()
            );
            return give_up(i, s, &msg);
        }
        // The client-side rate limiter, emptied and slowed by this 429, paces the
        // retry; waiting out a backoff on top would only leave quota unused.
        s.next_attempt_time = None;
        set_phase(
            s,
            Phase::Retrying,
            Reason::Retrying,
            &format!("will retry: {e}"),
            i.generation,
            i.now,
        );
        return (
            Action::Wait(i.tuning.throttle_retry),
            Some(Reason::Retrying),
        );
    }
    if counts && s.attempts >= max_attempts(i) {
        let msg = format!("gave up after {} attempts: {e}", s.attempts);
        return give_up(i, s, &msg);
    }
    let delay = backoff(i.tuning, s.attempts.max(1), i.jitter);
    let at = plus(i.now, delay);
    s.next_attempt_time = Some(second_ceil(at));
    let phase = if counts {
        Phase::Retrying
    } else {
        s.phase.unwrap_or(Phase::Stopping)
    };
    set_phase(
        s,
        phase,
        Reason::Retrying,
        &format!("will retry: {e}"),
        i.generation,
        i.now,
    );
    (
        Action::Wait(until(i.now, s.next_attempt_time.as_ref().expect("set").0).max(delay)),
        Some(Reason::Retrying),
    )
}

/// One event per change of phase or reason; none when nothing changed.
fn transition_event(
    old: Option<Phase>,
    s: &ExecutionStopStatus,
    reason: Option<Reason>,
    i: &Input<'_>,
) -> Option<Event> {
    let reason = reason?;
    let new = s.phase?;
    let old_reason = i
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .map(|c| c.reason.as_str());
    if old == Some(new) && old_reason == Some(reason.as_str()) && reason != Reason::Retrying {
        return None;
    }
    let note = s
        .conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let warning = matches!(new, Phase::Failed | Phase::Retrying)
        || matches!(
            reason,
            Reason::CredentialsNotFound
                | Reason::Retrying
                | Reason::Forbidden
                | Reason::StopAccepted
        );
    Some(Event {
        warning,
        reason,
        note,
    })
}
