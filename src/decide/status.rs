//! Building status: conditions with stable transition times, errors, execution info.

use crate::crd::{ExecutionInfo, ExecutionStopStatus, LastError, Phase};
use fnf::{Execution, FnfError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Reasons on the conditions and Events: a fixed set, documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Pending,
    Stopping,
    Confirming,
    Retrying,
    Stopped,
    AlreadyFinished,
    CredentialsNotFound,
    CredentialsRejected,
    NotFound,
    InvalidRequest,
    EndpointNotAllowed,
    RetriesExhausted,
    /// An ExecutionStop whose ExecutionStopSet was deleted: no further calls.
    SetDeleted,
    /// ExecutionStopSet: a dry run counted the matching executions.
    Previewed,
    /// ExecutionStopSet: taking the snapshot and creating its ExecutionStops.
    Listing,
    /// ExecutionStopSet: more executions matched than maxCount; nothing was stopped.
    TooManyMatches,
    /// ExecutionStopSet: no execution matched.
    NoMatches,
    /// ExecutionStopSet: every ExecutionStop is final and none failed.
    Completed,
    /// ExecutionStopSet: every ExecutionStop is final and some failed.
    ChildrenFailed,
    /// No ExecutionStopPolicy allows the object: no call is made.
    Forbidden,
    /// StopExecution was accepted, and DescribeExecution, which would confirm it, is refused
    /// (403): the stop stands on the service's word, and nothing more is called.
    StopAccepted,
    /// ExecutionStopSet: ListExecutions kept answering with a NextToken past the page limit
    /// (or with the token it was given), so the listing would never end.
    EndlessListing,
    /// ExecutionStopSet: an ExecutionStop name the set needed is taken by an object it did
    /// not create; that execution is not stopped by the set.
    NameTaken,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Stopping => "Stopping",
            Self::Confirming => "Confirming",
            Self::Retrying => "Retrying",
            Self::Stopped => "Stopped",
            Self::AlreadyFinished => "AlreadyFinished",
            Self::CredentialsNotFound => "CredentialsNotFound",
            Self::CredentialsRejected => "CredentialsRejected",
            Self::NotFound => "NotFound",
            Self::InvalidRequest => "InvalidRequest",
            Self::EndpointNotAllowed => "EndpointNotAllowed",
            Self::RetriesExhausted => "RetriesExhausted",
            Self::SetDeleted => "SetDeleted",
            Self::Previewed => "Previewed",
            Self::Listing => "Listing",
            Self::TooManyMatches => "TooManyMatches",
            Self::NoMatches => "NoMatches",
            Self::Completed => "Completed",
            Self::ChildrenFailed => "ChildrenFailed",
            Self::Forbidden => "Forbidden",
            Self::StopAccepted => "StopAccepted",
            Self::EndlessListing => "EndlessListing",
            Self::NameTaken => "NameTaken",
        }
    }
}

/// Condition types, as kstatus and `kubectl wait` read them.
pub use crate::crd::condition;

/// Times in status are whole seconds: that is what the API server gives back, and
/// comparing our status with the stored one must not see a difference that is not there.
pub fn second(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).expect("in range"))
}

/// Rounds up, for "not before" times.
pub fn second_ceil(t: Timestamp) -> Time {
    let s = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    Time(Timestamp::from_second(s).expect("in range"))
}

fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let (old_time, old_status) = conds
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.last_transition_time.clone(), c.status.clone()))
        .unzip();
    let last_transition_time = match (old_time, old_status) {
        (Some(t), Some(s)) if s == status => t,
        _ => second(now),
    };
    conds.retain(|c| c.type_ != type_);
    conds.push(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(generation),
        last_transition_time,
    });
    conds.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Sets phase and the three conditions from it.
pub fn set_phase(
    s: &mut ExecutionStopStatus,
    phase: Phase,
    reason: Reason,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    s.phase = Some(phase);
    s.observed_generation = Some(generation);
    // Refused by policy is a state of its own, never left over under another reason.
    s.denied_by_policy = reason == Reason::Forbidden;
    // Messages may quote a foreign answer: bounded, so a status write cannot fail on size.
    let message = &printable(message, 1024);
    let ready = matches!(phase, Phase::Stopped | Phase::AlreadyFinished);
    let stalled = phase == Phase::Failed;
    set_conditions(
        &mut s.conditions,
        [ready, !phase.is_final(), stalled],
        reason,
        message,
        generation,
        now,
    );
}

/// Ready, Reconciling and Stalled, with one reason and message.
pub fn set_conditions(
    conds: &mut Vec<Condition>,
    [ready, reconciling, stalled]: [bool; 3],
    reason: Reason,
    message: &str,
    generation: i64,
    now: Timestamp,
) {
    for (type_, on) in [
        (condition::READY, ready),
        (condition::RECONCILING, reconciling),
        (condition::STALLED, stalled),
    ] {
        set_condition(conds, type_, on, reason.as_str(), message, generation, now);
    }
}

pub fn execution_info(e: &Execution) -> ExecutionInfo {
    ExecutionInfo {
        status: Some(printable(e.status.as_str(), 64)),
        started_time: e.started_time.as_deref().map(|t| printable(t, 64)),
        stopped_time: e.stopped_time.as_deref().map(|t| printable(t, 64)),
    }
}

/// The error as status shows it. Codes for non-API failures are ours and fixed.
pub fn last_error(e: &FnfError) -> LastError {
    let code = match e {
        FnfError::Api { code, .. } => code.clone(),
        FnfError::BadResponse { .. } => "BadResponse".into(),
        FnfError::Timeout(_) => "Timeout".into(),
        FnfError::Connect(_) => "ConnectionFailed".into(),
        FnfError::Credentials(_) => "CredentialsError".into(),
        FnfError::Invalid(_) => "InvalidRequest".into(),
    };
    let message = match e {
        FnfError::Api { message, .. } => message.clone(),
        other => other.to_string(),
    };
    LastError {
        code: printable(&code, 128),
        message: printable(&message, 1024),
        http_status: e.http_status(),
        request_id: e.request_id().map(|r| printable(r, 128)),
        retryable: e.retryable(),
    }
}

/// At most `max` characters, marked with … when cut, with every control character written
/// as a visible escape (`\u{1b}`): text from the cloud ends up on people's terminals
/// (`kubectl get -o yaml`, `kubectl flowstop describe`), where an escape sequence in an
/// error message could rewrite the screen. The fnf client's own rule, applied again to
/// what it did not write (our messages quoting names and endpoints).
pub use fnf::redact::printable;
