//! The set scenario: one ExecutionStopSet over N running executions, against the documented
//! ListExecutions and StopExecution buckets (10 burst, 2/s each) with the refill sped up
//! as in the quota scenario.

use crate::env::{self, Env, writes};
use crate::scenarios::{SPEEDUP, quota_emulator};
use crate::stats::{Spread, spread};
use flowstop::crd::ExecutionStopSet;
use flowstop::crd::set::SetPhase;
use kube::api::{Api, PostParams};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Serialize, Debug, Clone)]
pub struct SetRun {
    pub n: usize,
    pub floor_s: f64,
    pub wall_s: Spread,
    pub ratio_to_floor: f64,
    pub throttled_share: Spread,
    /// StopExecution calls (any answer) and successful ones, per execution.
    pub stop_calls_per_execution: f64,
    pub ok_stops_per_execution: f64,
    pub list_calls: f64,
    /// Creates, status writes (both kinds) and Events, per execution.
    pub apiserver_writes_per_execution: f64,
}

/// Listing first (pages of 99 from a bucket of 10), then stopping (from a bucket of 10),
/// both refilled at 2/s × SPEEDUP: the set cannot stop anything before its listing ends.
pub fn floor(n: usize) -> f64 {
    let rate = 2.0 * SPEEDUP;
    let pages = n.div_ceil(99) as f64;
    (pages - 10.0).max(0.0) / rate + (n as f64 - 10.0).max(0.0) / rate
}

fn calls(counters: &serde_json::Value, action: &str) -> (f64, f64, f64) {
    let m = counters[action].as_object().cloned().unwrap_or_default();
    let get = |k: &str| m.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    (
        m.values().filter_map(|v| v.as_f64()).sum(),
        get("OK"),
        get("ResourceThrottled"),
    )
}

pub async fn set_quota(env: &Env, n: usize, repeats: usize) -> anyhow::Result<SetRun> {
    let rate = (2.0 * SPEEDUP).to_string();
    let flags = [
        "--stop-rate",
        rate.as_str(),
        "--stop-burst",
        "10",
        "--list-rate",
        rate.as_str(),
        "--list-burst",
        "10",
    ];
    let (mut walls, mut shares) = (vec![], vec![]);
    let (mut per, mut ok, mut lists, mut api_writes) = (0.0, 0.0, 0.0, 0.0);
    for r in 0..repeats {
        let emu = quota_emulator("set", n).await?;
        let ns = env.namespace("set").await?;
        let _op = env::start_operator(env, &emu, &ns, &flags).await?;
        let api: Api<ExecutionStopSet> = Api::namespaced(env.client.clone(), &ns);
        let set: ExecutionStopSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "flowstop.dev/v1alpha1", "kind": "ExecutionStopSet",
            "metadata": {"name": "all"},
            "spec": {"flowName": "f", "maxCount": n, "credentialsSecretRef": {"name": "creds"}}
        }))?;
        let before = env.apiserver_requests().await?;
        let t0 = Instant::now();
        api.create(&PostParams::default(), &set).await?;
        let done = kube::runtime::wait::await_condition(
            api.clone(),
            "all",
            |o: Option<&ExecutionStopSet>| {
                o.and_then(|s| s.status.as_ref()).is_some_and(|s| {
                    matches!(s.phase, Some(SetPhase::Completed | SetPhase::Failed))
                })
            },
        );
        let last = tokio::time::timeout(Duration::from_secs(600), done).await??;
        let wall = t0.elapsed().as_secs_f64();
        let phase = last.and_then(|s| s.status).and_then(|s| s.phase);
        anyhow::ensure!(
            phase == Some(SetPhase::Completed),
            "the set ended {phase:?}"
        );
        let after = env.apiserver_requests().await?;
        let counters = emu.counters().await?;
        let (stops, stops_ok, throttled) = calls(&counters, "StopExecution");
        let (list_total, _, _) = calls(&counters, "ListExecutions");
        walls.push(wall);
        shares.push(throttled / stops);
        per = stops / n as f64;
        ok = stops_ok / n as f64;
        lists = list_total;
        api_writes = (writes(&before, &after, "executionstops", "")
            + writes(&before, &after, "executionstops", "status")
            + writes(&before, &after, "executionstopsets", "")
            + writes(&before, &after, "executionstopsets", "status")
            + writes(&before, &after, "events", ""))
            / n as f64;
        eprintln!(
            "set run {r}: {n} executions in {wall:.2} s ({:.3} × the floor's {:.2} s)",
            wall / floor(n),
            floor(n)
        );
    }
    let wall = spread(&walls);
    Ok(SetRun {
        n,
        floor_s: floor(n),
        ratio_to_floor: wall.median / floor(n),
        wall_s: wall,
        throttled_share: spread(&shares),
        stop_calls_per_execution: per,
        ok_stops_per_execution: ok,
        list_calls: lists,
        apiserver_writes_per_execution: api_writes,
    })
}

/// The report's rows for the set scenario.
pub fn rows(s: &SetRun, mark: impl Fn(bool) -> &'static str) -> String {
    let mut out = format!(
        "| set (1 ExecutionStopSet over {} running executions, floor {:.2} s) | wall s / × floor / share 429 | {} / {:.3} / {:.1} % | ≤ 1.05 × floor, ≤ 2 % throttled | {} |\n",
        s.n,
        s.floor_s,
        s.wall_s,
        s.ratio_to_floor,
        s.throttled_share.median * 100.0,
        mark(s.ratio_to_floor <= 1.05 && s.throttled_share.median <= 0.02)
    );
    out += &format!(
        "| | successful / all StopExecution calls per execution; ListExecutions calls | {:.3} / {:.3}; {:.0} | exactly 1 successful | {} |\n",
        s.ok_stops_per_execution,
        s.stop_calls_per_execution,
        s.list_calls,
        mark((s.ok_stops_per_execution - 1.0).abs() < 1e-9)
    );
    out += &format!(
        "| | apiserver writes per execution (create, status of both kinds, Events) | {:.3} | | |\n",
        s.apiserver_writes_per_execution
    );
    out
}
