//! Table tests of the ExecutionStopSet decisions.

use super::*;
use crate::crd::set::Selector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeSet;

fn spec(dry_run: bool, max_count: u32) -> ExecutionStopSetSpec {
    ExecutionStopSetSpec {
        flow_name: "flow".into(),
        selector: Selector::default(),
        max_count,
        dry_run,
        options: crate::crd::StopOptions::default(),
        ttl_seconds_after_finished: None,
    }
}

fn t(s: &str) -> Timestamp {
    format!("2024-01-01T00:{s}Z").parse().unwrap()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("e{i:02}")).collect()
}

/// A page of `n` names; `more`: a NextToken follows.
fn listed(n: usize, more: bool) -> Outcome {
    Outcome::Listed(Ok(Page {
        names: names(n),
        next_token: more.then(|| "next".to_string()),
    }))
}

fn existing(names: impl IntoIterator<Item = String>) -> Box<dyn Fn(&str) -> bool> {
    let names: BTreeSet<String> = names.into_iter().collect();
    Box::new(move |n| names.contains(n))
}

/// What a table case sets up.
struct Case {
    spec: ExecutionStopSetSpec,
    status: ExecutionStopSetStatus,
    outcome: Outcome,
    children: ChildCounts,
    /// Which executions have an ExecutionStop of the set already.
    existing: Box<dyn Fn(&str) -> bool>,
    credentials: Credentials<'static>,
    now: &'static str,
    verdict: Verdict,
    gitops_managed: bool,
    /// Pages this pass has read: by default its last (`PAGES_PER_PASS`), so a page ends the
    /// pass unless a case says otherwise.
    pages_this_pass: u32,
    pass_listing: Duration,
}

impl Case {
    fn new(spec: ExecutionStopSetSpec, outcome: Outcome) -> Self {
        Case {
            spec,
            status: ExecutionStopSetStatus::default(),
            outcome,
            children: ChildCounts::default(),
            existing: Box::new(|_| false),
            credentials: Credentials::Operator,
            now: "00:00",
            verdict: Verdict::Allowed,
            gitops_managed: false,
            pages_this_pass: PAGES_PER_PASS,
            pass_listing: Duration::ZERO,
        }
    }

    fn run(&self) -> Decision {
        decide(&self.input())
    }

    fn input(&self) -> Input<'_> {
        Input {
            spec: &self.spec,
            status: &self.status,
            generation: 1,
            credentials: self.credentials,
            outcome: &self.outcome,
            children: &self.children,
            has_child: &*self.existing,
            pages_this_pass: self.pages_this_pass,
            pass_listing: self.pass_listing,
            now: t(self.now),
            jitter: 0.5,
            tuning: &TUNING,
            verdict: &self.verdict,
            endpoints: &ENDPOINTS,
            gitops_managed: self.gitops_managed,
        }
    }
}

static ENDPOINTS: std::sync::LazyLock<crate::decide::endpoint::Endpoints> =
    std::sync::LazyLock::new(|| crate::decide::endpoint::Endpoints {
        default: Some(fnf::Endpoint::url("http://127.0.0.1:9", false).unwrap()),
        allow_insecure_http: false,
        allowed_hosts: crate::decide::endpoint::parse_allowlist(
            crate::decide::endpoint::DEFAULT_ALLOWED_HOSTS,
        )
        .unwrap(),
    });

static TUNING: std::sync::LazyLock<Tuning> = std::sync::LazyLock::new(Tuning::default);

fn ready(s: &ExecutionStopSetStatus) -> (String, String) {
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready is set");
    (c.status.clone(), c.reason.clone())
}

fn condition(s: &ExecutionStopSetStatus, type_: &str) -> String {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn live(matched: u32) -> ExecutionStopSetStatus {
    ExecutionStopSetStatus {
        phase: Some(SetPhase::Listing),
        snapshot_time: Some(MicroTime(t("00:00"))),
        snapshot_complete: true,
        matched: Some(matched),
        ..Default::default()
    }
}

fn counts(stopped: u32, already: u32, failed: u32, pending: u32) -> ChildCounts {
    ChildCounts {
        total: stopped + already + failed + pending,
        pending,
        stopped,
        already_finished: already,
        failed,
        ..Default::default()
    }
}

#[test]
fn credentials_are_read_before_any_listing() {
    let mut c = Case::new(spec(true, 5), Outcome::Nothing);
    c.credentials = Credentials::Unread;
    let d = c.run();
    assert_eq!(d.action, Action::ReadCredentials);
    assert_eq!(
        d.status,
        ExecutionStopSetStatus::default(),
        "nothing decided yet"
    );
}

#[test]
fn a_dry_run_lists_with_no_time_bound_and_a_cap_one_past_max_count() {
    let d = Case::new(spec(true, 5), Outcome::Nothing).run();
    assert_eq!(
        d.action,
        Action::List {
            started_before: None,
            next_token: None
        }
    );
}

#[test]
fn a_dry_run_reports_the_count_and_first_names_and_is_ready() {
    let d = Case::new(spec(true, 50), listed(12, false)).run();
    let s = &d.status;
    assert_eq!(s.phase, Some(SetPhase::Previewing));
    assert_eq!(s.matched, Some(12));
    assert_eq!(s.first_matches, names(10));
    assert_eq!(ready(s), ("True".into(), "Previewed".into()));
    assert_eq!(condition(s, "Reconciling"), "False");
    assert_eq!(d.action, Action::Wait(Tuning::default().preview_refresh));
    assert!(
        d.events
            .iter()
            .any(|e| !e.warning && e.reason == Reason::Previewed)
    );
}

#[test]
fn a_dry_run_over_the_cap_says_going_live_would_stop_none() {
    let d = Case::new(spec(true, 5), listed(6, true)).run();
    assert_eq!(d.status.matched, Some(6));
    let msg = &d.status.conditions[0].message;
    assert!(msg.contains("more than maxCount (5)"), "{msg}");
}

#[test]
fn a_preview_is_refreshed_only_when_due() {
    let mut c = Case::new(spec(true, 5), Outcome::Nothing);
    c.status = Case::new(spec(true, 5), listed(2, false)).run().status;
    c.now = "01:00";
    assert_eq!(c.run().action, Action::Wait(Duration::from_secs(240)));
    c.now = "05:00";
    assert!(matches!(c.run().action, Action::List { .. }));
}

#[test]
fn going_live_records_the_snapshot_time_before_listing_up_to_it() {
    let mut c = Case::new(spec(false, 5), Outcome::Nothing);
    c.now = "00:07";
    let d = c.run();
    assert_eq!(d.status.snapshot_time, Some(MicroTime(t("00:07"))));
    assert_eq!(d.status.phase, Some(SetPhase::Listing));
    assert_eq!(
        d.action,
        Action::List {
            started_before: Some(t("00:07")),
            next_token: None
        }
    );
    // After a restart: the same snapshot, not a new one.
    c.status = d.status;
    c.now = "00:30";
    assert_eq!(
        c.run().action,
        Action::List {
            started_before: Some(t("00:07")),
            next_token: None
        }
    );
}

#[test]
fn the_window_ends_at_the_earlier_of_the_selector_and_the_snapshot() {
    let mut c = Case::new(spec(false, 5), Outcome::Nothing);
    c.spec.selector.started_before = Some(Time(t("00:03")));
    c.now = "00:07";
    assert_eq!(
        c.run().action,
        Action::List {
            started_before: Some(t("00:03")),
            next_token: None
        }
    );
}

#[test]
fn more_than_max_count_fails_and_creates_nothing() {
    let d = Case::new(spec(false, 5), listed(6, true)).run();
    assert_eq!(d.action, Action::Done);
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(ready(&d.status), ("False".into(), "TooManyMatches".into()));
    assert_eq!(condition(&d.status, "Stalled"), "True");
    assert_eq!(d.status.last_error.unwrap().code, "TooManyMatches");
}

#[test]
fn a_listing_creates_only_the_missing_children() {
    let mut c = Case::new(spec(false, 5), listed(4, false));
    c.existing = existing(names(2));
    let d = c.run();
    assert_eq!(d.action, Action::Create(vec!["e02".into(), "e03".into()]));
    assert_eq!(d.status.matched, Some(4));
}

#[test]
fn after_a_restart_the_listing_resumes_from_its_token_and_counts_what_it_lists() {
    let mut c = Case::new(spec(false, 300), Outcome::Nothing);
    c.status = live(0);
    c.status.snapshot_complete = false;
    c.status.matched = Some(150);
    c.status.listing = Some(ListingProgress {
        pass: ListPass::Creating,
        next_token: Some("p2".into()),
        pages: 1,
        found: 99,
    });
    assert_eq!(
        c.run().action,
        Action::List {
            started_before: Some(t("00:00")),
            next_token: Some("p2".into())
        }
    );
    // Children created before the restart stopped their executions: no longer listed,
    // and not needed in the count (they are counted as children).
    c.outcome = listed(1, false);
    c.existing = existing(["x1".to_string(), "x2".to_string()]);
    let d = c.run();
    assert_eq!(d.action, Action::Create(vec!["e00".into()]));
    c.status = d.status;
    c.outcome = Outcome::Created { taken: vec![] };
    c.children = counts(2, 0, 0, 0);
    let d = c.run();
    assert!(d.status.snapshot_complete);
    assert_eq!(d.status.matched, Some(100));
    assert_eq!(d.status.listing, None);
}

#[test]
fn a_stale_preview_never_stands_in_for_the_live_snapshot() {
    // Previewed three; one of them ended before the flip.
    let mut c = Case::new(spec(true, 10), listed(3, false));
    c.status = c.run().status;
    assert_eq!(c.status.matched, Some(3));
    c.spec.dry_run = false;
    c.outcome = Outcome::Nothing;
    let d = c.run();
    assert_eq!(
        d.status.matched, None,
        "going live forgets the preview's count"
    );
    assert!(matches!(d.action, Action::List { .. }));
    c.status = d.status;
    c.outcome = listed(2, false);
    let d = c.run();
    assert_eq!(d.action, Action::Create(names(2)));
    assert_eq!(d.status.matched, Some(2));
    c.status = d.status;
    c.outcome = Outcome::Created { taken: vec![] };
    c.children = counts(2, 0, 0, 0);
    let d = c.run();
    assert_eq!(d.status.children, counts(2, 0, 0, 0), "no pending padding");
    assert_eq!(d.status.phase, Some(SetPhase::Completed));

    // Every match ended before the flip: Completed, no children, and it says so.
    let mut c = Case::new(spec(true, 10), listed(3, false));
    c.status = c.run().status;
    c.spec.dry_run = false;
    c.outcome = Outcome::Nothing;
    c.status = c.run().status;
    c.outcome = listed(0, false);
    let d = c.run();
    assert_eq!(d.action, Action::Done);
    assert_eq!(d.status.phase, Some(SetPhase::Completed));
    assert_eq!(d.status.matched, Some(0));
    assert_eq!(d.status.children, ChildCounts::default());
    assert_eq!(ready(&d.status), ("True".into(), "NoMatches".into()));
    assert!(
        d.status.conditions[0]
            .message
            .contains("no execution matched"),
        "{:?}",
        d.status.conditions
    );
}

/// Runs the decisions of a whole listing, feeding each page, as the shell does.
fn page(names: Vec<String>, next: Option<&str>) -> Outcome {
    Outcome::Listed(Ok(Page {
        names,
        next_token: next.map(String::from),
    }))
}

#[test]
fn a_listing_reads_pages_in_passes_counting_first_then_creating() {
    let mut c = Case::new(spec(false, 150), Outcome::Nothing);
    let first: Vec<String> = (0..99).map(|n| format!("a{n:03}")).collect();
    let second: Vec<String> = (0..21).map(|n| format!("b{n:03}")).collect();
    c.status = c.run().status;
    // Counting: page 1, then a pass of its own for page 2.
    c.outcome = page(first.clone(), Some("t1"));
    let d = c.run();
    assert_eq!(
        d.action,
        Action::Wait(Duration::ZERO),
        "the pass has read its pages"
    );
    let l = d.status.listing.clone().unwrap();
    assert_eq!((l.pass, l.pages, l.found), (ListPass::Counting, 1, 99));
    assert_eq!(l.next_token.as_deref(), Some("t1"));
    assert_eq!(d.status.first_matches, first[..10]);
    c.status = d.status;
    c.outcome = Outcome::Nothing;
    assert_eq!(
        c.run().action,
        Action::List {
            started_before: Some(t("00:00")),
            next_token: Some("t1".into())
        }
    );
    c.outcome = page(second.clone(), None);
    let d = c.run();
    assert_eq!(d.status.matched, Some(120));
    assert_eq!(d.action, Action::Wait(Duration::ZERO));
    assert_eq!(
        d.status.listing,
        Some(ListingProgress::start(ListPass::Creating))
    );
    assert!(
        d.status.children.total == 0,
        "nothing created while counting"
    );
    // Creating: the same pages again, an ExecutionStop per name.
    c.status = d.status;
    c.outcome = page(first.clone(), Some("t1"));
    let d = c.run();
    assert_eq!(d.action, Action::Create(first.clone()));
    c.status = d.status;
    c.outcome = Outcome::Created { taken: vec![] };
    let d = c.run();
    assert_eq!(d.action, Action::Wait(Duration::ZERO));
    assert_eq!(
        d.status.listing.as_ref().unwrap().next_token.as_deref(),
        Some("t1")
    );
    c.status = d.status;
    c.outcome = page(second.clone(), None);
    assert_eq!(c.run().action, Action::Create(second));
}

#[test]
fn a_pass_reads_up_to_its_pages_before_giving_the_worker_back() {
    let mut c = Case::new(spec(false, 1_000), Outcome::Nothing);
    c.status = c.run().status;
    let list = |token: &str| Action::List {
        started_before: Some(t("00:00")),
        next_token: Some(token.into()),
    };
    // Counting: the next page in the same pass, until the pass has read PAGES_PER_PASS.
    c.outcome = page(names(99), Some("t1"));
    c.pages_this_pass = 1;
    let d = c.run();
    assert_eq!(d.action, list("t1"));
    assert_eq!(d.status.listing.as_ref().unwrap().pages, 1);
    c.pages_this_pass = PAGES_PER_PASS;
    assert_eq!(c.run().action, Action::Wait(Duration::ZERO));
    // A slow endpoint: a pass that has run PASS_TIME reads no further page, however few.
    c.pages_this_pass = 1;
    c.pass_listing = PASS_TIME;
    assert_eq!(c.run().action, Action::Wait(Duration::ZERO));
    c.pass_listing = Duration::ZERO;
    // Creating: once a page's ExecutionStops exist, the next page in the same pass.
    c.status.snapshot_time = Some(MicroTime(t("00:00")));
    c.status.listing = Some(ListingProgress {
        next_token: Some("t5".into()),
        ..ListingProgress::start(ListPass::Creating)
    });
    c.outcome = Outcome::Created { taken: vec![] };
    c.pages_this_pass = 3;
    assert_eq!(c.run().action, list("t5"));
    c.pages_this_pass = PAGES_PER_PASS;
    assert_eq!(c.run().action, Action::Wait(Duration::ZERO));
    // A preview's pages have no snapshot: only the selector's bound.
    let mut p = Case::new(spec(true, 1_000), page(names(99), Some("t1")));
    p.pages_this_pass = 1;
    assert_eq!(
        p.run().action,
        Action::List {
            started_before: None,
            next_token: Some("t1".into())
        }
    );
}

#[test]
fn a_listing_past_maxcount_fails_before_anything_is_created_even_over_pages() {
    let mut c = Case::new(spec(false, 120), Outcome::Nothing);
    c.status = c.run().status;
    c.outcome = page(names(99), Some("t1"));
    c.status = c.run().status;
    c.outcome = page((0..22).map(|n| format!("b{n}")).collect(), Some("t2"));
    let d = c.run();
    assert_eq!(d.action, Action::Done);
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(d.status.matched, Some(121), "maxCount + 1");
    assert_eq!(d.status.last_error.unwrap().code, "TooManyMatches");
}

#[test]
fn an_endpoint_that_never_ends_its_listing_fails_the_set() {
    let tuning = Tuning {
        list_page_limit: 3,
        ..Tuning::default()
    };
    let mut c = Case::new(spec(true, 10), Outcome::Nothing);
    let mut tokens = ["t1", "t2", "t3"].into_iter();
    let mut last = None;
    for _ in 0..3 {
        c.outcome = page(vec![], tokens.next());
        let mut input = c.input();
        input.tuning = &tuning;
        last = Some(decide(&input));
        c.status = last.clone().unwrap().status;
    }
    let d = last.unwrap();
    assert_eq!(d.action, Action::Done);
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(ready(&d.status), ("False".into(), "EndlessListing".into()));
    let msg = &d.status.last_error.as_ref().unwrap().message;
    assert!(
        msg.contains("3 pages") && msg.contains("--list-page-limit"),
        "{msg}"
    );
    assert_eq!(d.status.listing, None);

    // The same token answered again: no progress, fails at once.
    let mut c = Case::new(spec(true, 10), page(vec![], Some("same")));
    c.status = c.run().status;
    let d = c.run();
    assert_eq!(ready(&d.status), ("False".into(), "EndlessListing".into()));

    // A token too long to keep in status is refused.
    let c = Case::new(spec(true, 10), page(vec![], Some(&"x".repeat(2000))));
    let d = c.run();
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert!(d.status.listing.is_none());
}

#[test]
fn a_name_taken_by_a_stranger_is_reported_and_never_counted() {
    let mut c = Case::new(
        spec(false, 10),
        Outcome::Created {
            taken: vec!["e01".into()],
        },
    );
    c.status = live(3);
    c.status.snapshot_complete = false;
    c.children = counts(0, 0, 0, 2);
    let d = c.run();
    assert_eq!(d.status.name_conflicts, 1);
    assert_eq!(d.status.name_taken, ["e01"]);
    assert_eq!(
        d.status.children,
        counts(0, 0, 0, 2),
        "the stranger is not padded in"
    );
    assert_eq!(d.status.phase, Some(SetPhase::Stopping));
    let taken = d
        .events
        .iter()
        .find(|e| e.reason == Reason::NameTaken)
        .expect("a NameTaken Event when the name is found taken");
    assert!(taken.warning && taken.note.contains("e01"), "{taken:?}");
    c.status = d.status;
    c.outcome = Outcome::Nothing;
    c.children = counts(2, 0, 0, 0);
    let d = c.run();
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(ready(&d.status), ("False".into(), "NameTaken".into()));
    let msg = &d.status.conditions[0].message;
    assert!(msg.contains("e01") && msg.contains("not stopped"), "{msg}");
}

#[test]
fn listed_names_reach_status_printable() {
    let d = Case::new(spec(true, 10), page(vec!["\u{1b}[2Jx".into()], None)).run();
    assert_eq!(d.status.first_matches, ["\\u{1b}[2Jx"]);
}

#[test]
fn when_every_child_exists_the_snapshot_is_complete() {
    let mut c = Case::new(spec(false, 5), listed(2, false));
    c.existing = existing(names(2));
    c.children = counts(0, 0, 0, 2);
    let d = c.run();
    assert!(d.status.snapshot_complete);
    assert_eq!(d.status.phase, Some(SetPhase::Stopping));
    assert_eq!(d.action, Action::Done);
}

#[test]
fn children_the_cache_does_not_show_yet_count_as_pending() {
    let mut c = Case::new(spec(false, 5), Outcome::Created { taken: vec![] });
    c.status = live(4);
    c.status.snapshot_complete = false;
    c.children = counts(1, 0, 0, 0);
    let d = c.run();
    assert!(d.status.snapshot_complete);
    assert_eq!(d.status.children, counts(1, 0, 0, 3));
    assert_eq!(d.status.phase, Some(SetPhase::Stopping));
}

#[test]
fn the_phase_follows_the_children() {
    let cases = [
        (
            counts(3, 1, 0, 0),
            4,
            SetPhase::Completed,
            "Completed",
            ["True", "False", "False"],
        ),
        (
            counts(2, 0, 1, 0),
            3,
            SetPhase::Failed,
            "ChildrenFailed",
            ["False", "False", "True"],
        ),
        (
            counts(2, 0, 0, 1),
            3,
            SetPhase::Stopping,
            "Stopping",
            ["False", "True", "False"],
        ),
        (
            counts(0, 0, 0, 0),
            0,
            SetPhase::Completed,
            "NoMatches",
            ["True", "False", "False"],
        ),
    ];
    for (children, matched, phase, reason, [r, rec, st]) in cases {
        let mut c = Case::new(spec(false, 5), Outcome::Nothing);
        c.status = live(matched);
        c.children = children.clone();
        let d = c.run();
        assert_eq!(d.status.phase, Some(phase), "{children:?}");
        assert_eq!(ready(&d.status), (r.into(), reason.into()), "{children:?}");
        assert_eq!(condition(&d.status, "Reconciling"), rec, "{children:?}");
        assert_eq!(condition(&d.status, "Stalled"), st, "{children:?}");
        assert_eq!(d.action, Action::Done);
    }
}

#[test]
fn a_retryable_listing_error_backs_off_then_gives_up() {
    let err = || {
        Outcome::Listed(Err(FnfError::Api {
            status: 500,
            code: "InternalServerError".into(),
            message: "m".into(),
            request_id: Some("r".into()),
        }))
    };
    let mut c = Case::new(spec(false, 5), err());
    c.status = live(0);
    c.status.snapshot_complete = false;
    let d = c.run();
    assert!(matches!(d.action, Action::Wait(_)));
    assert_eq!(d.status.list_attempts, 1);
    assert!(d.status.next_attempt_time.is_some());
    assert_eq!(ready(&d.status).1, "Retrying");
    assert!(d.events.iter().any(|e| e.warning), "a retry is a Warning");
    // Every retry is an Event, even with nothing else changed.
    c.status = d.status;
    assert!(!c.run().events.is_empty());
    c.status.list_attempts = Tuning::default().max_attempts - 1;
    let d = c.run();
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(ready(&d.status).1, "RetriesExhausted");
}

#[test]
fn a_missing_flow_fails_with_the_services_code() {
    let e = FnfError::Api {
        status: 404,
        code: "FlowNotExists".into(),
        message: "flow nope does not exist".into(),
        request_id: Some("r".into()),
    };
    let d = Case::new(spec(true, 5), Outcome::Listed(Err(e))).run();
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(ready(&d.status).1, "NotFound");
    let l = d.status.last_error.unwrap();
    assert_eq!(
        (l.code.as_str(), l.http_status),
        ("FlowNotExists", Some(404))
    );
    assert_eq!(d.action, Action::Done);
}

#[test]
fn a_refused_endpoint_fails_without_listing() {
    let d = Case::new(
        spec(false, 5),
        Outcome::Cannot(Cannot::EndpointNotAllowed("spec.endpoint host x".into())),
    )
    .run();
    assert_eq!(d.action, Action::Done);
    assert_eq!(d.status.last_error.unwrap().code, "EndpointNotAllowed");
}

#[test]
fn an_unchanged_phase_and_reason_make_no_event() {
    let mut c = Case::new(spec(false, 5), Outcome::Nothing);
    c.status = live(3);
    c.children = counts(1, 0, 0, 2);
    let first = c.run();
    assert!(!first.events.is_empty());
    c.status = first.status;
    c.children = counts(2, 0, 0, 1);
    assert!(c.run().events.is_empty(), "progress alone is not an Event");
}

#[test]
fn a_missing_secret_is_looked_for_again_and_a_set_that_gave_up_stays_put() {
    let mut c = Case::new(
        spec(false, 5),
        Outcome::Cannot(Cannot::NoCredentials("Secret creds not found".into())),
    );
    c.status = live(0);
    c.status.snapshot_complete = false;
    let d = c.run();
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert!(matches!(d.action, Action::Wait(_)));
    c.status = d.status;
    c.outcome = Outcome::Nothing;
    assert!(
        matches!(c.run().action, Action::List { .. }),
        "the Secret may have come"
    );
    c.status.list_attempts = Tuning::default().max_attempts - 1;
    c.outcome = Outcome::Listed(Err(FnfError::Timeout("t".into())));
    let d = c.run();
    assert_eq!(ready(&d.status).1, "RetriesExhausted");
    c.status = d.status;
    c.outcome = Outcome::Nothing;
    assert_eq!(c.run().action, Action::Done, "gave up: no more listing");
}

#[test]
fn a_rejected_listing_is_tried_again_when_the_secret_changes_and_not_before() {
    let forbidden = || {
        Outcome::Listed(Err(FnfError::Api {
            status: 403,
            code: "SignatureNotMatch".into(),
            message: "signature mismatch".into(),
            request_id: Some("r".into()),
        }))
    };
    let mut with_secret = spec(true, 5);
    with_secret.options.credentials_secret_ref = Some(crate::crd::SecretRef {
        name: "creds".into(),
    });
    let mut c = Case::new(with_secret, forbidden());
    c.credentials = Credentials::Secret("v1");
    let d = c.run();
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(ready(&d.status).1, "CredentialsRejected");
    assert_eq!(d.status.rejected_credentials_version.as_deref(), Some("v1"));
    assert_eq!(
        d.action,
        Action::Wait(Tuning::default().credentials_recheck)
    );
    let l = d.status.last_error.clone().unwrap();
    assert_eq!(
        (l.code.as_str(), l.http_status),
        ("SignatureNotMatch", Some(403))
    );

    c.status = d.status;
    c.outcome = Outcome::Nothing;
    c.credentials = Credentials::Unread;
    assert_eq!(
        c.run().action,
        Action::ReadCredentials,
        "read the Secret to compare"
    );
    c.credentials = Credentials::Secret("v1");
    c.now = "01:00";
    let same = c.run();
    assert!(
        matches!(same.action, Action::Wait(_)),
        "unchanged: no listing"
    );
    assert_eq!(same.status, c.status);
    c.outcome = Outcome::Cannot(Cannot::NoCredentials("Secret creds not found".into()));
    assert_eq!(c.run().status, c.status, "a deleted Secret changes nothing");

    c.outcome = Outcome::Nothing;
    c.credentials = Credentials::Secret("v2");
    let changed = c.run();
    assert!(matches!(changed.action, Action::List { .. }), "{changed:?}");
    assert_eq!(changed.status.rejected_credentials_version, None);
    assert_eq!(changed.status.phase, Some(SetPhase::Listing));
    assert_eq!(ready(&changed.status).1, "Listing");
}

#[test]
fn a_rejected_live_set_lists_its_snapshot_again_after_the_retry_time() {
    let mut c = Case::new(
        spec(false, 5),
        Outcome::Listed(Err(FnfError::Api {
            status: 403,
            code: "InvalidAccessKeyID".into(),
            message: "no such key".into(),
            request_id: None,
        })),
    );
    c.status = live(0);
    c.status.snapshot_complete = false;
    c.status.phase = Some(SetPhase::Listing);
    let d = c.run();
    assert_eq!(
        d.status.rejected_credentials_version.as_deref(),
        Some("operator")
    );
    c.status = d.status;
    c.outcome = Outcome::Nothing;
    // Tuning::default(): credentials_retry is an hour, so nothing within it.
    c.now = "59:59";
    assert!(matches!(c.run().action, Action::Wait(_)));
    assert_eq!(c.run().status, c.status);
    // Once the retry time (an hour after the 403) has come, the same snapshot is listed again.
    let at = c
        .status
        .next_attempt_time
        .clone()
        .expect("the retry time")
        .0;
    assert_eq!(at, t("00:00") + jiff::SignedDuration::from_hours(1));
    let d = decide(&Input {
        now: at,
        ..c.input()
    });
    assert_eq!(
        d.action,
        Action::List {
            started_before: c.status.snapshot_time.as_ref().map(|t| t.0),
            next_token: None
        },
        "the same snapshot"
    );
    assert_eq!(d.status.phase, Some(SetPhase::Listing));
}

#[test]
fn a_set_the_policies_refuse_lists_nothing_until_they_allow_it() {
    let mut c = Case::new(spec(false, 5), Outcome::Nothing);
    c.verdict = Verdict::Denied("no ExecutionStopPolicy selects namespace ns".into());
    let d = c.run();
    assert_eq!(d.action, Action::Wait(Tuning::default().policy_recheck));
    assert_eq!(
        d.status.phase,
        Some(SetPhase::Pending),
        "waiting for a policy"
    );
    assert_eq!(ready(&d.status).1, "Forbidden");
    assert!(d.status.denied_by_policy);
    // Gone live all the same: the snapshot is the moment it was applied, so allowing it
    // later never reaches executions started since.
    let snapshot = d
        .status
        .snapshot_time
        .clone()
        .expect("recorded at going live");
    let e = d.events[0].clone();
    assert!(e.warning, "a Warning");
    assert_eq!(e.reason, Reason::Forbidden);
    c.status = d.status;
    assert_eq!(
        c.run().status,
        c.status,
        "still refused: unchanged, no listing"
    );
    assert!(matches!(c.run().action, Action::Wait(_)));
    c.verdict = Verdict::Allowed;
    c.now = "30:00";
    let d = c.run();
    assert_eq!(
        d.action,
        Action::List {
            started_before: Some(snapshot.0),
            next_token: None
        },
        "the snapshot of when it went live"
    );
    assert!(!d.status.denied_by_policy);
    assert_eq!(d.status.phase, Some(SetPhase::Listing));
    assert_eq!(d.status.last_error, None);
}

#[test]
fn a_set_that_gave_up_and_is_refused_lists_nothing_when_flipped_live() {
    // A preview that gave up, a policy that refuses it, then dryRun flipped to false.
    let mut c = Case::new(
        spec(true, 5),
        Outcome::Listed(Err(FnfError::Timeout("t".into()))),
    );
    c.status.list_attempts = Tuning::default().max_attempts - 1;
    let gave_up = c.run();
    assert_eq!(ready(&gave_up.status).1, "RetriesExhausted");
    let mut c = Case::new(spec(false, 5), Outcome::Nothing);
    c.status = gave_up.status;
    c.verdict = Verdict::Denied("x".into());
    let d = c.run();
    assert!(matches!(d.action, Action::Wait(_)), "{d:?}");
    assert_eq!(ready(&d.status).1, "Forbidden");
    assert_eq!(d.status.matched, None, "nothing listed, no names shown");
}

#[test]
fn once_every_child_exists_a_policy_change_does_not_fail_the_set() {
    let mut c = Case::new(spec(false, 5), Outcome::Nothing);
    c.status = live(2);
    c.children = counts(1, 0, 0, 1);
    c.verdict = Verdict::Denied("x".into());
    let d = c.run();
    assert_eq!(
        d.status.phase,
        Some(SetPhase::Stopping),
        "its children are checked one by one"
    );
    assert!(!d.status.denied_by_policy);
}

#[test]
fn a_dry_run_the_policies_refuse_previews_nothing() {
    let mut c = Case::new(spec(true, 5), Outcome::Nothing);
    c.verdict = Verdict::Denied("x".into());
    let d = c.run();
    assert!(matches!(d.action, Action::Wait(_)));
    assert_eq!(d.status.matched, None);
    c.status = d.status;
    c.verdict = Verdict::Allowed;
    let d = c.run();
    assert_eq!(
        d.action,
        Action::List {
            started_before: None,
            next_token: None
        }
    );
}

#[test]
fn a_throttled_listing_is_not_an_attempt_and_gives_up_only_after_the_throttle_limit() {
    let throttled = || {
        Outcome::Listed(Err(FnfError::Api {
            status: 429,
            code: "ResourceThrottled".into(),
            message: "m".into(),
            request_id: Some("r".into()),
        }))
    };
    let mut c = Case::new(spec(false, 5), throttled());
    c.status = live(0);
    c.status.snapshot_complete = false;
    c.status.list_attempts = Tuning::default().max_attempts - 1;
    let d = c.run();
    assert_eq!(d.action, Action::Wait(Tuning::default().throttle_retry));
    assert_eq!(d.status.list_attempts, Tuning::default().max_attempts - 1);
    assert_eq!(d.status.throttled_since, Some(second(t("00:00"))));
    assert_eq!(ready(&d.status).1, "Retrying");
    c.status = d.status;
    c.now = "29:59";
    assert_eq!(c.run().status.phase, Some(SetPhase::Listing));
    c.now = "30:00";
    let d = c.run();
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(ready(&d.status).1, "RetriesExhausted");
    // A page read ends the throttled stretch.
    let mut c = Case::new(spec(false, 5), listed(1, true));
    c.status = live(0);
    c.status.snapshot_complete = false;
    c.status.throttled_since = Some(second(t("00:00")));
    assert_eq!(c.run().status.throttled_since, None);
}

/// A Stopping set's status with `finals` of its `total` ExecutionStops final.
fn stopping_with(total: u32, finals: u32) -> ExecutionStopSetStatus {
    ExecutionStopSetStatus {
        phase: Some(SetPhase::Stopping),
        children: ChildCounts {
            total,
            stopped: finals,
            stopping: total - finals,
            ..ChildCounts::default()
        },
        ..ExecutionStopSetStatus::default()
    }
}

#[test]
fn progress_is_written_by_the_hundredth_and_phase_changes_at_once() {
    let at = |s: &str| Some(t(s));
    let ms = |m: u64| Timestamp::from_millisecond(t("00:00").as_millisecond() + m as i64).unwrap();
    let was = stopping_with(10_000, 1_000);
    // Nothing new: nothing to write.
    assert_eq!(
        pace(Some(&was), &was, at("00:00"), ms(100)),
        Pace::Unchanged
    );
    // The first progress (after a restart, or after a phase change) goes at once.
    let hundredth = stopping_with(10_000, 1_100);
    assert_eq!(
        pace(Some(&was), &hundredth, None, ms(100)),
        Pace::Write { progress: true }
    );
    // Another hundredth final: written once PROGRESS_EVERY has passed since the last.
    assert_eq!(
        pace(Some(&was), &hundredth, at("00:00"), ms(1_500)),
        Pace::Hold(Duration::from_millis(500))
    );
    assert_eq!(
        pace(Some(&was), &hundredth, at("00:00"), ms(2_000)),
        Pace::Write { progress: true }
    );
    // Less than a hundredth: held until PROGRESS_AT_LEAST has passed.
    let fewer = stopping_with(10_000, 1_099);
    assert_eq!(
        pace(Some(&was), &fewer, at("00:00"), ms(2_000)),
        Pace::Hold(Duration::from_secs(58))
    );
    assert_eq!(
        pace(Some(&was), &fewer, at("00:00"), ms(60_000)),
        Pace::Write { progress: true }
    );
    // A small set: one ExecutionStop is its hundredth.
    assert_eq!(
        pace(
            Some(&stopping_with(50, 10)),
            &stopping_with(50, 11),
            at("00:00"),
            ms(2_000)
        ),
        Pace::Write { progress: true }
    );
    // A phase change is written at once, whenever progress was last written.
    let mut completed = stopping_with(10_000, 10_000);
    completed.phase = Some(SetPhase::Completed);
    assert_eq!(
        pace(Some(&was), &completed, at("00:00"), ms(100)),
        Pace::Write { progress: false }
    );
    let mut listing = was.clone();
    listing.phase = Some(SetPhase::Listing);
    assert_eq!(
        pace(Some(&listing), &hundredth, at("00:00"), ms(100)),
        Pace::Write { progress: false }
    );
    assert_eq!(
        pace(None, &hundredth, at("00:00"), ms(100)),
        Pace::Write { progress: false }
    );
}

#[test]
fn children_are_counted_by_phase() {
    let phases = [
        None,
        Some(Phase::Pending),
        Some(Phase::Stopping),
        Some(Phase::Retrying),
        Some(Phase::Stopped),
        Some(Phase::Stopped),
        Some(Phase::AlreadyFinished),
        Some(Phase::Failed),
    ];
    let c = count(phases.iter().map(Option::as_ref));
    assert_eq!(
        c,
        ChildCounts {
            total: 8,
            pending: 2,
            stopping: 1,
            retrying: 1,
            stopped: 2,
            already_finished: 1,
            failed: 1,
        }
    );
}

#[test]
fn a_refused_endpoint_fails_the_set_before_any_key_is_read() {
    let mut c = Case::new(spec(true, 5), Outcome::Nothing);
    c.spec.options.endpoint = Some("https://evil.test".into());
    c.credentials = Credentials::Unread;
    let d = c.run();
    assert_eq!(d.action, Action::Done, "no ReadCredentials, no listing");
    assert_eq!(d.status.phase, Some(SetPhase::Failed));
    assert_eq!(d.status.last_error.unwrap().code, "EndpointNotAllowed");
}

#[test]
fn a_done_set_with_a_ttl_is_deleted_once_it_has_passed_but_never_a_preview() {
    let mut c = Case::new(spec(false, 5), Outcome::Nothing);
    c.spec.ttl_seconds_after_finished = Some(60);
    c.status = live(2);
    c.children = counts(2, 0, 0, 0);
    c.status = c.run().status;
    assert_eq!(c.status.phase, Some(SetPhase::Completed));
    c.now = "00:30";
    assert_eq!(c.run().action, Action::Wait(Duration::from_secs(30)));
    c.now = "01:00";
    assert_eq!(c.run().action, Action::Delete);
    c.gitops_managed = true;
    assert_eq!(c.run().action, Action::Done, "a GitOps tool's set stays");
    // A preview is never done.
    let mut p = Case::new(spec(true, 5), listed(2, false));
    p.spec.ttl_seconds_after_finished = Some(0);
    p.status = p.run().status;
    p.outcome = Outcome::Nothing;
    p.now = "59:00";
    assert!(
        matches!(p.run().action, Action::List { .. }),
        "refreshed, not deleted"
    );
}

#[test]
fn a_refreshed_preview_names_what_it_finds_now() {
    let mut c = Case::new(spec(true, 50), listed(12, false));
    c.status = c.run().status;
    assert_eq!(c.status.first_matches, names(10));
    c.now = "05:00";
    c.outcome = page(vec!["later".into()], None);
    let d = c.run();
    assert_eq!(
        d.status.first_matches,
        ["later"],
        "not the earlier preview's names"
    );
    assert_eq!(d.status.matched, Some(1));
}
