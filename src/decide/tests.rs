//! Table tests of `decide`: every phase × outcome the operator can meet.

use super::*;
use crate::crd::ExecutionStopSpec;

fn spec() -> ExecutionStopSpec {
    ExecutionStopSpec {
        flow_name: "flow".into(),
        execution_name: "exec".into(),
        options: crate::crd::StopOptions {
            max_attempts: Some(3),
            ..Default::default()
        },
        ttl_seconds_after_finished: None,
    }
}

/// The operator's endpoints in these tests: a default, and Alibaba's hosts allowed.
static ENDPOINTS: std::sync::LazyLock<endpoint::Endpoints> =
    std::sync::LazyLock::new(|| endpoint::Endpoints {
        default: Some(fnf::Endpoint::url("http://127.0.0.1:9", false).unwrap()),
        allow_insecure_http: false,
        allowed_hosts: endpoint::parse_allowlist(endpoint::DEFAULT_ALLOWED_HOSTS).unwrap(),
    });

fn t(s: &str) -> Timestamp {
    format!("2024-01-01T00:{s}Z").parse().unwrap()
}

fn exec(status: &str) -> Execution {
    serde_json::from_value(serde_json::json!({"Status": status, "RequestId": "rid", "StoppedTime": "2024-01-01T00:00:01.000Z"})).unwrap()
}

fn api(status: u16, code: &str) -> FnfError {
    FnfError::Api {
        status,
        code: code.into(),
        message: "m".into(),
        request_id: Some("r".into()),
    }
}

/// An `Input` with this file's defaults (the operator's keys, allowed, not abandoned, not
/// tracked by GitOps); a test changes what it is about.
struct Given<'a> {
    spec: ExecutionStopSpec,
    status: &'a ExecutionStopStatus,
    outcome: Outcome,
    now: Timestamp,
    credentials: Credentials<'a>,
    abandoned: bool,
    verdict: policy::Verdict,
    gitops_managed: bool,
}

impl<'a> Given<'a> {
    fn new(status: &'a ExecutionStopStatus, outcome: Outcome, now: Timestamp) -> Self {
        Given {
            spec: spec(),
            status,
            outcome,
            now,
            credentials: Credentials::Operator,
            abandoned: false,
            verdict: policy::Verdict::Allowed,
            gitops_managed: false,
        }
    }

    fn decide(&self) -> Decision {
        decide(&Input {
            spec: &self.spec,
            status: self.status,
            generation: 1,
            uid: "uid",
            abandoned: self.abandoned,
            created: t("00:00"),
            credentials: self.credentials,
            outcome: &self.outcome,
            now: self.now,
            jitter: 0.5,
            tuning: &TUNING,
            verdict: &self.verdict,
            endpoints: &ENDPOINTS,
            gitops_managed: self.gitops_managed,
        })
    }
}

static TUNING: std::sync::LazyLock<Tuning> = std::sync::LazyLock::new(Tuning::default);

/// Runs `decide` on `status` with `outcome` at `now`.
fn run(status: &ExecutionStopStatus, outcome: Outcome, now: &str) -> Decision {
    run_with(status, outcome, now, None)
}

fn run_with(
    status: &ExecutionStopStatus,
    outcome: Outcome,
    now: &str,
    creds: Option<&str>,
) -> Decision {
    Given {
        credentials: creds.map_or(Credentials::Operator, Credentials::Secret),
        ..Given::new(status, outcome, t(now))
    }
    .decide()
}

fn ready(s: &ExecutionStopStatus) -> (&str, &str) {
    let c = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    (c.status.as_str(), c.reason.as_str())
}

/// A status right after attempt `n` was recorded.
fn attempted(n: u32) -> ExecutionStopStatus {
    let mut s = ExecutionStopStatus::default();
    for _ in 0..n {
        s.pending_request_id = None;
        s.phase = Some(Phase::Retrying);
        s.next_attempt_time = None;
        s = run(&s, Outcome::Nothing, "00:00").status;
    }
    s
}

#[test]
fn a_new_object_records_attempt_one_before_calling() {
    let d = run(&ExecutionStopStatus::default(), Outcome::Nothing, "00:00");
    assert_eq!(
        d.action,
        Action::Stop {
            request_id: "uid-1".into()
        }
    );
    assert_eq!(d.status.phase, Some(Phase::Stopping));
    assert_eq!(d.status.attempts, 1);
    assert_eq!(d.status.pending_request_id.as_deref(), Some("uid-1"));
    assert_eq!(ready(&d.status), ("False", "Stopping"));
    assert_eq!(d.status.observed_generation, Some(1));
    assert_eq!(
        d.event.as_ref().map(|e| (e.warning, e.reason.as_str())),
        Some((false, "Stopping"))
    );
}

#[test]
fn stop_answers() {
    let s = attempted(1);
    type Case = (
        Result<Execution, FnfError>,
        Phase,
        Action,
        (&'static str, &'static str),
    );
    let cases: Vec<Case> = vec![
        (
            Ok(exec("Stopped")),
            Phase::Stopped,
            Action::Done,
            ("True", "Stopped"),
        ),
        (
            Ok(exec("Succeeded")),
            Phase::AlreadyFinished,
            Action::Done,
            ("True", "AlreadyFinished"),
        ),
        (
            Ok(exec("Running")),
            Phase::Stopping,
            Action::Describe { wait_seconds: 10 },
            ("False", "Confirming"),
        ),
        (
            Err(api(400, "ExecutionAlreadyCompleted")),
            Phase::Stopping,
            Action::Describe { wait_seconds: 0 },
            ("False", "Confirming"),
        ),
        (
            Err(api(404, "FlowNotExists")),
            Phase::Failed,
            Action::Done,
            ("False", "NotFound"),
        ),
        (
            Err(api(404, "ExecutionNotExists")),
            Phase::Failed,
            Action::Done,
            ("False", "NotFound"),
        ),
        (
            Err(api(400, "InvalidArgument")),
            Phase::Failed,
            Action::Done,
            ("False", "InvalidRequest"),
        ),
        (
            Err(api(403, "SignatureNotMatch")),
            Phase::Failed,
            Action::Wait(Duration::from_secs(300)),
            ("False", "CredentialsRejected"),
        ),
        (
            Err(api(500, "InternalServerError")),
            Phase::Retrying,
            Action::Wait(Duration::from_secs(1)),
            ("False", "Retrying"),
        ),
        (
            Err(api(429, "ResourceThrottled")),
            Phase::Retrying,
            Action::Wait(Duration::from_millis(50)),
            ("False", "Retrying"),
        ),
        (
            Err(api(409, "ConcurrentUpdateError")),
            Phase::Retrying,
            Action::Wait(Duration::from_secs(1)),
            ("False", "Retrying"),
        ),
        (
            Err(FnfError::Timeout("t".into())),
            Phase::Retrying,
            Action::Wait(Duration::from_secs(1)),
            ("False", "Retrying"),
        ),
    ];
    for (result, phase, action, cond) in cases {
        let d = run(&s, Outcome::Stop(result.clone()), "00:00");
        assert_eq!(d.status.phase, Some(phase), "{result:?}");
        assert_eq!(d.action, action, "{result:?}");
        assert_eq!(ready(&d.status), cond, "{result:?}");
        assert_eq!(d.status.pending_request_id, None, "{result:?}");
        let stalled = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .unwrap();
        assert_eq!(
            stalled.status == "True",
            phase == Phase::Failed,
            "{result:?}"
        );
    }
}

#[test]
fn errors_land_in_status_with_code_message_status_and_request_id() {
    let e = api(404, "FlowNotExists");
    let d = run(&attempted(1), Outcome::Stop(Err(e.clone())), "00:00");
    let l = d.status.last_error.unwrap();
    assert_eq!(
        (
            l.code.as_str(),
            l.message.as_str(),
            l.http_status,
            l.request_id.as_deref(),
            l.retryable
        ),
        ("FlowNotExists", "m", Some(404), Some("r"), false)
    );
    assert_eq!(
        d.event.map(|e| (e.warning, e.reason.as_str())),
        Some((true, "NotFound"))
    );
}

#[test]
fn retries_wait_for_next_attempt_time_then_exhaust() {
    let e = api(500, "InternalServerError");
    let d = run(&attempted(1), Outcome::Stop(Err(e.clone())), "00:00");
    assert_eq!(d.status.next_attempt_time, Some(second(t("00:01"))));
    // Woken early (e.g. by our own status write): wait the rest.
    let early = run(&d.status, Outcome::Nothing, "00:00.400");
    assert_eq!(early.action, Action::Wait(Duration::from_millis(600)));
    assert_eq!(early.status, d.status, "nothing changes while waiting");
    assert_eq!(early.event, None);
    // Due: attempt 2.
    let second_try = run(&d.status, Outcome::Nothing, "00:01");
    assert_eq!(
        second_try.action,
        Action::Stop {
            request_id: "uid-2".into()
        }
    );
    // Attempt 3 of 3 fails: give up.
    let mut s = attempted(3);
    s.pending_request_id = None;
    let last = run(&s, Outcome::Stop(Err(e.clone())), "00:05");
    assert_eq!(last.status.phase, Some(Phase::Failed));
    assert_eq!(ready(&last.status), ("False", "RetriesExhausted"));
    assert_eq!(last.action, Action::Done);
    assert_eq!(last.status.last_error.unwrap().code, "InternalServerError");
}

#[test]
fn backoff_grows_with_full_jitter_and_a_cap() {
    let p = Tuning::default();
    assert_eq!(backoff(&p, 1, 1.0), Duration::from_secs(1));
    assert_eq!(backoff(&p, 3, 1.0), Duration::from_secs(4));
    assert_eq!(backoff(&p, 30, 1.0), Duration::from_secs(60));
    assert_eq!(backoff(&p, 3, 0.5), Duration::from_secs(2));
    assert_eq!(
        backoff(&p, 3, 0.0),
        Duration::from_millis(100),
        "a floor keeps it from spinning"
    );
}

#[test]
fn already_completed_is_an_outcome_with_the_real_final_status() {
    let e = api(400, "ExecutionAlreadyCompleted");
    let d = run(&attempted(1), Outcome::Stop(Err(e.clone())), "00:00");
    for (final_status, phase) in [
        ("Succeeded", Phase::AlreadyFinished),
        ("Failed", Phase::AlreadyFinished),
        ("Stopped", Phase::AlreadyFinished),
    ] {
        let ex = exec(final_status);
        let f = run(&d.status, Outcome::Describe(Ok(ex.clone())), "00:01");
        assert_eq!(f.status.phase, Some(phase), "{final_status}");
        assert_eq!(ready(&f.status), ("True", "AlreadyFinished"));
        assert_eq!(
            f.status.execution.as_ref().unwrap().status.as_deref(),
            Some(final_status)
        );
        assert_eq!(f.action, Action::Done);
    }
}

#[test]
fn already_completed_after_an_earlier_lost_attempt_is_our_stop() {
    // Attempt 1 timed out but landed; attempt 2 hears "already completed"; it is Stopped.
    let e = api(400, "ExecutionAlreadyCompleted");
    let lost = timeout();
    let first = run(&attempted(1), Outcome::Stop(Err(lost.clone())), "00:01");
    let second = run(&first.status, Outcome::Nothing, "00:02");
    assert!(matches!(second.action, Action::Stop { .. }));
    let d = run(&second.status, Outcome::Stop(Err(e.clone())), "00:02");
    let ex = exec("Stopped");
    let f = run(&d.status, Outcome::Describe(Ok(ex.clone())), "00:02");
    assert_eq!(f.status.phase, Some(Phase::Stopped));
    assert_eq!(f.status.last_error, None);
}

#[test]
fn a_running_answer_is_confirmed_by_describe() {
    let running = exec("Running");
    let d = run(&attempted(1), Outcome::Stop(Ok(running.clone())), "00:00");
    assert_eq!(d.status.request_id.as_deref(), Some("rid"));
    let still = run(&d.status, Outcome::Describe(Ok(running.clone())), "00:10");
    assert_eq!(still.action, Action::Describe { wait_seconds: 10 });
    let stopped = exec("Stopped");
    let done = run(
        &still.status,
        Outcome::Describe(Ok(stopped.clone())),
        "00:11",
    );
    assert_eq!(done.status.phase, Some(Phase::Stopped));
    // Confirming past the window: send the stop again.
    let late = run(
        &still.status,
        Outcome::Describe(Ok(running.clone())),
        "06:00",
    );
    assert_eq!(
        late.action,
        Action::Stop {
            request_id: "uid-2".into()
        }
    );
}

#[test]
fn after_a_crash_the_recorded_attempt_is_confirmed_before_any_new_call() {
    let s = attempted(1); // pending_request_id set, outcome never written
    let d = run(&s, Outcome::Nothing, "00:30");
    assert_eq!(d.action, Action::Describe { wait_seconds: 0 });
    let stopped = exec("Stopped");
    let ok = run(&d.status, Outcome::Describe(Ok(stopped.clone())), "00:30");
    assert_eq!(
        ok.status.phase,
        Some(Phase::Stopped),
        "the lost call had landed"
    );
    let running = exec("Running");
    let again = run(&d.status, Outcome::Describe(Ok(running.clone())), "00:30");
    assert_eq!(
        again.action,
        Action::Stop {
            request_id: "uid-2".into()
        },
        "it had not: try again"
    );
    let succeeded = exec("Succeeded");
    let ended = run(&d.status, Outcome::Describe(Ok(succeeded.clone())), "00:30");
    assert_eq!(ended.status.phase, Some(Phase::AlreadyFinished));
}

/// Found by the soak: after a crash the recorded attempt is confirmed with
/// DescribeExecution; one refused (409) set a retry time, an early pass (the operator's own
/// status write) read "Running" before that time, and the object waited, Stopping with an
/// unconfirmed attempt, which the next pass took for an accepted stop and confirmed for the
/// whole confirm window (300 s) instead of trying again.
#[test]
fn a_running_answer_after_a_refused_describe_tries_again_not_waits_out_the_confirm_window() {
    let s = attempted(1); // recorded at 00:00, the operator died before the call
    let d = run(&s, Outcome::Nothing, "00:01");
    assert_eq!(d.action, Action::Describe { wait_seconds: 0 });
    let refused = run(
        &d.status,
        Outcome::Describe(Err(api(409, "ConcurrentUpdateError"))),
        "00:01",
    );
    assert!(refused.status.next_attempt_time.is_some(), "backs off");
    let next = run(
        &refused.status,
        Outcome::Describe(Ok(exec("Running"))),
        "00:01",
    );
    assert_eq!(
        next.action,
        Action::Stop {
            request_id: "uid-2".into()
        },
        "the recorded attempt did not stop it: the next one goes out, status {:?}",
        next.status
    );
}

#[test]
fn final_phases_make_no_calls_and_no_writes() {
    let stopped = exec("Stopped");
    let done = run(&attempted(1), Outcome::Stop(Ok(stopped.clone())), "00:00").status;
    for now in ["00:01", "59:00"] {
        let d = run(&done, Outcome::Nothing, now);
        assert_eq!(d.action, Action::Done);
        assert_eq!(d.status, done);
        assert_eq!(d.event, None);
    }
}

#[test]
fn lost_credentials_wait_without_calling_and_poll_slowly() {
    let d = run(
        &ExecutionStopStatus::default(),
        Outcome::Cannot(Cannot::NoCredentials("Secret creds not found".into())),
        "00:00",
    );
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert_eq!(ready(&d.status), ("False", "CredentialsNotFound"));
    assert_eq!(d.status.attempts, 0);
    assert_eq!(d.action, Action::Wait(Duration::from_secs(2)));
    assert_eq!(
        d.status.last_error.as_ref().unwrap().code,
        "CredentialsNotFound"
    );
    let later = run(
        &d.status,
        Outcome::Cannot(Cannot::NoCredentials("Secret creds not found".into())),
        "40:00",
    );
    assert_eq!(later.action, Action::Wait(Duration::from_secs(300)));
    assert_eq!(later.event, None, "the same reason again is no new event");
    // Once the Secret is there: the first attempt.
    let go = run(&later.status, Outcome::Nothing, "40:01");
    assert_eq!(
        go.action,
        Action::Stop {
            request_id: "uid-1".into()
        }
    );
}

#[test]
fn rejected_credentials_retry_only_when_the_secret_changes_or_much_later() {
    let e = api(403, "InvalidAccessKeyID");
    let d = run_with(
        &attempted(1),
        Outcome::Stop(Err(e.clone())),
        "00:00",
        Some("rv1"),
    );
    assert_eq!(
        d.status.rejected_credentials_version.as_deref(),
        Some("rv1")
    );
    let same = run_with(&d.status, Outcome::Nothing, "10:00", Some("rv1"));
    assert_eq!(same.action, Action::Wait(Duration::from_secs(300)));
    let changed = run_with(&d.status, Outcome::Nothing, "10:00", Some("rv2"));
    assert_eq!(
        changed.action,
        Action::Stop {
            request_id: "uid-1".into()
        },
        "a retry that does not count"
    );
    assert_eq!(changed.status.rejected_credentials_version, None);
    let mut late_status = d.status.clone();
    late_status.last_attempt_time = Some(second(t("00:00")));
    let late = Given {
        credentials: Credentials::Secret("rv1"),
        ..Given::new(
            &late_status,
            Outcome::Nothing,
            t("00:00") + SignedDuration::from_hours(1),
        )
    }
    .decide();
    assert!(matches!(late.action, Action::Stop { .. }));
}

#[test]
fn describe_failures_back_off_without_counting_attempts() {
    let running = exec("Running");
    let d = run(&attempted(1), Outcome::Stop(Ok(running.clone())), "00:00");
    let e = api(500, "InternalServerError");
    let f = run(&d.status, Outcome::Describe(Err(e.clone())), "00:01");
    assert_eq!(f.status.attempts, 1);
    assert!(matches!(f.action, Action::Wait(_)));
    assert_eq!(f.status.phase, Some(Phase::Stopping));
    let nf = api(404, "ExecutionNotExists");
    let g = run(&d.status, Outcome::Describe(Err(nf.clone())), "00:01");
    assert_eq!(g.status.phase, Some(Phase::Failed));
}

#[test]
fn transition_times_stay_put_unless_the_condition_flips() {
    let e = api(500, "InternalServerError");
    let a = run(&attempted(1), Outcome::Stop(Err(e.clone())), "00:00").status;
    let b = run(&a, Outcome::Nothing, "00:05").status; // attempt 2 recorded at 00:05
    let t_a = a
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone();
    let t_b = b
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone();
    assert_eq!(t_a, t_b, "Ready stayed False");
    let stopped = exec("Stopped");
    let c = run(&b, Outcome::Stop(Ok(stopped.clone())), "00:06").status;
    let t_c = c
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone();
    assert_eq!(t_c, second(t("00:06")));
}

#[test]
fn an_unusable_request_fails_without_a_call() {
    let d = run(
        &ExecutionStopStatus::default(),
        Outcome::Cannot(Cannot::Unusable("no endpoint".into())),
        "00:00",
    );
    assert_eq!(
        (d.status.phase, d.action.clone()),
        (Some(Phase::Failed), Action::Done)
    );
    assert_eq!(ready(&d.status), ("False", "InvalidRequest"));
    assert_eq!(d.status.attempts, 0);
    assert_eq!(d.status.last_error.unwrap().message, "no endpoint");
}

#[test]
fn a_garbled_success_is_confirmed_not_resent() {
    let e = FnfError::BadResponse {
        status: 200,
        detail: "truncated".into(),
    };
    let d = run(&attempted(1), Outcome::Stop(Err(e.clone())), "00:00");
    assert_eq!(d.action, Action::Describe { wait_seconds: 0 });
    assert_eq!(d.status.attempts, 1);
    assert_eq!(d.status.last_error.as_ref().unwrap().code, "BadResponse");
    let stopped = exec("Stopped");
    assert_eq!(
        run(&d.status, Outcome::Describe(Ok(stopped.clone())), "00:01")
            .status
            .phase,
        Some(Phase::Stopped)
    );
    // A garbled Describe answer is asked again later, without counting an attempt.
    let again = run(&d.status, Outcome::Describe(Err(e.clone())), "00:01");
    assert!(
        matches!(again.action, Action::Wait(_)),
        "{:?}",
        again.action
    );
    assert_eq!(again.status.attempts, 1);
    let running = exec("Running");
    let resend = run(&d.status, Outcome::Describe(Ok(running.clone())), "00:01");
    assert_eq!(
        resend.action,
        Action::Describe { wait_seconds: 10 },
        "a stop may still be landing"
    );
}

fn timeout() -> FnfError {
    FnfError::Timeout("t".into())
}

/// Runs `decide` through a sequence of outcomes, each on the status the one before returned.
fn through(mut s: ExecutionStopStatus, steps: &[(Outcome, &str)]) -> Decision {
    let mut last = None;
    for (outcome, now) in steps {
        let d = run(&s, outcome.clone(), now);
        s = d.status.clone();
        last = Some(d);
    }
    last.expect("at least one step")
}

struct Attribution {
    name: &'static str,
    steps: Vec<(Outcome, &'static str)>,
    phase: Phase,
    request_id: Option<&'static str>,
}

/// Who stopped the execution: `Stopped` only when one of our attempts can have done it.
#[test]
fn a_stop_is_ours_only_when_one_of_our_attempts_can_have_made_it() {
    let done = || Outcome::Stop(Err(api(400, "ExecutionAlreadyCompleted")));
    let stopped = || Outcome::Describe(Ok(exec("Stopped")));
    let running = exec("Running");
    let cases = [
        Attribution {
            name: "someone else stopped it before our only attempt",
            steps: vec![(done(), "00:01"), (stopped(), "00:01")],
            phase: Phase::AlreadyFinished,
            request_id: None,
        },
        Attribution {
            name: "someone else stopped it after a throttled attempt",
            steps: vec![
                (Outcome::Stop(Err(api(429, "ResourceThrottled"))), "00:01"),
                (Outcome::Nothing, "00:02"),
                (done(), "00:02"),
                (stopped(), "00:02"),
            ],
            phase: Phase::AlreadyFinished,
            request_id: None,
        },
        Attribution {
            name: "an attempt that timed out, then already completed",
            steps: vec![
                (Outcome::Stop(Err(timeout())), "00:01"),
                (Outcome::Nothing, "00:10"),
                (done(), "00:10"),
                (stopped(), "00:10"),
            ],
            phase: Phase::Stopped,
            request_id: Some("uid-1"),
        },
        Attribution {
            name: "an asynchronous stop keeps the id of the call that succeeded",
            steps: vec![
                (Outcome::Stop(Ok(running.clone())), "00:01"),
                (stopped(), "00:02"),
            ],
            phase: Phase::Stopped,
            request_id: Some("rid"),
        },
        Attribution {
            name: "an attempt left pending by a restart, found stopped",
            steps: vec![(stopped(), "00:05")],
            phase: Phase::Stopped,
            request_id: Some("uid-1"),
        },
        Attribution {
            name: "a pending attempt found running, then already completed",
            steps: vec![
                (Outcome::Describe(Ok(running.clone())), "00:05"),
                (Outcome::Nothing, "00:05"),
                (done(), "00:05"),
                (stopped(), "00:05"),
            ],
            phase: Phase::Stopped,
            request_id: Some("uid-1"),
        },
    ];
    for case in cases {
        let d = through(attempted(1), &case.steps);
        assert_eq!(d.status.phase, Some(case.phase), "{}", case.name);
        assert_eq!(
            d.status.request_id.as_deref(),
            case.request_id,
            "{}",
            case.name
        );
        assert_eq!(d.status.pending_request_id, None, "{}", case.name);
        assert_eq!(d.status.unconfirmed_request_id, None, "{}", case.name);
        if case.phase == Phase::AlreadyFinished {
            assert_eq!(
                d.status.execution.as_ref().unwrap().status.as_deref(),
                Some("Stopped"),
                "{}",
                case.name
            );
        }
    }
}

fn run_unread(s: &ExecutionStopStatus, outcome: Outcome, now: &str) -> Decision {
    let mut spec = spec();
    spec.options.credentials_secret_ref = Some(crate::crd::SecretRef {
        name: "creds".into(),
    });
    Given {
        spec,
        credentials: Credentials::Unread,
        ..Given::new(s, outcome, t(now))
    }
    .decide()
}

#[test]
fn credentials_are_read_before_a_call_and_before_a_rejected_object_is_rechecked() {
    let fresh = ExecutionStopStatus::default();
    let d = run_unread(&fresh, Outcome::Nothing, "00:00");
    assert_eq!(d.action, Action::ReadCredentials);
    assert_eq!(
        d.status, fresh,
        "nothing recorded before the keys are known"
    );
    assert_eq!(d.event, None);
    // Rejected (403) with a Secret: its version is needed to know whether it changed.
    let e = api(403, "SignatureNotMatch");
    let rejected = run_with(
        &attempted(1),
        Outcome::Stop(Err(e.clone())),
        "00:00",
        Some("rv1"),
    )
    .status;
    let d = run_unread(&rejected, Outcome::Nothing, "05:00");
    assert_eq!(d.action, Action::ReadCredentials);
    assert_eq!(d.status, rejected);
    // The Secret is gone meanwhile: still Failed, checked again later, no event.
    let d = run_unread(
        &rejected,
        Outcome::Cannot(Cannot::NoCredentials("gone".into())),
        "05:00",
    );
    assert_eq!(d.action, Action::Wait(Duration::from_secs(300)));
    assert_eq!(d.status, rejected);
    assert_eq!(d.event, None);
}

/// The shell decides a Stop again after the rate limiter's wait: only time has passed,
/// so it must still be a Stop.
#[test]
fn a_stop_stays_a_stop_when_only_time_passes() {
    let e500 = api(500, "InternalServerError");
    let starts = [
        ExecutionStopStatus::default(),
        run(&attempted(1), Outcome::Stop(Err(e500.clone())), "00:00").status,
        run(&attempted(1), Outcome::Stop(Err(timeout())), "00:00").status,
        run(
            &attempted(1),
            Outcome::Stop(Err(api(429, "ResourceThrottled"))),
            "00:00",
        )
        .status,
    ];
    assert!(
        starts.iter().all(|s| s.pending_request_id.is_none()),
        "each start can lead to a Stop"
    );
    for s in starts {
        for now in ["00:00", "00:05", "30:00"] {
            let first = run(&s, Outcome::Nothing, now);
            if !matches!(first.action, Action::Stop { .. }) {
                continue;
            }
            for later in ["00:06", "31:00", "59:59"] {
                if t(later) < t(now) {
                    continue;
                }
                let again = run(&s, Outcome::Nothing, later);
                assert!(
                    matches!(again.action, Action::Stop { .. }),
                    "{s:?} at {now} then {later}: {:?}",
                    again.action
                );
            }
        }
    }
}

#[test]
fn events_of_a_pass_fold_into_what_a_reader_needs() {
    let ev = |warning, reason: Reason| Event {
        warning,
        reason,
        note: reason.as_str().into(),
    };
    let reasons = |v: Vec<Event>| v.into_iter().map(|e| e.reason).collect::<Vec<_>>();
    let cases: [(&str, Vec<Event>, Vec<Reason>); 5] = [
        (
            "settled in the pass: the outcome alone",
            vec![ev(false, Reason::Stopping), ev(false, Reason::Stopped)],
            vec![Reason::Stopped],
        ),
        (
            "already finished after confirming",
            vec![
                ev(false, Reason::Stopping),
                ev(false, Reason::Confirming),
                ev(false, Reason::AlreadyFinished),
            ],
            vec![Reason::AlreadyFinished],
        ),
        (
            "not settled: the first progress event",
            vec![ev(false, Reason::Stopping), ev(false, Reason::Confirming)],
            vec![Reason::Stopping],
        ),
        (
            "a failure keeps the attempt",
            vec![ev(false, Reason::Stopping), ev(true, Reason::Retrying)],
            vec![Reason::Stopping, Reason::Retrying],
        ),
        ("nothing", vec![], vec![]),
    ];
    for (name, events, want) in cases {
        assert_eq!(reasons(fold_events(events)), want, "{name}");
    }
}

#[test]
fn a_describe_refused_for_good_keeps_the_attempt_it_was_confirming() {
    // Restarted with attempt uid-1 pending; DescribeExecution answers 403.
    let denied = api(403, "AccessDenied");
    let d = run_with(
        &attempted(1),
        Outcome::Describe(Err(denied)),
        "00:01",
        Some("rv1"),
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(d.status.pending_request_id, None);
    assert_eq!(d.status.unconfirmed_request_id.as_deref(), Some("uid-1"));
    // The Secret is fixed; the retry hears "already completed"; uid-1 did it.
    let retry = run_with(&d.status, Outcome::Nothing, "00:02", Some("rv2"));
    assert!(matches!(retry.action, Action::Stop { .. }));
    let done = run(
        &retry.status,
        Outcome::Stop(Err(api(400, "ExecutionAlreadyCompleted"))),
        "00:02",
    );
    let f = run(
        &done.status,
        Outcome::Describe(Ok(exec("Stopped"))),
        "00:02",
    );
    assert_eq!(f.status.phase, Some(Phase::Stopped));
    assert_eq!(f.status.request_id.as_deref(), Some("uid-1"));
}

#[test]
fn an_unreadable_success_is_confirmed_again_in_a_later_pass_not_resent() {
    let garbled = FnfError::BadResponse {
        status: 200,
        detail: "truncated".into(),
    };
    let d = run(&attempted(1), Outcome::Stop(Err(garbled)), "00:01");
    assert!(matches!(d.action, Action::Describe { .. }));
    let failed = run(
        &d.status,
        Outcome::Describe(Err(api(503, "ServiceUnavailable"))),
        "00:01",
    );
    assert!(matches!(failed.action, Action::Wait(_)));
    let later = run(&failed.status, Outcome::Nothing, "00:30");
    assert!(
        matches!(later.action, Action::Describe { .. }),
        "{:?}",
        later.action
    );
    assert_eq!(later.status.attempts, 1);
}

#[test]
fn an_accepted_stop_without_a_request_id_keeps_ours() {
    let running: Execution =
        serde_json::from_value(serde_json::json!({"Status": "Running"})).unwrap();
    let d = run(&attempted(1), Outcome::Stop(Ok(running)), "00:01");
    assert_eq!(d.status.request_id.as_deref(), Some("uid-1"));
    let later = run(&d.status, Outcome::Nothing, "00:02");
    assert!(
        matches!(later.action, Action::Describe { .. }),
        "confirmed, not resent: {:?}",
        later.action
    );
    let f = run(
        &later.status,
        Outcome::Describe(Ok(exec("Stopped"))),
        "00:03",
    );
    assert_eq!(f.status.phase, Some(Phase::Stopped));
    assert_eq!(f.status.request_id.as_deref(), Some("uid-1"));
}

#[test]
fn confirming_gives_up_after_the_confirm_window() {
    let running = exec("Running");
    let d = run(&attempted(1), Outcome::Stop(Ok(running)), "00:00");
    let e = api(503, "ServiceUnavailable");
    let early = run(&d.status, Outcome::Describe(Err(e.clone())), "01:00");
    assert_eq!(early.status.phase, Some(Phase::Stopping));
    let w = early.event.as_ref().expect("a retry event");
    assert!(w.warning, "a retry is a warning: {w:?}");
    let late = run(&d.status, Outcome::Describe(Err(e)), "05:01");
    assert_eq!(late.status.phase, Some(Phase::Failed));
    assert_eq!(ready(&late.status), ("False", "RetriesExhausted"));
    assert_eq!(late.action, Action::Done);
}

#[test]
fn a_refused_endpoint_leaves_no_stale_retry_state() {
    let e = api(403, "InvalidAccessKeyID");
    let rejected = run(&attempted(1), Outcome::Stop(Err(e)), "00:00").status;
    let d = run(
        &rejected,
        Outcome::Cannot(Cannot::EndpointNotAllowed(
            "spec.endpoint host x is not allowed".into(),
        )),
        "00:10",
    );
    assert_eq!(ready(&d.status), ("False", "EndpointNotAllowed"));
    assert_eq!(d.status.rejected_credentials_version, None);
    let again = run(&d.status, Outcome::Nothing, "05:00");
    assert_eq!(again.action, Action::Done);
    assert_eq!(again.event, None);
}

#[test]
fn foreign_text_in_status_is_bounded() {
    let huge = FnfError::Api {
        status: 400,
        code: "X".repeat(10_000),
        message: "m".repeat(900_000),
        request_id: Some("r".repeat(10_000)),
    };
    let d = run(&attempted(1), Outcome::Stop(Err(huge)), "00:00");
    let l = d.status.last_error.as_ref().unwrap();
    assert!(l.code.chars().count() <= 129 && l.message.chars().count() <= 1025);
    assert!(l.request_id.as_ref().unwrap().chars().count() <= 129);
    for c in &d.status.conditions {
        assert!(c.message.chars().count() <= 1025, "{}", c.message.len());
    }
}

#[test]
fn an_execution_stop_whose_set_is_gone_makes_no_further_call() {
    let decide_abandoned = |status: &ExecutionStopStatus| {
        Given {
            abandoned: true,
            ..Given::new(status, Outcome::Nothing, t("00:10"))
        }
        .decide()
    };
    // Not yet called, and waiting to retry: both end, with no call.
    let retrying = ExecutionStopStatus {
        phase: Some(Phase::Retrying),
        attempts: 1,
        ..Default::default()
    };
    for s in [ExecutionStopStatus::default(), retrying] {
        let d = decide_abandoned(&s);
        assert_eq!(d.action, Action::Done, "{s:?}");
        assert_eq!(d.status.phase, Some(Phase::Failed));
        assert_eq!(d.status.last_error.unwrap().code, "SetDeleted");
    }
    // An attempt on record may have gone out: it stays known as unconfirmed.
    let d = decide_abandoned(&attempted(1));
    assert_eq!(d.action, Action::Done);
    assert!(d.status.unconfirmed_request_id.is_some());
    // A final stop is left as it is.
    let done = ExecutionStopStatus {
        phase: Some(Phase::Stopped),
        ..Default::default()
    };
    let d = decide_abandoned(&done);
    assert_eq!((d.action, d.status), (Action::Done, done));
}

fn run_verdict(s: &ExecutionStopStatus, outcome: Outcome, verdict: policy::Verdict) -> Decision {
    Given {
        verdict,
        ..Given::new(s, outcome, t("00:00"))
    }
    .decide()
}

#[test]
fn a_stop_the_policies_refuse_makes_no_call_until_one_allows_it() {
    let denied = || policy::Verdict::Denied("no ExecutionStopPolicy selects namespace ns".into());
    let d = run_verdict(&ExecutionStopStatus::default(), Outcome::Nothing, denied());
    assert_eq!(d.action, Action::Wait(Tuning::default().policy_recheck));
    assert_eq!(
        d.status.phase,
        Some(Phase::Pending),
        "waiting for a policy, not final"
    );
    assert_eq!(d.status.attempts, 0, "no attempt recorded");
    assert!(d.status.denied_by_policy);
    assert_eq!(ready(&d.status), ("False", "Forbidden"));
    let stalled = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(stalled.status, "False");
    let e = d.status.last_error.clone().unwrap();
    assert_eq!(
        (e.code.as_str(), e.http_status, e.retryable),
        ("Forbidden", None, false)
    );
    assert!(e.message.contains("namespace ns"), "{e:?}");
    assert!(
        d.event
            .as_ref()
            .is_some_and(|e| e.warning && e.reason == Reason::Forbidden)
    );
    let still = run_verdict(&d.status, Outcome::Nothing, denied());
    assert_eq!(still.status, d.status, "unchanged while refused");
    assert!(matches!(still.action, Action::Wait(_)));
    let allowed = run_verdict(&d.status, Outcome::Nothing, policy::Verdict::Allowed);
    assert!(matches!(allowed.action, Action::Stop { .. }), "{allowed:?}");
    assert!(!allowed.status.denied_by_policy);
    assert_eq!(allowed.status.attempts, 1);
}

#[test]
fn a_retry_after_the_policies_changed_is_refused_and_a_pending_attempt_still_confirmed() {
    let denied = || policy::Verdict::Denied("x".into());
    // A retryable failure, then the policy went away: no further StopExecution.
    let first = run(&ExecutionStopStatus::default(), Outcome::Nothing, "00:00");
    let failed = run(
        &first.status,
        Outcome::Stop(Err(api(500, "InternalServerError"))),
        "00:00",
    );
    let mut due = failed.status.clone();
    due.next_attempt_time = None;
    let d = run_verdict(&due, Outcome::Nothing, denied());
    assert_eq!(d.status.phase, Some(Phase::Pending));
    assert!(d.status.denied_by_policy);
    assert_eq!(d.status.attempts, 1);
    // An attempt whose outcome is unknown is still confirmed: that is no new stop.
    let d = run_verdict(&first.status, Outcome::Nothing, denied());
    assert!(matches!(d.action, Action::Describe { .. }), "{d:?}");
    // A final object stays final.
    let stopped = run(&first.status, Outcome::Stop(Ok(exec("Stopped"))), "00:00");
    assert_eq!(
        run_verdict(&stopped.status, Outcome::Nothing, denied()).action,
        Action::Done
    );
}

#[test]
fn a_refusal_never_outlives_its_reason_so_a_final_object_stays_final() {
    // Refused, then allowed: the Stop becomes a read of the credentials, which are missing.
    let denied = policy::Verdict::Denied("x".into());
    let refused = run_verdict(&ExecutionStopStatus::default(), Outcome::Nothing, denied);
    let no_keys = run_verdict(
        &refused.status,
        Outcome::Cannot(Cannot::NoCredentials("Secret creds not found".into())),
        policy::Verdict::Allowed,
    );
    assert_eq!(ready(&no_keys.status), ("False", "CredentialsNotFound"));
    assert!(
        !no_keys.status.denied_by_policy,
        "no longer refused: waiting for keys"
    );
    // The Secret appears, the stop goes out and the flow does not exist: Failed, final.
    let sent = run_verdict(&no_keys.status, Outcome::Nothing, policy::Verdict::Allowed);
    assert!(matches!(sent.action, Action::Stop { .. }));
    let failed = run_verdict(
        &sent.status,
        Outcome::Stop(Err(api(404, "FlowNotExists"))),
        policy::Verdict::Allowed,
    );
    assert_eq!(failed.status.phase, Some(Phase::Failed));
    assert!(!failed.status.denied_by_policy);
    // A restart reads it again: no second call.
    let again = run_verdict(&failed.status, Outcome::Nothing, policy::Verdict::Allowed);
    assert_eq!(again.action, Action::Done);
}

#[test]
fn a_throttled_stop_is_not_an_attempt_and_gives_up_only_after_the_throttle_limit() {
    // The last allowed attempt (maxAttempts 3) is throttled, again and again.
    let s = attempted(3);
    assert_eq!(s.attempts, 3);
    let d = run(
        &s,
        Outcome::Stop(Err(api(429, "ResourceThrottled"))),
        "00:00",
    );
    assert_eq!(
        d.status.phase,
        Some(Phase::Retrying),
        "not RetriesExhausted"
    );
    assert_eq!(
        d.status.attempts, 2,
        "a 429 was not carried out: no attempt"
    );
    assert_eq!(d.status.throttled_since, Some(second(t("00:00"))));
    assert_eq!(d.action, Action::Wait(Duration::from_millis(50)));
    // The retry reuses the throttled call's RequestId, and the clock keeps running.
    let again = run(&d.status, Outcome::Nothing, "00:01");
    assert_eq!(
        again.action,
        Action::Stop {
            request_id: "uid-3".into()
        }
    );
    let d = run(
        &again.status,
        Outcome::Stop(Err(api(429, "ResourceThrottled"))),
        "29:59",
    );
    assert_eq!(d.status.phase, Some(Phase::Retrying));
    assert_eq!(d.status.throttled_since, Some(second(t("00:00"))));
    let again = run(&d.status, Outcome::Nothing, "30:00");
    let d = run(
        &again.status,
        Outcome::Stop(Err(api(429, "ResourceThrottled"))),
        "30:00",
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(ready(&d.status), ("False", "RetriesExhausted"));
    assert!(
        d.status.conditions[0]
            .message
            .contains("throttled for 1800 s"),
        "{:?}",
        d.status.conditions
    );
    // Any other answer ends the throttled stretch.
    let again = run(
        &attempted(1),
        Outcome::Stop(Err(api(429, "ResourceThrottled"))),
        "00:00",
    );
    let next = run(&again.status, Outcome::Nothing, "00:00");
    let d = run(
        &next.status,
        Outcome::Stop(Err(api(500, "InternalServerError"))),
        "00:00",
    );
    assert_eq!(d.status.throttled_since, None);
    assert_eq!(d.status.attempts, 1);
}

#[test]
fn an_accepted_stop_whose_confirmation_is_refused_is_never_sent_again() {
    let d = run(&attempted(1), Outcome::Stop(Ok(exec("Running"))), "00:00");
    assert_eq!(d.action, Action::Describe { wait_seconds: 10 });
    let d = run_with(
        &d.status,
        Outcome::Describe(Err(api(403, "AccessDenied"))),
        "00:01",
        Some("rv1"),
    );
    assert_eq!(d.action, Action::Done);
    assert_eq!(d.status.phase, Some(Phase::Stopped));
    assert_eq!(ready(&d.status), ("True", "StopAccepted"));
    assert_eq!(d.status.rejected_credentials_version, None);
    let msg = &d.status.conditions[0].message;
    assert!(
        msg.contains("fnf:DescribeExecution") && msg.contains("rid"),
        "{msg}"
    );
    let e = d.status.last_error.as_ref().unwrap();
    assert_eq!(
        (e.code.as_str(), e.http_status),
        ("AccessDenied", Some(403))
    );
    assert!(d.event.as_ref().is_some_and(|e| e.warning));
    // Final: a resync, a changed Secret, an hour later: no call.
    for (now, creds) in [("00:02", "rv1"), ("59:00", "rv2")] {
        assert_eq!(
            run_with(&d.status, Outcome::Nothing, now, Some(creds)).action,
            Action::Done
        );
    }
}

#[test]
fn tenant_text_from_the_cloud_is_escaped_in_status() {
    let e = FnfError::Api {
        status: 500,
        code: "X\u{1b}]0;pwn\u{7}".into(),
        message: "\u{1b}[2Jcleared".into(),
        request_id: Some("r\u{9b}1".into()),
    };
    let d = run(&attempted(1), Outcome::Stop(Err(e)), "00:00");
    let le = d.status.last_error.unwrap();
    let all = format!(
        "{} {} {:?} {:?}",
        le.code, le.message, le.request_id, d.status.conditions
    );
    assert!(!all.chars().any(|c| c.is_control()), "{all}");
    assert!(le.message.starts_with("\\u{1b}[2J"), "{}", le.message);
}

#[test]
fn a_pass_hands_calls_past_its_budget_to_the_next_pass() {
    let t = Tuning::default();
    let stop = Action::Stop {
        request_id: "x".into(),
    };
    let describe = Action::Describe { wait_seconds: 0 };
    assert!(!yields(3, &stop, &t) && !yields(3, &describe, &t));
    assert!(yields(4, &stop, &t) && yields(4, &describe, &t));
    assert!(!yields(9, &Action::Done, &t) && !yields(9, &Action::ReadCredentials, &t));
}

#[test]
fn a_refused_endpoint_is_judged_before_any_key_is_read() {
    let mut spec = spec();
    spec.options.endpoint = Some("https://evil.test".into());
    let status = ExecutionStopStatus::default();
    let d = Given {
        spec,
        credentials: Credentials::Unread,
        ..Given::new(&status, Outcome::Nothing, t("00:00"))
    }
    .decide();
    assert_eq!(d.action, Action::Done, "no ReadCredentials, no call");
    assert_eq!(d.status.phase, Some(Phase::Failed));
    assert_eq!(ready(&d.status), ("False", "EndpointNotAllowed"));
    assert!(d.event.is_some_and(|e| e.warning));
}

#[test]
fn a_final_object_with_a_ttl_is_deleted_once_it_has_passed_and_never_when_gitops_manages_it() {
    let stopped = run(&attempted(1), Outcome::Stop(Ok(exec("Stopped"))), "00:00").status;
    let mut spec = spec();
    spec.ttl_seconds_after_finished = Some(60);
    let at = |now: &str, managed: bool| {
        Given {
            spec: spec.clone(),
            credentials: Credentials::Unread,
            gitops_managed: managed,
            ..Given::new(&stopped, Outcome::Nothing, t(now))
        }
        .decide()
    };
    assert_eq!(
        at("00:30", false).action,
        Action::Wait(Duration::from_secs(30))
    );
    let d = at("01:00", false);
    assert_eq!(d.action, Action::Delete, "no call, no credentials read");
    assert_eq!(d.status, stopped, "nothing written");
    assert_eq!(
        at("59:00", true).action,
        Action::Done,
        "a GitOps tool's object stays"
    );
    // Without a TTL: kept.
    assert_eq!(
        run(&stopped, Outcome::Nothing, "59:00").action,
        Action::Done
    );
}

/// `settled` is the promise the shell keeps final objects out of its cache on: for any
/// input a settled object can meet, `decide` does nothing, writes nothing and says nothing.
#[test]
fn a_settled_object_is_done_whatever_it_is_given_and_only_a_settled_one() {
    let stopped = run(&attempted(1), Outcome::Stop(Ok(exec("Stopped"))), "00:00").status;
    let finished = run(&attempted(1), Outcome::Stop(Ok(exec("Succeeded"))), "00:00").status;
    let gave_up = run(
        &attempted(3),
        Outcome::Stop(Err(api(503, "ServiceUnavailable"))),
        "00:00",
    )
    .status;
    let rejected = run(
        &attempted(1),
        Outcome::Stop(Err(api(403, "AccessDenied"))),
        "00:00",
    )
    .status;
    assert_eq!(finished.phase, Some(Phase::AlreadyFinished));
    assert_eq!(gave_up.phase, Some(Phase::Failed));
    assert!(rejected.rejected_credentials_version.is_some());
    let mut with_ttl = spec();
    with_ttl.ttl_seconds_after_finished = Some(60);
    let mut settled_seen = 0;
    for status in [&stopped, &finished, &gave_up, &rejected, &attempted(1)] {
        for spec in [spec(), with_ttl.clone()] {
            for managed in [false, true] {
                let is_settled = settled(&spec, Some(status), managed);
                let expected = status.phase.is_some_and(Phase::is_final)
                    && status.rejected_credentials_version.is_none()
                    && (spec.ttl_seconds_after_finished.is_none() || managed);
                assert_eq!(
                    is_settled, expected,
                    "{status:?} {spec:?} managed={managed}"
                );
                if !is_settled {
                    continue;
                }
                settled_seen += 1;
                for abandoned in [false, true] {
                    for verdict in [
                        policy::Verdict::Allowed,
                        policy::Verdict::Denied("x".into()),
                    ] {
                        for credentials in [
                            Credentials::Unread,
                            Credentials::Operator,
                            Credentials::Secret("v2"),
                        ] {
                            for now in ["00:00", "59:59"] {
                                let d = Given {
                                    spec: spec.clone(),
                                    credentials,
                                    abandoned,
                                    verdict: verdict.clone(),
                                    gitops_managed: managed,
                                    ..Given::new(status, Outcome::Nothing, t(now))
                                }
                                .decide();
                                assert_eq!(d.action, Action::Done, "{status:?} {spec:?}");
                                assert_eq!(&d.status, status, "nothing written");
                                assert_eq!(d.event, None, "nothing published");
                                assert!(!d.retry);
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(
        settled_seen,
        3 * 3,
        "three final phases, each without TTL, managed or not, and with one when managed"
    );
    assert!(!settled(&spec(), None, false), "no status yet: not settled");
}
