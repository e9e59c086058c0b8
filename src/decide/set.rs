//! ExecutionStopSet decisions: from (spec, status, its children, what the last listing
//! returned, now) to the next action and the new status. Pure, like `decide`.

use super::policy::Verdict;
use super::status::{last_error, printable, second, second_ceil, set_conditions};
use super::{Cannot, Credentials, Event, Reason, Tuning, backoff, plus, until};
use crate::crd::set::{
    ChildCounts, ExecutionStopSetSpec, ExecutionStopSetStatus, FIRST_MATCHES, ListPass,
    ListingProgress, SetPhase,
};
use crate::crd::{LastError, Phase};
use fnf::{ErrorKind, FnfError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// One page of ListExecutions.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The matching executions' names.
    pub names: Vec<String>,
    /// Where the next page starts; none on the last page.
    pub next_token: Option<String>,
}

/// While a set is Stopping, its counts are written when another hundredth of its
/// ExecutionStops has become final, but at most every `PROGRESS_EVERY`; while fewer change,
/// at least every `PROGRESS_AT_LEAST`. Phase changes are written at once.
///
/// Why not on every change, or every second: at the service's default quota (2 stops a
/// second) a set of 10,000 stops for 83 minutes, and a write a second would cost half a
/// write per execution on top of its ExecutionStop's three. So a set writes its progress
/// about a hundred times if a hundredth of it finishes within `PROGRESS_AT_LEAST`; a slower
/// one, once every `PROGRESS_AT_LEAST`.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
pub const PROGRESS_AT_LEAST: Duration = Duration::from_secs(60);

/// How a pass's status write is paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// The status decided is the one stored: nothing to write.
    Unchanged,
    /// Progress only, and not due yet: come back after this long and write then.
    Hold(Duration),
    /// Write now; `progress`: it is progress only (remember when, to pace the next).
    Write { progress: bool },
}

/// Whether to write a pass's status now, from the status stored and the one decided, and
/// when progress was last written.
pub fn pace(
    stored: Option<&ExecutionStopSetStatus>,
    decided: &ExecutionStopSetStatus,
    last_progress: Option<Timestamp>,
    now: Timestamp,
) -> Pace {
    if stored == Some(decided) {
        return Pace::Unchanged;
    }
    let Some(stored) = stored.filter(|s| {
        s.phase == Some(SetPhase::Stopping) && decided.phase == Some(SetPhase::Stopping)
    }) else {
        return Pace::Write { progress: false };
    };
    let Some(last) = last_progress else {
        return Pace::Write { progress: true };
    };
    let (was, is) = (&stored.children, &decided.children);
    let step = is.total.div_ceil(100).max(1);
    let every = if is.finals().saturating_sub(was.finals()) >= step {
        PROGRESS_EVERY
    } else {
        PROGRESS_AT_LEAST
    };
    let due = plus(last, every);
    if due > now {
        return Pace::Hold(until(now, due));
    }
    Pace::Write { progress: true }
}

/// A set's ExecutionStops counted by phase (an object without status yet is Pending).
pub fn count<'a>(phases: impl IntoIterator<Item = Option<&'a Phase>>) -> ChildCounts {
    let mut c = ChildCounts::default();
    for phase in phases {
        c.total += 1;
        match phase {
            None | Some(Phase::Pending) => c.pending += 1,
            Some(Phase::Stopping) => c.stopping += 1,
            Some(Phase::Retrying) => c.retrying += 1,
            Some(Phase::Stopped) => c.stopped += 1,
            Some(Phase::AlreadyFinished) => c.already_finished += 1,
            Some(Phase::Failed) => c.failed += 1,
        }
    }
    c
}

/// Pages of ListExecutions one pass reads before it gives the worker back to other sets
/// (`Wait(ZERO)`) and writes where the listing is. Why not one: each pass ends with a
/// status write, and a page is 99 executions — a write a page would be 0.02 writes per
/// execution for the two passes of a listing. A restart re-reads at most this many pages.
pub const PAGES_PER_PASS: u32 = 10;

/// A pass that has spent this long listing reads no further page: an endpoint that answers
/// each page slowly (a hostile one, just inside the call timeout) holds a set worker for
/// one page a pass, as it always did, not for ten. (Creating a page's ExecutionStops does
/// not count: that is the API server's time, not the endpoint's.)
pub const PASS_TIME: Duration = Duration::from_secs(2);

/// A NextToken longer than this is not kept in status (a status write must not fail on
/// size, whatever an endpoint answers).
const MAX_TOKEN: usize = 1024;

#[derive(Clone, Debug)]
pub enum Outcome {
    Nothing,
    Cannot(Cannot),
    Listed(Result<Page, FnfError>),
    /// The ExecutionStops asked for exist now, but for these executions, whose names were
    /// taken by objects the set did not create.
    Created {
        taken: Vec<String>,
    },
}

pub struct Input<'a> {
    pub spec: &'a ExecutionStopSetSpec,
    pub status: &'a ExecutionStopSetStatus,
    pub generation: i64,
    pub credentials: Credentials<'a>,
    pub outcome: &'a Outcome,
    /// The set's ExecutionStops, by phase.
    pub children: &'a ChildCounts,
    /// Whether an execution (by name) already has an ExecutionStop of this set.
    pub has_child: &'a dyn Fn(&str) -> bool,
    /// Pages of ListExecutions this pass has read so far (`PAGES_PER_PASS`).
    pub pages_this_pass: u32,
    /// How long this pass has spent listing: waiting for slots and for ListExecutions
    /// (`PASS_TIME`).
    pub pass_listing: Duration,
    pub now: Timestamp,
    pub jitter: f64,
    pub tuning: &'a Tuning,
    /// Whether the ExecutionStopPolicies allow this set now.
    pub verdict: &'a Verdict,
    /// Where objects' requests may go: judged before any key is read.
    pub endpoints: &'a super::endpoint::Endpoints,
    /// A GitOps tool (or Helm) manages the set: its TTL never deletes it.
    pub gitops_managed: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing to do until the set or one of its ExecutionStops changes.
    Done,
    Wait(Duration),
    ReadCredentials,
    /// Read one page of the matching executions started at or before `started_before`
    /// (when set), from `next_token`; the snapshot's time is persisted first.
    List {
        started_before: Option<Timestamp>,
        next_token: Option<String>,
    },
    /// Create one ExecutionStop for each of these executions (existing ones are kept).
    Create(Vec<String>),
    /// Final, and its `ttlSecondsAfterFinished` has passed: delete the set (its
    /// ExecutionStops go with it; no call).
    Delete,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub status: ExecutionStopSetStatus,
    /// Worth a Kubernetes Event: a change of phase or reason, and what happened on the way
    /// (a name found taken).
    pub events: Vec<Event>,
}

/// The status being decided, the reason last set on it, and Events of their own.
struct Draft {
    status: ExecutionStopSetStatus,
    reason: Option<Reason>,
    events: Vec<Event>,
}

impl std::ops::Deref for Draft {
    type Target = ExecutionStopSetStatus;
    fn deref(&self) -> &Self::Target {
        &self.status
    }
}

impl std::ops::DerefMut for Draft {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.status
    }
}

pub fn decide(i: &Input<'_>) -> Decision {
    let mut s = Draft {
        status: i.status.clone(),
        reason: None,
        events: vec![],
    };
    let action = match i.outcome {
        Outcome::Nothing => next_step(i, &mut s),
        // A rejected set whose Secret is gone stays as it is: there is nothing new to try.
        Outcome::Cannot(Cannot::NoCredentials(_)) if s.rejected_credentials_version.is_some() => {
            Action::Wait(i.tuning.credentials_recheck)
        }
        Outcome::Cannot(Cannot::NoCredentials(m)) => {
            let code = Reason::CredentialsNotFound;
            error(&mut s, code, m, true);
            set(i, &mut s, SetPhase::Failed, code, m);
            // The Secret may yet appear; look again now and then.
            Action::Wait(i.tuning.credentials_recheck.min(Duration::from_secs(60)))
        }
        Outcome::Cannot(Cannot::Unusable(m)) => refuse(i, &mut s, Reason::InvalidRequest, m),
        Outcome::Cannot(Cannot::EndpointNotAllowed(m)) => {
            refuse(i, &mut s, Reason::EndpointNotAllowed, m)
        }
        Outcome::Listed(Ok(listing)) => listed(i, &mut s, listing),
        Outcome::Listed(Err(e)) => list_failed(i, &mut s, e),
        Outcome::Created { taken } => created(i, &mut s, taken),
    };
    // A listing needs an endpoint it may go to, and keys: judge the one and read the other
    // first, deciding nothing else yet.
    if matches!(i.outcome, Outcome::Nothing)
        && i.credentials == Credentials::Unread
        && matches!(action, Action::List { .. } | Action::ReadCredentials)
    {
        return before_any_call(i);
    }
    let mut events = std::mem::take(&mut s.events);
    events.extend(s.reason.and_then(|r| event(i.status, &s.status, r)));
    Decision {
        action,
        status: s.status,
        events,
    }
}

/// Before the first call of a pass: where it would go is judged here (a precondition, as
/// the tenancy verdict is), so a refused endpoint sees no key read and no connection.
fn before_any_call(i: &Input<'_>) -> Decision {
    let why = match super::endpoint::resolve(i.spec, i.endpoints) {
        Ok(_) => {
            return Decision {
                action: Action::ReadCredentials,
                status: i.status.clone(),
                events: vec![],
            };
        }
        Err(Cannot::EndpointNotAllowed(m)) => (Reason::EndpointNotAllowed, m),
        Err(Cannot::Unusable(m) | Cannot::NoCredentials(m)) => (Reason::InvalidRequest, m),
    };
    let mut s = Draft {
        status: i.status.clone(),
        reason: None,
        events: vec![],
    };
    let action = refuse(i, &mut s, why.0, &why.1);
    let events = s.reason.and_then(|r| event(i.status, &s.status, r));
    Decision {
        action,
        status: s.status,
        events: events.into_iter().collect(),
    }
}

/// The listing's upper bound on start time: the selector's, and once live the snapshot's.
fn window_end(i: &Input<'_>, snapshot: Option<Timestamp>) -> Option<Timestamp> {
    let selector = i.spec.selector.started_before.as_ref().map(|t| t.0);
    match (selector, snapshot) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn next_step(i: &Input<'_>, s: &mut Draft) -> Action {
    if s.rejected_credentials_version.is_some() {
        return recheck(i, s);
    }
    // Retention: a set that is done (Completed, or failed for good) goes once its TTL has
    // passed. A preview is never done.
    let done = s.phase == Some(SetPhase::Completed) || gave_up(s);
    if done && !i.spec.dry_run {
        let ttl = i.spec.ttl_seconds_after_finished;
        match super::retention::retention(ttl, i.gitops_managed, &s.conditions, i.now) {
            super::retention::Retention::Delete => return Action::Delete,
            super::retention::Retention::After(d) => return Action::Wait(d),
            super::retention::Retention::Keep => {}
        }
    }
    if let Some(next) = &s.next_attempt_time {
        if next.0 > i.now {
            return Action::Wait(until(i.now, next.0));
        }
    }
    if i.spec.dry_run {
        let due = s
            .listed_time
            .as_ref()
            .map_or(i.now, |t| plus(t.0, i.tuning.preview_refresh));
        if s.phase == Some(SetPhase::Previewing) && due > i.now {
            return Action::Wait(until(i.now, due));
        }
        if gave_up(s) {
            return Action::Done;
        }
        if s.listing.is_none() {
            s.listing = Some(ListingProgress::start(ListPass::Counting));
        }
        return list(i, s, window_end(i, None));
    }
    match (s.snapshot_time.clone(), s.snapshot_complete) {
        (_, true) => by_children(i, s),
        (Some(t), false) if !gave_up(s) => {
            if s.listing.is_none() {
                s.listing = Some(ListingProgress::start(ListPass::Counting));
            }
            list(i, s, window_end(i, Some(t.0)))
        }
        (Some(_), false) => Action::Done,
        (None, _) => {
            // Going live: fix the snapshot's time before anything is listed, so a restart
            // lists the same executions and never ones started later.
            // Microseconds, as MicroTime keeps them: the API server would cut a Time to the
            // second and so leave out executions started just before going live.
            let t =
                MicroTime(Timestamp::from_microsecond(i.now.as_microsecond()).expect("in range"));
            s.snapshot_time = Some(t.clone());
            s.list_attempts = 0;
            s.last_error = None;
            // Going live counts afresh: a preview's figures never stand in for the
            // snapshot's (executions it counted may have ended since).
            s.matched = None;
            s.first_matches.clear();
            s.listing = Some(ListingProgress::start(ListPass::Counting));
            set(
                i,
                s,
                SetPhase::Listing,
                Reason::Listing,
                &format!(
                    "listing the executions of flow {} started up to {}",
                    i.spec.flow_name, t.0
                ),
            );
            // Refused or not, the snapshot is the moment the set went live: a set allowed
            // later never reaches executions that started after it was applied.
            list(i, s, window_end(i, Some(t.0)))
        }
    }
}

/// Every listing is checked against the policies first: a refused set lists nothing and
/// waits (phase Pending, reason Forbidden), looked at again every `policy_recheck`. Once
/// every ExecutionStop exists there is no listing left, and each of them is checked on its own.
fn list(i: &Input<'_>, s: &mut Draft, started_before: Option<Timestamp>) -> Action {
    if let Verdict::Denied(why) = i.verdict {
        error(s, Reason::Forbidden, why, false);
        s.next_attempt_time = None;
        set(i, s, SetPhase::Pending, Reason::Forbidden, why);
        return Action::Wait(i.tuning.policy_recheck);
    }
    if s.denied_by_policy {
        s.last_error = None;
        set(
            i,
            s,
            SetPhase::Listing,
            Reason::Listing,
            "an ExecutionStopPolicy allows the set now; listing",
        );
    }
    Action::List {
        started_before,
        next_token: s.listing.as_ref().and_then(|l| l.next_token.clone()),
    }
}

/// A set whose listing was refused with 403 lists again when its Secret changed, or once
/// `credentials_retry` has passed (the key may have been granted the action meanwhile).
fn recheck(i: &Input<'_>, s: &mut Draft) -> Action {
    let changed = match i.credentials {
        // Whether the Secret changed is only known by reading it.
        Credentials::Unread if i.spec.options.credentials_secret_ref.is_some() => {
            return Action::ReadCredentials;
        }
        Credentials::Secret(v) => s.rejected_credentials_version.as_deref() != Some(v),
        Credentials::Unread | Credentials::Operator => false,
    };
    let retry_at = s.next_attempt_time.as_ref().map_or(i.now, |t| t.0);
    if !changed && i.now < retry_at {
        return Action::Wait(until(i.now, retry_at).min(i.tuning.credentials_recheck));
    }
    let why = if changed {
        "listing again after a 403: the credentials Secret changed"
    } else {
        "listing again after a 403: the credentials retry time has come"
    };
    resume(i, s, why)
}

/// A set whose listing was refused (403) lists again now.
fn resume(i: &Input<'_>, s: &mut Draft, why: &str) -> Action {
    s.rejected_credentials_version = None;
    s.next_attempt_time = None;
    s.last_error = None;
    // Neither Failed nor Previewing: the next step is a listing.
    s.phase = None;
    let action = next_step(i, s);
    if s.phase.is_none() {
        set(i, s, SetPhase::Listing, Reason::Listing, why);
    }
    action
}

/// Failed for good: nothing more is tried. (A missing Secret is looked for again.)
fn gave_up(s: &ExecutionStopSetStatus) -> bool {
    s.phase == Some(SetPhase::Failed) && s.last_error.as_ref().is_none_or(|e| !e.retryable)
}

/// One page read. A listing goes `PAGES_PER_PASS` pages a pass (`Wait(ZERO)` in between),
/// so sets share the workers and a restart resumes from the recorded NextToken.
fn listed(i: &Input<'_>, s: &mut Draft, page: &Page) -> Action {
    s.list_attempts = 0;
    s.throttled_since = None;
    s.next_attempt_time = None;
    s.last_error = None;
    let mut l = s
        .listing
        .take()
        .unwrap_or_else(|| ListingProgress::start(ListPass::Counting));
    if page.next_token.is_some() && page.next_token == l.next_token {
        return endless(
            i,
            s,
            &format!(
                "ListExecutions answered page {} with the NextToken it was given; the listing would never end",
                l.pages + 1
            ),
        );
    }
    if page
        .next_token
        .as_ref()
        .is_some_and(|t| t.len() > MAX_TOKEN)
    {
        let msg = format!(
            "ListExecutions answered a NextToken of more than {MAX_TOKEN} characters; refused"
        );
        error(s, Reason::InvalidRequest, &msg, false);
        set(i, s, SetPhase::Failed, Reason::InvalidRequest, &msg);
        return Action::Done;
    }
    l.pages += 1;
    l.found = l
        .found
        .saturating_add(u32::try_from(page.names.len()).unwrap_or(u32::MAX));
    let last = page.next_token.is_none();
    l.next_token = page.next_token.clone();
    match l.pass {
        ListPass::Counting => {
            if l.pages == 1 {
                // A new count (a preview's refresh, say) names what it finds, not what an
                // earlier one found.
                s.first_matches.clear();
            }
            let room = FIRST_MATCHES.saturating_sub(s.first_matches.len());
            s.first_matches
                .extend(page.names.iter().take(room).map(|n| printable(n, 128)));
            let over = l.found > i.spec.max_count;
            if over || last {
                return counted(i, s, l, page);
            }
            s.listing = Some(l);
            more_pages(i, s)
        }
        ListPass::Creating => {
            s.listing = Some(l);
            let missing: Vec<String> = page
                .names
                .iter()
                .filter(|n| !(i.has_child)(n))
                .cloned()
                .collect();
            if missing.is_empty() {
                return created(i, s, &[]);
            }
            Action::Create(missing)
        }
    }
}

/// The count is complete (or past maxCount): a preview reports it; a live set within
/// maxCount goes on to create its ExecutionStops.
fn counted(i: &Input<'_>, s: &mut Draft, l: ListingProgress, page: &Page) -> Action {
    let max = i.spec.max_count;
    let over = l.found > max;
    // maxCount + 1 stands for "more than maxCount": counting stops there.
    let matched = l.found.min(max.saturating_add(1));
    s.listed_time = Some(second(i.now));
    s.listing = None;
    s.matched = Some(matched);
    if i.spec.dry_run {
        let msg = if over {
            format!(
                "dry run: more than maxCount ({max}) executions match; going live would stop none"
            )
        } else {
            format!("dry run: {matched} executions match; set spec.dryRun to false to stop them")
        };
        set(i, s, SetPhase::Previewing, Reason::Previewed, &msg);
        return Action::Wait(i.tuning.preview_refresh);
    }
    if over {
        let msg = format!(
            "more than maxCount ({max}) executions match; nothing was stopped (raise maxCount or narrow the selector in a new ExecutionStopSet)"
        );
        error(s, Reason::TooManyMatches, &msg, false);
        set(i, s, SetPhase::Failed, Reason::TooManyMatches, &msg);
        return Action::Done;
    }
    set(
        i,
        s,
        SetPhase::Listing,
        Reason::Listing,
        &format!("{matched} executions match; creating their ExecutionStops"),
    );
    if l.pages == 1 {
        // The whole snapshot came in one page: its names are at hand, no second listing.
        s.listing = Some(ListingProgress::start(ListPass::Creating));
        return listed(i, s, page);
    }
    s.listing = Some(ListingProgress::start(ListPass::Creating));
    Action::Wait(Duration::ZERO)
}

/// Another page is due: in this pass while it has read fewer than `PAGES_PER_PASS` and
/// listed for less than `PASS_TIME`, else in the next; unless this listing has run too long.
fn more_pages(i: &Input<'_>, s: &mut Draft) -> Action {
    let Some(l) = &s.listing else {
        return Action::Wait(Duration::ZERO);
    };
    if l.pages >= i.tuning.list_page_limit {
        let msg = format!(
            "ListExecutions kept answering with a NextToken: {} pages and {} matches without an end (the limit is {} pages a listing, --list-page-limit)",
            l.pages, l.found, i.tuning.list_page_limit
        );
        return endless(i, s, &msg);
    }
    if i.pages_this_pass < PAGES_PER_PASS && i.pass_listing < PASS_TIME {
        let snapshot = s.snapshot_time.as_ref().map(|t| t.0);
        let window = window_end(i, snapshot.filter(|_| !i.spec.dry_run));
        return list(i, s, window);
    }
    Action::Wait(Duration::ZERO)
}

fn endless(i: &Input<'_>, s: &mut Draft, msg: &str) -> Action {
    s.listing = None;
    error(s, Reason::EndlessListing, msg, false);
    set(i, s, SetPhase::Failed, Reason::EndlessListing, msg);
    Action::Done
}

/// A page's ExecutionStops exist (but for `taken`): on to the next page, or, after the
/// last, the snapshot is complete.
fn created(i: &Input<'_>, s: &mut Draft, taken: &[String]) -> Action {
    if !taken.is_empty() {
        s.name_conflicts = s
            .name_conflicts
            .saturating_add(u32::try_from(taken.len()).unwrap_or(u32::MAX));
        let room = FIRST_MATCHES.saturating_sub(s.name_taken.len());
        s.name_taken
            .extend(taken.iter().take(room).map(|n| printable(n, 128)));
        let msg = format!(
            "ExecutionStop names taken by objects this set did not create, for executions {}: those executions are not stopped by this set",
            taken
                .iter()
                .take(FIRST_MATCHES)
                .map(|n| printable(n, 128))
                .collect::<Vec<_>>()
                .join(", ")
        );
        s.events.push(Event {
            warning: true,
            reason: Reason::NameTaken,
            note: msg,
        });
    }
    let Some(l) = &s.listing else {
        s.snapshot_complete = true;
        return by_children(i, s);
    };
    if l.next_token.is_some() {
        return more_pages(i, s);
    }
    // Every page is done: the snapshot is what this pass found.
    s.matched = Some(l.found);
    s.listing = None;
    s.snapshot_complete = true;
    by_children(i, s)
}

fn list_failed(i: &Input<'_>, s: &mut Draft, e: &FnfError) -> Action {
    s.last_error = Some(last_error(e));
    if e.kind() == ErrorKind::Throttled {
        // Back-pressure, not a failure: not an attempt, bounded by time (as a stop's 429).
        let since = s.throttled_since.get_or_insert_with(|| second(i.now)).0;
        let throttled_for = until(since, i.now);
        if throttled_for < i.tuning.throttle_limit {
            let phase = s.phase.unwrap_or(SetPhase::Listing);
            set(
                i,
                s,
                phase,
                Reason::Retrying,
                &format!("will retry ListExecutions: {e}"),
            );
            return Action::Wait(i.tuning.throttle_retry);
        }
        let msg = format!(
            "gave up listing: every ListExecutions was throttled for {} s: {e}",
            throttled_for.as_secs()
        );
        if let Some(l) = s.last_error.as_mut() {
            l.retryable = false;
        }
        set(i, s, SetPhase::Failed, Reason::RetriesExhausted, &msg);
        return Action::Done;
    }
    s.throttled_since = None;
    if e.retryable() {
        s.list_attempts += 1;
        if s.list_attempts < i.tuning.max_attempts {
            let delay = backoff(i.tuning, s.list_attempts, i.jitter);
            s.next_attempt_time = Some(second_ceil(plus(i.now, delay)));
            let phase = s.phase.unwrap_or(SetPhase::Listing);
            set(
                i,
                s,
                phase,
                Reason::Retrying,
                &format!("will retry ListExecutions: {e}"),
            );
            return Action::Wait(delay);
        }
        let msg = format!("gave up listing after {} attempts: {e}", s.list_attempts);
        if let Some(l) = s.last_error.as_mut() {
            l.retryable = false;
        }
        set(i, s, SetPhase::Failed, Reason::RetriesExhausted, &msg);
        return Action::Done;
    }
    let why = match e.kind() {
        ErrorKind::NotFound => Reason::NotFound,
        ErrorKind::Auth => {
            // As an ExecutionStop: tried again when the Secret changes, or after a while.
            s.rejected_credentials_version = Some(match i.credentials {
                Credentials::Secret(v) => v.to_string(),
                Credentials::Unread | Credentials::Operator => "operator".to_string(),
            });
            s.next_attempt_time = Some(second_ceil(plus(i.now, i.tuning.credentials_retry)));
            set(
                i,
                s,
                SetPhase::Failed,
                Reason::CredentialsRejected,
                &e.to_string(),
            );
            return Action::Wait(i.tuning.credentials_recheck);
        }
        _ => Reason::InvalidRequest,
    };
    set(i, s, SetPhase::Failed, why, &e.to_string());
    Action::Done
}

/// Once every ExecutionStop exists: the set's phase is its children's.
fn by_children(i: &Input<'_>, s: &mut Draft) -> Action {
    // The cache may not show ExecutionStops just created: count those as pending. (Not
    // those whose names were taken: they were never created.)
    let mut c = i.children.clone();
    let expected = s.matched.unwrap_or(0).saturating_sub(s.name_conflicts);
    if c.total < expected {
        c.pending += expected - c.total;
        c.total = expected;
    }
    s.children = c.clone();
    let taken = s.name_conflicts;
    let (phase, reason, msg) = if c.total == 0 && taken == 0 {
        (
            SetPhase::Completed,
            Reason::NoMatches,
            "no execution matched the selector when the set went live; nothing to stop".to_string(),
        )
    } else if c.finals() < c.total {
        (
            SetPhase::Stopping,
            Reason::Stopping,
            format!("{} of {} executions final", c.finals(), c.total),
        )
    } else if taken > 0 {
        (
            SetPhase::Failed,
            Reason::NameTaken,
            format!(
                "{taken} executions not stopped: their ExecutionStop names are taken by objects this set did not create ({}); of the other {}: {} stopped, {} already finished, {} failed",
                s.name_taken.join(", "),
                c.total,
                c.stopped,
                c.already_finished,
                c.failed
            ),
        )
    } else if c.failed > 0 {
        (
            SetPhase::Failed,
            Reason::ChildrenFailed,
            format!(
                "{} of {} ExecutionStops failed ({} stopped, {} already finished)",
                c.failed, c.total, c.stopped, c.already_finished
            ),
        )
    } else {
        (
            SetPhase::Completed,
            Reason::Completed,
            format!(
                "all {} executions final: {} stopped, {} already finished",
                c.total, c.stopped, c.already_finished
            ),
        )
    };
    set(i, s, phase, reason, &msg);
    Action::Done
}

fn refuse(i: &Input<'_>, s: &mut Draft, why: Reason, m: &str) -> Action {
    error(s, why, m, false);
    s.rejected_credentials_version = None;
    s.next_attempt_time = None;
    set(i, s, SetPhase::Failed, why, m);
    Action::Done
}

fn error(s: &mut ExecutionStopSetStatus, code: Reason, message: &str, retryable: bool) {
    s.last_error = Some(LastError {
        code: code.as_str().into(),
        message: printable(message, 1024),
        http_status: None,
        request_id: None,
        retryable,
    });
}

fn set(i: &Input<'_>, s: &mut Draft, phase: SetPhase, reason: Reason, m: &str) {
    s.reason = Some(reason);
    s.phase = Some(phase);
    // Refused by policy is a state of its own, never left over under another reason.
    s.denied_by_policy = reason == Reason::Forbidden;
    s.observed_generation = Some(i.generation);
    // A preview is done when counted; a live set when every child is final and none
    // failed. Stalled: the set itself failed, or some children did.
    let ready = matches!(phase, SetPhase::Previewing | SetPhase::Completed);
    let settled = matches!(
        phase,
        SetPhase::Previewing | SetPhase::Completed | SetPhase::Failed
    );
    set_conditions(
        &mut s.conditions,
        [ready, !settled, phase == SetPhase::Failed],
        reason,
        &printable(m, 1024),
        i.generation,
        i.now,
    );
}

/// One Event per change of phase or reason (every retry is one).
fn event(
    old: &ExecutionStopSetStatus,
    new: &ExecutionStopSetStatus,
    reason: Reason,
) -> Option<Event> {
    let ready = |s: &ExecutionStopSetStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == super::condition::READY)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let (old_reason, note) = (ready(old).map(|r| r.0), ready(new)?.1);
    let changed = old.phase != new.phase || old_reason.as_deref() != Some(reason.as_str());
    if !changed && reason != Reason::Retrying {
        return None;
    }
    let warning = new.phase == Some(SetPhase::Failed)
        || matches!(reason, Reason::Retrying | Reason::Forbidden);
    Some(Event {
        warning,
        reason,
        note,
    })
}
