//! `kubectl flowstop stop`: one execution through an ExecutionStop, or every matching one
//! through an ExecutionStopSet (preview, confirmation, then progress).

use crate::cleanup::{INTERRUPTED, Kind, Made, TERMINATED};
use crate::connect::Kube;
use crate::problem::Problem;
use crate::text::safe;
use crate::watch::{Follow, Stopped};
use clap::Args;
use flowstop_api::set::{
    ExecutionStopSet, ExecutionStopSetSpec, ExecutionStopSetStatus, SET_LABEL, Selector,
    SelectorStatus, SetPhase,
};
use flowstop_api::{
    ExecutionStop, ExecutionStopSpec, ExecutionStopStatus, Phase, SecretRef, StopOptions,
};
use flowstop_api::{condition, exit};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::io::{IsTerminal, Write};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct StopArgs {
    /// The flow
    pub flow: String,
    /// The execution to stop; without it, every execution of FLOW that matches the
    /// selector flags (and --max-count is required)
    #[arg(conflicts_with_all = ["status", "prefix", "started_after", "started_before", "max_count", "yes", "dry_run"])]
    pub execution: Option<String>,
    /// Why it is stopped (recorded on the execution)
    #[arg(long)]
    pub cause: Option<String>,
    /// Error code recorded on the stopped execution
    #[arg(long)]
    pub error: Option<String>,
    /// Name of the object to create (default: generated from the execution or flow name)
    #[arg(long)]
    pub name: Option<String>,
    /// A Secret in the namespace with the keys to use (default: the operator's)
    #[arg(long)]
    pub secret: Option<String>,
    /// Region of the flow (default: the operator's)
    #[arg(long)]
    pub region: Option<String>,
    /// Follow the ExecutionStop until it is final and exit with its outcome (a set is
    /// always followed)
    #[arg(long)]
    pub wait: bool,
    /// How long to wait, e.g. 90s, 5m, 1h
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Exit 0 when the execution had already finished (the pipeline only needs it not running)
    #[arg(long)]
    pub already_finished_ok: bool,
    /// Set: only executions in this status
    #[arg(long, value_parser = ["Running", "Starting"])]
    pub status: Option<String>,
    /// Set: only executions whose name starts with this
    #[arg(long)]
    pub prefix: Option<String>,
    /// Set: only executions started at or after this time (RFC 3339)
    #[arg(long)]
    pub started_after: Option<jiff::Timestamp>,
    /// Set: only executions started at or before this time (RFC 3339)
    #[arg(long)]
    pub started_before: Option<jiff::Timestamp>,
    /// Set: the most executions to stop; if more match, nothing is stopped
    #[arg(long, required_unless_present = "execution")]
    pub max_count: Option<u32>,
    /// Set: stop without asking (for pipelines)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Set: show what matches, stop nothing (the preview object is deleted, unless --keep)
    #[arg(long)]
    pub dry_run: bool,
    /// Leave what this command created in place whatever the outcome. Without it, when
    /// the command exits with anything but 0 or 3 (failed, forbidden, timed out,
    /// interrupted, lost track) it deletes the ExecutionStop or ExecutionStopSet it
    /// created (a set's ExecutionStops then make no further calls and are garbage
    /// collected), so nothing goes on acting after it reported failure; a preview that
    /// does not go live is deleted too. Either way stderr says what was deleted or kept
    #[arg(long)]
    pub keep: bool,
    /// Delete what this command created this long after it is final (its
    /// ttlSecondsAfterFinished; the operator deletes it, with no call), e.g. 1h, 24h;
    /// `never` keeps it
    #[arg(long, default_value = "168h", value_parser = parse_ttl)]
    pub ttl: Ttl,
}

/// `--ttl`: seconds after the object is final, or none (`never`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ttl(pub Option<u32>);

fn parse_ttl(s: &str) -> Result<Ttl, String> {
    match s {
        "never" => Ok(Ttl(None)),
        _ => parse_duration(s).and_then(|d| {
            u32::try_from(d.as_secs())
                .map(|secs| Ttl(Some(secs)))
                .map_err(|_| format!("{s:?}: at most {} seconds", u32::MAX))
        }),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: use e.g. 90s, 5m or 1h"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: use e.g. 90s, 5m or 1h")),
    }
}

/// A DNS-label prefix from a flow or execution name, for generateName.
fn name_prefix(s: &str) -> String {
    let mut p: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    p = p.trim_matches('-').to_string();
    if p.is_empty() || !p.starts_with(|c: char| c.is_ascii_alphabetic()) {
        p = format!("stop-{p}");
    }
    format!("{}-", p.trim_end_matches('-'))
}

/// How the command's stops are made: its cause, error, region and Secret.
fn options(a: &StopArgs) -> StopOptions {
    StopOptions {
        cause: a.cause.clone(),
        error: a.error.clone(),
        region_id: a.region.clone(),
        credentials_secret_ref: a.secret.clone().map(|name| SecretRef { name }),
        ..StopOptions::default()
    }
}

fn meta(k: &Kube, a: &StopArgs, from: &str) -> ObjectMeta {
    ObjectMeta {
        name: a.name.clone(),
        generate_name: a.name.is_none().then(|| name_prefix(from)),
        namespace: Some(k.namespace.clone()),
        ..ObjectMeta::default()
    }
}

/// Runs the command, reports a problem, then deletes what it created if it did not succeed
/// (see [`crate::cleanup`]); returns the exit code, which the cleanup never changes.
pub async fn stop(k: &Kube, a: StopArgs) -> i32 {
    let made = Made::default();
    // Ctrl-C and SIGTERM (a cancelled CI job) end the wait, not the process: what was
    // created is still taken back.
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        crate::problem::report(&Problem::error("cannot handle SIGINT and SIGTERM"));
        return exit::ERROR;
    };
    let interrupted = |code, name| {
        if std::io::stdout().is_terminal() {
            // End a progress bar's line.
            println!();
        }
        Err(Problem {
            code,
            message: format!("interrupted ({name}) before the outcome was known"),
        })
    };
    let result = tokio::select! {
        r = run(k, &a, &made) => r,
        _ = int.recv() => interrupted(INTERRUPTED, "SIGINT"),
        _ = term.recv() => interrupted(TERMINATED, "SIGTERM"),
    };
    let code = match result {
        Ok(code) => code,
        Err(p) => {
            crate::problem::report(&p);
            p.code
        }
    };
    tokio::select! {
        () = made.settle(k, code, a.keep) => {}
        _ = int.recv() => eprintln!("interrupted again: not waiting to clean up; see kubectl flowstop get"),
        _ = term.recv() => eprintln!("terminated: not waiting to clean up; see kubectl flowstop get"),
    }
    code
}

async fn run(k: &Kube, a: &StopArgs, made: &Made) -> Result<i32, Problem> {
    match a.execution.clone() {
        Some(execution) => single(k, a, execution, made).await,
        None => set(k, a, made).await,
    }
}

async fn single(k: &Kube, a: &StopArgs, execution: String, made: &Made) -> Result<i32, Problem> {
    let api: Api<ExecutionStop> = Api::namespaced(k.client.clone(), &k.namespace);
    let resource = "executionstops.flowstop.dev";
    let obj = ExecutionStop {
        metadata: meta(k, a, &execution),
        spec: ExecutionStopSpec {
            flow_name: a.flow.clone(),
            execution_name: execution.clone(),
            options: options(a),
            ttl_seconds_after_finished: a.ttl.0,
        },
        status: None,
    };
    let deadline = Instant::now() + a.timeout;
    let created = made
        .create(&api, &obj, Kind::Stop)
        .await
        .map_err(|e| k.api_problem("create", resource, a.name.as_deref(), e))?;
    let name = created.name_any();
    println!(
        "executionstop/{} created (flow {}, execution {})",
        safe(&name),
        safe(&a.flow),
        safe(&execution)
    );
    if !a.wait {
        return Ok(exit::STOPPED);
    }
    let mut follow = Follow::after(api.clone(), &created);
    let mut last = String::new();
    let mut current = created;
    loop {
        let status = current.status.clone().unwrap_or_default();
        let line = transition(&status);
        if line != last {
            println!("{line}");
            last = line;
        }
        // A refused object waits for a policy: exit 5, and it is deleted (unless --keep)
        // rather than left to go ahead later.
        if let Some(code) = outcome(&name, &status, a.already_finished_ok) {
            return Ok(code);
        }
        current = match follow.next(deadline).await {
            Ok(o) => o,
            Err(Stopped::Deadline) => {
                return Err(Problem {
                    code: exit::TIMEOUT,
                    message: format!(
                        "timed out after {} waiting for executionstop/{name} to become final; last: {}",
                        human(a.timeout),
                        ready_text(&status.conditions)
                    ),
                });
            }
            Err(Stopped::Deleted) => {
                return Err(Problem::error(format!(
                    "executionstop/{name} was deleted while waiting"
                )));
            }
            Err(Stopped::Watch(e)) => {
                return Err(Problem::error(format!(
                    "watching executionstop/{name}: {e}"
                )));
            }
        };
    }
}

/// One line per change of what a person cares about: phase, attempt, error, next attempt.
fn transition(s: &ExecutionStopStatus) -> String {
    let mut line = s.phase.map_or("Pending", Phase::as_str).to_string();
    if s.attempts > 0 {
        line.push_str(&format!("  attempt {}", s.attempts));
    }
    if let Some(e) = &s.last_error {
        line.push_str(&format!("  {}", safe(&e.code)));
        if let Some(h) = e.http_status {
            line.push_str(&format!(" ({h})"));
        }
    }
    if let Some(t) = &s.next_attempt_time {
        line.push_str(&format!("  next attempt at {}", t.0));
    }
    line
}

fn ready_text(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> String {
    conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .map_or("no status yet (is the operator running?)".into(), |c| {
            format!(
                "Ready={} {}: {}",
                safe(&c.status),
                safe(&c.reason),
                safe(&c.message)
            )
        })
}

/// The exit code once final, with the one-line summary.
fn outcome(name: &str, s: &ExecutionStopStatus, already_finished_ok: bool) -> Option<i32> {
    let phase = s.phase.filter(|p| p.is_final() || s.denied_by_policy)?;
    let code = match phase {
        _ if s.denied_by_policy => exit::FORBIDDEN,
        Phase::Stopped => exit::STOPPED,
        Phase::AlreadyFinished if already_finished_ok => exit::STOPPED,
        Phase::AlreadyFinished => exit::ALREADY_FINISHED,
        _ => exit::FAILED,
    };
    let mut summary = format!("executionstop/{}: {}", safe(name), phase.as_str());
    match phase {
        Phase::Stopped => {
            if let Some(r) = &s.request_id {
                summary.push_str(&format!(" by request {}", safe(r)));
            }
        }
        Phase::AlreadyFinished => {
            let how = s.execution.as_ref().and_then(|e| e.status.clone());
            summary.push_str(&format!(
                ": the execution had already ended ({}); nothing was stopped",
                safe(how.as_deref().unwrap_or("unknown"))
            ));
        }
        _ => {
            if let Some(e) = &s.last_error {
                summary.push_str(&format!(": {}: {}", safe(&e.code), safe(&e.message)));
            }
        }
    }
    println!("{summary}");
    Some(code)
}

/// A set is created as a preview (dry run), shown and confirmed, then made live and
/// followed to its outcome.
async fn set(k: &Kube, a: &StopArgs, made: &Made) -> Result<i32, Problem> {
    let api: Api<ExecutionStopSet> = Api::namespaced(k.client.clone(), &k.namespace);
    let created = made
        .create(&api, &preview_set(k, a), Kind::Set)
        .await
        .map_err(|e| k.api_problem("create", SETS, a.name.as_deref(), e))?;
    let name = created.name_any();
    let uid = created.metadata.uid.clone().unwrap_or_default();
    println!(
        "executionstopset/{} created (flow {}, preview: nothing is stopped yet)",
        safe(&name),
        safe(&a.flow)
    );
    let mut follow = Follow::after(api.clone(), &created);
    // Until it goes live, the set is a preview only: whatever ends the command deletes it
    // (unless --keep), when the command exits.
    let matched = match preview(a, &name, created, &mut follow).await? {
        Previewed::Go(matched) => matched,
        Previewed::Done(code, why) => {
            println!("{why}: nothing was stopped");
            return Ok(code);
        }
    };
    go_live(k, &api, &name, made).await?;
    println!(
        "stopping {matched} executions (executionstopset/{})",
        safe(&name)
    );
    follow_live(k, a, &name, &uid, &mut follow).await
}

const SETS: &str = "executionstopsets.flowstop.dev";

/// The set the flags describe, as a preview (`dryRun: true`).
fn preview_set(k: &Kube, a: &StopArgs) -> ExecutionStopSet {
    let max_count = a.max_count.expect("clap requires it without an execution");
    // What the person agrees to is what the preview counts: executions started after it
    // are not added when the set goes live.
    // A Time keeps whole seconds: the next one, so nothing started this second is cut.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 1)
        .expect("a time in range");
    let started_before = a.started_before.map_or(now, |t| t.min(now));
    ExecutionStopSet {
        metadata: meta(k, a, &a.flow),
        spec: ExecutionStopSetSpec {
            flow_name: a.flow.clone(),
            selector: Selector {
                status: a.status.as_deref().map(|s| match s {
                    "Starting" => SelectorStatus::Starting,
                    _ => SelectorStatus::Running,
                }),
                execution_name_prefix: a.prefix.clone(),
                started_after: a.started_after.map(Time),
                started_before: Some(Time(started_before)),
            },
            max_count,
            dry_run: true,
            options: options(a),
            ttl_seconds_after_finished: a.ttl.0,
        },
        status: None,
    }
}

/// Turns the confirmed preview into a set that stops executions.
async fn go_live(
    k: &Kube,
    api: &Api<ExecutionStopSet>,
    name: &str,
    made: &Made,
) -> Result<(), Problem> {
    // From here on it may stop executions (even if the answer to the patch is lost).
    made.live().await;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"dryRun": false}})),
    )
    .await
    .map_err(|e| k.api_problem("patch", SETS, Some(name), e))?;
    Ok(())
}

/// Shows the live set's progress until it is final (or refused by policy), then its
/// outcome and failed ExecutionStops; the exit code.
async fn follow_live(
    k: &Kube,
    a: &StopArgs,
    name: &str,
    uid: &str,
    follow: &mut Follow<ExecutionStopSet>,
) -> Result<i32, Problem> {
    // --timeout counts from here: time spent reading the preview is the person's.
    let wait = Waiting {
        name,
        deadline: Instant::now() + a.timeout,
        timeout: a.timeout,
    };
    let mut bar = Progress::new(std::io::stdout().is_terminal());
    let mut status = None;
    loop {
        let current = wait.next(follow, status.as_ref()).await?;
        let s = current.status.clone().unwrap_or_default();
        status = Some(s.clone());
        // A status of an older generation may still be the preview's.
        if current.metadata.generation != s.observed_generation {
            continue;
        }
        match s.phase {
            Some(SetPhase::Completed | SetPhase::Failed) => {
                bar.show(&s.children, true);
                let code = set_outcome(name, &s);
                if s.children.failed > 0 {
                    failed_children(k, name, uid, a.keep).await;
                }
                return Ok(code);
            }
            Some(SetPhase::Pending) if s.denied_by_policy => return Ok(set_outcome(name, &s)),
            _ => bar.show(&s.children, false),
        }
    }
}

enum Previewed {
    /// Confirmed: this many executions match.
    Go(u32),
    /// Not going live: the exit code, and why.
    Done(i32, &'static str),
}

/// Waits for the preview, shows it and asks.
async fn preview(
    a: &StopArgs,
    name: &str,
    created: ExecutionStopSet,
    follow: &mut Follow<ExecutionStopSet>,
) -> Result<Previewed, Problem> {
    let max_count = a.max_count.expect("clap requires it without an execution");
    let wait = Waiting {
        name,
        deadline: Instant::now() + a.timeout,
        timeout: a.timeout,
    };
    let mut current = created;
    let preview = loop {
        let s = current.status.clone().unwrap_or_default();
        if s.observed_generation == current.metadata.generation {
            match s.phase {
                Some(SetPhase::Previewing) => break s,
                Some(SetPhase::Failed) => {
                    return Ok(Previewed::Done(set_outcome(name, &s), "the preview failed"));
                }
                Some(SetPhase::Pending) if s.denied_by_policy => {
                    return Ok(Previewed::Done(set_outcome(name, &s), "refused by policy"));
                }
                _ => {}
            }
        }
        current = wait.next(follow, current.status.as_ref()).await?;
    };
    let matched = preview.matched.unwrap_or(0);
    if matched > max_count {
        println!("more than --max-count ({max_count}) executions match");
        return Ok(Previewed::Done(exit::FAILED, "too many matches"));
    }
    println!("{matched} executions match");
    for n in &preview.first_matches {
        println!("  {}", safe(n));
    }
    if (matched as usize) > preview.first_matches.len() {
        println!(
            "  … and {} more",
            matched as usize - preview.first_matches.len()
        );
    }
    if a.dry_run {
        return Ok(Previewed::Done(exit::STOPPED, "dry run"));
    }
    if matched == 0 {
        return Ok(Previewed::Done(exit::STOPPED, "no match"));
    }
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Problem::usage(format!(
                "not stopping {matched} executions without confirmation: pass --yes when not on a terminal"
            )));
        }
        print!("Stop these {matched} executions? [y/N] ");
        let _ = std::io::stdout().flush();
        // Read on a thread of its own, so Ctrl-C at the prompt is seen at once.
        let answer = tokio::task::spawn_blocking(|| {
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            answer
        })
        .await
        .unwrap_or_default();
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(Previewed::Done(exit::ABORTED, "declined"));
        }
    }
    Ok(Previewed::Go(matched))
}

/// What following a set needs to say why it stopped.
struct Waiting<'a> {
    name: &'a str,
    deadline: Instant,
    timeout: Duration,
}

impl Waiting<'_> {
    async fn next(
        &self,
        follow: &mut Follow<ExecutionStopSet>,
        status: Option<&flowstop_api::set::ExecutionStopSetStatus>,
    ) -> Result<ExecutionStopSet, Problem> {
        let name = self.name;
        follow.next(self.deadline).await.map_err(|e| match e {
            Stopped::Deadline => Problem {
                code: exit::TIMEOUT,
                message: format!(
                    "timed out after {} waiting for executionstopset/{name}; last: {}",
                    human(self.timeout),
                    status.map_or_else(
                        || "no status yet (is the operator running?)".into(),
                        |s| ready_text(&s.conditions)
                    )
                ),
            },
            Stopped::Deleted => {
                Problem::error(format!("executionstopset/{name} was deleted while waiting"))
            }
            Stopped::Watch(e) => Problem::error(format!("watching executionstopset/{name}: {e}")),
        })
    }
}

fn set_outcome(name: &str, s: &ExecutionStopSetStatus) -> i32 {
    let reason = s
        .conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default();
    println!(
        "executionstopset/{}: {} {}: {}",
        safe(name),
        s.phase.map_or("?", SetPhase::as_str),
        safe(&reason.0),
        safe(&reason.1)
    );
    match s.phase {
        Some(SetPhase::Completed) => exit::STOPPED,
        _ if s.denied_by_policy => exit::FORBIDDEN,
        _ => exit::FAILED,
    }
}

/// The set's failed ExecutionStops, named here because without --keep the set is deleted
/// as the command exits, and its ExecutionStops with it (garbage collected). Only the set's
/// own children: a controller ownerReference to this set's uid, not just its label.
async fn failed_children(k: &Kube, set: &str, uid: &str, keep: bool) {
    const SHOWN: usize = 10;
    let api: Api<ExecutionStop> = Api::namespaced(k.client.clone(), &k.namespace);
    let selector = ListParams::default().labels(&format!("{SET_LABEL}={set}"));
    if let Ok(list) = api.list(&selector).await {
        let failed: Vec<&ExecutionStop> = list
            .items
            .iter()
            .filter(|c| {
                c.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && o.uid == uid)
            })
            .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed))
            .collect();
        for c in failed.iter().take(SHOWN) {
            let e = c.status.as_ref().and_then(|s| s.last_error.as_ref());
            println!(
                "  failed: executionstop/{} (execution {}): {}: {}",
                safe(&c.name_any()),
                safe(&c.spec.execution_name),
                safe(e.map_or("", |e| e.code.as_str())),
                safe(e.map_or("", |e| e.message.as_str()))
            );
        }
        if failed.len() > SHOWN {
            println!("  … and {} more", failed.len() - SHOWN);
        }
    }
    if keep {
        println!(
            "  see the failed ones: kubectl get executionstop -l {SET_LABEL}={} -o wide",
            safe(set)
        );
    }
}

/// A progress bar on a terminal; a plain line per change otherwise.
struct Progress {
    terminal: bool,
    last: String,
}

impl Progress {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            last: String::new(),
        }
    }

    fn show(&mut self, c: &flowstop_api::set::ChildCounts, done: bool) {
        let text = format!(
            "{}/{} final: {} stopped, {} already finished, {} failed",
            c.finals(),
            c.total,
            c.stopped,
            c.already_finished,
            c.failed
        );
        if self.terminal {
            const WIDTH: usize = 30;
            let filled = if c.total == 0 {
                WIDTH
            } else {
                (c.finals() as usize * WIDTH) / c.total as usize
            };
            let bar = format!("[{}{}]", "#".repeat(filled), "-".repeat(WIDTH - filled));
            // \r and clear-to-end redraw the line; the last one ends with a newline.
            print!("\r{bar} {text}\x1b[K");
            if done {
                println!();
            }
            let _ = std::io::stdout().flush();
        } else if text != self.last {
            println!("{text}");
        }
        self.last = text;
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s % 3600 == 0 && s > 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::{Ttl, parse_ttl};

    #[test]
    fn ttl_is_a_duration_or_never() {
        assert_eq!(parse_ttl("168h"), Ok(Ttl(Some(604_800))));
        assert_eq!(parse_ttl("90s"), Ok(Ttl(Some(90))));
        assert_eq!(parse_ttl("never"), Ok(Ttl(None)));
        assert!(parse_ttl("soon").is_err());
    }
}
