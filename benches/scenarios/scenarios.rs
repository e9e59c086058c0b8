//! The five scenarios of BENCHMARKS.md.

use crate::env::{self, Emulator, Env, Watch, create_all, estop, writes};
use crate::floors;
use crate::stats::{Spread, percentile, sorted, spread};
use flowstop::crd::ExecutionStop;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use std::time::{Duration, Instant};

const UNTHROTTLED: &[&str] = &[
    "--stop-rate",
    "100000",
    "--stop-burst",
    "100000",
    "--describe-rate",
    "100000",
    "--describe-burst",
    "100000",
];

#[derive(Serialize, Debug)]
pub struct Latency {
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// create → first status seen (watch + reconcile start + the attempt's status write)
    pub to_stopping_p50_ms: f64,
    /// first status → final status seen (fnf call + final status write + watch)
    pub to_final_p50_ms: f64,
    /// StopExecution latency inside the operator (mean)
    pub fnf_call_mean_ms: f64,
    /// The floor in the same run: a bare client's create → final status seen (p50, p99)
    pub floor_p50_ms: f64,
    pub floor_p99_ms: f64,
    pub p50_to_floor: f64,
    pub p99_to_floor: f64,
}

pub async fn latency(env: &Env, n: usize) -> anyhow::Result<Latency> {
    let emu = Emulator::start(&["--no-quota"]).await?;
    emu.executions("lat", n).await?;
    emu.executions("latfloor", n).await?;
    let ns = env.namespace("lat").await?;
    let op = env::start_operator(env, &emu, &ns, UNTHROTTLED).await?;
    let watch = Watch::start(&env.client, &ns).await;
    let api: Api<ExecutionStop> = Api::namespaced(env.client.clone(), &ns);
    // The floor's objects live in a namespace the operator does not watch, on the same
    // apiserver and emulator, and alternate with the operator's: both see the same moment.
    let floor_ns = env.namespace("latfloor").await?;
    let bare = floors::Bare::new(env, &emu, &floor_ns)?;
    let floor_watch = Watch::start(&env.client, &floor_ns).await;
    let (mut total, mut first, mut second, mut floor) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let f = bare
            .latency_one(&floor_watch, &format!("s{i}"), &format!("latfloor-{i}"))
            .await?;
        floor.push(f.as_secs_f64() * 1e3);
        let name = format!("s{i}");
        let t0 = Instant::now();
        api.create(&Default::default(), &estop(&name, &format!("lat-{i}")))
            .await?;
        let created = t0.elapsed();
        let done = watch
            .all_done(std::slice::from_ref(&name), Duration::from_secs(30))
            .await?;
        let seen = watch.seen.lock().unwrap()[&name];
        let stopping = seen.stopping.unwrap_or(done);
        if std::env::var_os("FLOWSTOP_BENCH_TRACE").is_some() {
            eprintln!(
                "latency {i}: {:.1} ms (create call {:.1} ms, to first status {:.1} ms)",
                (done - t0).as_secs_f64() * 1e3,
                created.as_secs_f64() * 1e3,
                (stopping - t0).as_secs_f64() * 1e3
            );
        }
        total.push((done - t0).as_secs_f64() * 1e3);
        first.push((stopping - t0).as_secs_f64() * 1e3);
        second.push((done - stopping).as_secs_f64() * 1e3);
    }
    let floor = sorted(floor);
    let (floor_p50_ms, floor_p99_ms) = (percentile(&floor, 50.0), percentile(&floor, 99.0));
    let sum = op.metric("flowstop_fnf_call_duration_seconds_sum").await;
    let count = op.metric("flowstop_fnf_call_duration_seconds_count").await;
    let t = sorted(total);
    let (p50_ms, p99_ms) = (percentile(&t, 50.0), percentile(&t, 99.0));
    Ok(Latency {
        n,
        p50_ms,
        p95_ms: percentile(&t, 95.0),
        p99_ms,
        floor_p50_ms,
        floor_p99_ms,
        p50_to_floor: p50_ms / floor_p50_ms,
        p99_to_floor: p99_ms / floor_p99_ms,
        max_ms: t[t.len() - 1],
        to_stopping_p50_ms: percentile(&sorted(first), 50.0),
        to_final_p50_ms: percentile(&sorted(second), 50.0),
        fnf_call_mean_ms: if count > 0.0 {
            sum / count * 1e3
        } else {
            f64::NAN
        },
    })
}

#[derive(Serialize, Debug)]
pub struct Burst {
    pub n: usize,
    pub wall_s: Spread,
    pub objects_per_s: Spread,
    /// The floor in the same run: a bare client making the same writes per object
    pub floor_objects_per_s: Spread,
    /// objects_per_s / floor_objects_per_s, run by run
    pub share_of_floor: Spread,
    pub stop_calls_per_object: f64,
    pub status_writes_per_object: f64,
    pub event_writes_per_object: f64,
    pub operator_cpu_s: Spread,
    pub operator_peak_rss_mib: f64,
    /// CPU seconds of kube-apiserver, etcd and the emulator during the burst (median run)
    pub apiserver_cpu_s: f64,
    pub etcd_cpu_s: f64,
    pub emulator_cpu_s: f64,
}

pub async fn burst(env: &Env, n: usize, repeats: usize) -> anyhow::Result<Burst> {
    let (mut walls, mut rates, mut cpus) = (vec![], vec![], vec![]);
    let (mut floor_rates, mut shares) = (vec![], vec![]);
    let (mut calls, mut status, mut events, mut rss) = (0.0, 0.0, 0.0, 0.0f64);
    let mut others: Vec<[f64; 3]> = vec![];
    for r in 0..repeats {
        // The operator reconciles 32 objects at once by default: the floor uses as many.
        let floor = floors::burst(env, n, 32).await?;
        floor_rates.push(floor);
        let emu = Emulator::start(&["--no-quota"]).await?;
        emu.executions("burst", n).await?;
        let ns = env.namespace("burst").await?;
        let op = env::start_operator(env, &emu, &ns, UNTHROTTLED).await?;
        let watch = Watch::start(&env.client, &ns).await;
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let objs = names
            .iter()
            .enumerate()
            .map(|(i, name)| estop(name, &format!("burst-{i}")))
            .collect();
        let (cpu0, _, _) = op.usage();
        let [etcd_pid, api_pid, _] = env.plane.pids();
        let emu_pid = emu._child.id().unwrap_or(0);
        let others0 = [
            testkit::operator::cpu_seconds(api_pid),
            testkit::operator::cpu_seconds(etcd_pid),
            testkit::operator::cpu_seconds(emu_pid),
        ];
        let before = env.apiserver_requests().await?;
        let t0 = create_all(&env.client, &ns, objs, 64).await?;
        let done = watch.all_done(&names, Duration::from_secs(600)).await?;
        let wall = (done - t0).as_secs_f64();
        let after = env.apiserver_requests().await?;
        let (cpu1, peak, _) = op.usage();
        let others1 = [
            testkit::operator::cpu_seconds(api_pid),
            testkit::operator::cpu_seconds(etcd_pid),
            testkit::operator::cpu_seconds(emu_pid),
        ];
        others.push([
            others1[0] - others0[0],
            others1[1] - others0[1],
            others1[2] - others0[2],
        ]);
        let counters = emu.counters().await?;
        let stops: f64 = counters["StopExecution"]
            .as_object()
            .map_or(0.0, |m| m.values().filter_map(|v| v.as_f64()).sum());
        walls.push(wall);
        rates.push(n as f64 / wall);
        shares.push(n as f64 / wall / floor);
        cpus.push(cpu1 - cpu0);
        calls = stops / n as f64;
        status = writes(&before, &after, "executionstops", "status") / n as f64;
        events = writes(&before, &after, "events", "") / n as f64;
        rss = rss.max(peak);
        eprintln!(
            "burst run {r}: {n} objects in {wall:.2} s ({:.0} % of the floor's {floor:.1}/s)",
            n as f64 / wall / floor * 100.0
        );
    }
    others.sort_by(|a, b| a[0].partial_cmp(&b[0]).expect("no NaN"));
    let mid = others[others.len() / 2];
    Ok(Burst {
        apiserver_cpu_s: mid[0],
        etcd_cpu_s: mid[1],
        emulator_cpu_s: mid[2],
        n,
        wall_s: spread(&walls),
        objects_per_s: spread(&rates),
        floor_objects_per_s: spread(&floor_rates),
        share_of_floor: spread(&shares),
        stop_calls_per_object: calls,
        status_writes_per_object: status,
        event_writes_per_object: events,
        operator_cpu_s: spread(&cpus),
        operator_peak_rss_mib: rss,
    })
}

#[derive(Serialize, Debug, Clone)]
pub struct QuotaRun {
    pub tool: String,
    pub wall_s: Spread,
    pub ratio_to_floor: f64,
    pub throttled_share: Spread,
    pub calls: f64,
}

/// The service's StopExecution bucket (10, 2/s) with the refill sped up 10×.
pub const SPEEDUP: f64 = 10.0;

pub fn floor(n: usize) -> f64 {
    (n as f64 - 10.0).max(0.0) / (2.0 * SPEEDUP)
}

fn stop_counts(counters: &serde_json::Value) -> (f64, f64) {
    let m = counters["StopExecution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let total: f64 = m.values().filter_map(|v| v.as_f64()).sum();
    (
        total,
        m.get("ResourceThrottled")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0),
    )
}

pub async fn quota_emulator(prefix: &str, n: usize) -> anyhow::Result<Emulator> {
    quota_emulator_at(prefix, n, SPEEDUP).await
}

/// An emulator whose buckets refill `speedup` times faster than the service's, with `n`
/// running executions named `<prefix>-<i>`.
pub async fn quota_emulator_at(prefix: &str, n: usize, speedup: f64) -> anyhow::Result<Emulator> {
    // Executions are seeded with another account, so the measured account's buckets start full.
    let emu = Emulator::start(&[
        "--quota-speedup",
        &speedup.to_string(),
        "--access-key",
        "seed:seedSecret",
    ])
    .await?;
    env::start_executions(&emu.url, ("seed", "seedSecret"), prefix, n).await?;
    Ok(emu)
}

pub async fn quota_flowstop(env: &Env, n: usize, repeats: usize) -> anyhow::Result<QuotaRun> {
    let (mut walls, mut shares, mut calls) = (vec![], vec![], 0.0);
    let rate = (2.0 * SPEEDUP).to_string();
    for _ in 0..repeats {
        let emu = quota_emulator("q", n).await?;
        let ns = env.namespace("quota").await?;
        let _op = env::start_operator(
            env,
            &emu,
            &ns,
            &["--stop-rate", &rate, "--stop-burst", "10"],
        )
        .await?;
        let watch = Watch::start(&env.client, &ns).await;
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let objs = names
            .iter()
            .enumerate()
            .map(|(i, name)| estop(name, &format!("q-{i}")))
            .collect();
        let t0 = create_all(&env.client, &ns, objs, 64).await?;
        let done = watch.all_done(&names, Duration::from_secs(600)).await?;
        walls.push((done - t0).as_secs_f64());
        let (total, throttled) = stop_counts(&emu.counters().await?);
        shares.push(throttled / total);
        calls = total;
    }
    let wall = spread(&walls);
    Ok(QuotaRun {
        tool: "flowstop".into(),
        ratio_to_floor: wall.median / floor(n),
        wall_s: wall,
        throttled_share: spread(&shares),
        calls,
    })
}

pub async fn quota_peer(
    python: &str,
    mode: &str,
    n: usize,
    repeats: usize,
) -> anyhow::Result<QuotaRun> {
    let (mut walls, mut shares, mut calls) = (vec![], vec![], 0.0);
    for _ in 0..repeats {
        let emu = quota_emulator("p", n).await?;
        let out = tokio::process::Command::new(python)
            .arg(env::repo("benches/peers.py"))
            .args([mode, &emu.url, env::AK, env::SK, "p", &n.to_string()])
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "peer {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let (total, throttled) = stop_counts(&emu.counters().await?);
        anyhow::ensure!(
            total == r["calls"].as_f64().unwrap_or(-1.0),
            "the emulator and {mode} disagree on calls"
        );
        walls.push(r["wall"].as_f64().unwrap_or(f64::NAN));
        shares.push(throttled / total);
        calls = total;
    }
    let wall = spread(&walls);
    let tool = if mode == "legacy" {
        "aliyun-python-sdk-fnf (sequential)"
    } else {
        "alibabacloud-fnf20190315 (16 threads)"
    };
    Ok(QuotaRun {
        tool: tool.into(),
        ratio_to_floor: wall.median / floor(n),
        wall_s: wall,
        throttled_share: spread(&shares),
        calls,
    })
}

#[derive(Serialize, Debug)]
pub struct Rest {
    pub n: usize,
    /// Of which children of ExecutionStopSets (created by the operator from real sets).
    pub children: usize,
    pub sets: usize,
    /// How long the first restart was held at rest, counting calls and writes.
    pub held_s: f64,
    /// The operator's default: initial lists streamed (WatchList).
    pub time_to_ready_s: Spread,
    pub time_to_all_seen_s: Spread,
    /// With `--initial-list pages`, as on an API server without streaming lists.
    pub paged_time_to_ready_s: Spread,
    pub paged_time_to_all_seen_s: Spread,
    pub fnf_calls: f64,
    pub status_writes: f64,
    pub apiserver_writes: f64,
    pub rss_mib: Spread,
}

/// Children per set in the at-rest scenario.
const REST_SET_SIZE: usize = 1000;

/// `n` finished ExecutionStops: a tenth children of ExecutionStopSets that the operator ran
/// (sets of up to 1,000), the rest single objects whose final status is written directly.
/// Then the operator is restarted `restarts` times; after the first start it is held at
/// rest for `hold`. Every restart must make no call and no write (else an error).
pub async fn at_rest(env: &Env, n: usize, restarts: usize, hold: Duration) -> anyhow::Result<Rest> {
    let emu = Emulator::start(&["--no-quota"]).await?;
    let ns = env.namespace("rest").await?;
    let api: Api<ExecutionStop> = Api::namespaced(env.client.clone(), &ns);
    let children = n / 10;
    let sets = children.div_ceil(REST_SET_SIZE);
    for s in 0..sets {
        let size = REST_SET_SIZE.min(children - s * REST_SET_SIZE);
        env::start_executions(&emu.url, (env::AK, env::SK), &format!("set{s}"), size).await?;
    }
    let conditions: Vec<serde_json::Value> = ["Ready", "Reconciling", "Stalled"]
        .iter()
        .map(|t| {
            serde_json::json!({"type": t, "status": if *t == "Ready" { "True" } else { "False" }, "reason": "Stopped",
                "message": "stopped", "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"})
        })
        .collect();
    let status = serde_json::json!({"status": {
        "phase": "Stopped", "attempts": 1, "observedGeneration": 1, "lastAttemptTime": "2026-01-01T00:00:00Z",
        "execution": {"status": "Stopped"}, "conditions": conditions,
    }});
    let singles = n - children;
    let objs: Vec<ExecutionStop> = (0..singles)
        .map(|i| estop(&format!("s{i}"), &format!("rest-{i}")))
        .collect();
    create_all(&env.client, &ns, objs, 64).await?;
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(0..singles)
        .map(|i| {
            let (api, status) = (api.clone(), status.clone());
            async move {
                api.patch_status(
                    &format!("s{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(64)
        .try_for_each(|()| futures::future::ready(Ok(())))
        .await?;
    run_sets(env, &emu, &ns, sets).await?;
    eprintln!("at rest: {singles} single ExecutionStops and {children} children of {sets} sets");
    let (mut ready, mut all, mut rss) = (vec![], vec![], vec![]);
    let (mut paged_ready, mut paged_all) = (vec![], vec![]);
    let (mut calls, mut status_writes, mut api_writes) = (0.0, 0.0, 0.0);
    // Initial lists streamed (the default on 1.35, where WatchList is on), then as on an API
    // server without streaming lists (in pages of 500).
    let streamed = &["--initial-list", "stream"][..];
    for (paged, extra) in [(false, streamed), (true, &["--initial-list", "pages"][..])] {
        for r in 0..restarts {
            let hold = if r == 0 && !paged {
                hold
            } else {
                Duration::ZERO
            };
            let start = restart(env, &emu, &ns, n, extra, hold).await?;
            calls += start.calls;
            status_writes += start.status_writes;
            api_writes += start.api_writes;
            let how = if paged { "in pages" } else { "streamed" };
            eprintln!(
                "at rest, restart {r} ({how}): ready in {:.2} s, all {n} seen in {:.2} s, RSS {:.1} MiB",
                start.ready, start.all, start.rss
            );
            if paged {
                paged_ready.push(start.ready);
                paged_all.push(start.all);
            } else {
                ready.push(start.ready);
                all.push(start.all);
                rss.push(start.rss);
            }
        }
    }
    let (total, _) = stop_counts(&emu.counters().await?);
    let stop_calls_at_rest = total - children as f64;
    anyhow::ensure!(
        calls == 0.0 && stop_calls_at_rest == 0.0 && status_writes == 0.0 && api_writes == 0.0,
        "at rest: {calls} fnf calls, {status_writes} status writes, {api_writes} API writes"
    );
    Ok(Rest {
        n,
        children,
        sets,
        held_s: hold.as_secs_f64(),
        time_to_ready_s: spread(&ready),
        time_to_all_seen_s: spread(&all),
        paged_time_to_ready_s: spread(&paged_ready),
        paged_time_to_all_seen_s: spread(&paged_all),
        fnf_calls: calls + stop_calls_at_rest,
        status_writes,
        apiserver_writes: api_writes,
        rss_mib: spread(&rss),
    })
}

/// One start of the operator over `n` settled objects, held for `hold` once all are seen.
struct Start {
    ready: f64,
    all: f64,
    rss: f64,
    calls: f64,
    status_writes: f64,
    api_writes: f64,
}

async fn restart(
    env: &Env,
    emu: &Emulator,
    ns: &str,
    n: usize,
    extra: &[&str],
    hold: Duration,
) -> anyhow::Result<Start> {
    let before = env.apiserver_requests().await?;
    let t0 = Instant::now();
    let op = env::start_operator(env, emu, ns, extra).await?;
    let ready = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    // Every object in the operator's ledger (settled ones never reach a controller).
    while op.metric("flowstop_objects").await < n as f64 {
        anyhow::ensure!(Instant::now() < deadline, "not all seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = t0.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let after = env.apiserver_requests().await?;
    let api_writes = ["executionstops", "executionstopsets"]
        .iter()
        .flat_map(|k| {
            [
                writes(&before, &after, k, "status"),
                writes(&before, &after, k, ""),
            ]
        })
        .sum::<f64>()
        + writes(&before, &after, "events", "");
    Ok(Start {
        ready,
        all,
        rss: op.usage().2,
        calls: op.metric("flowstop_fnf_calls_total").await,
        status_writes: op.metric("flowstop_status_writes_total").await,
        api_writes,
    })
}

/// Runs `sets` ExecutionStopSets (executions `set<s>-*`) to completion with an operator of
/// their own, which then stops.
async fn run_sets(env: &Env, emu: &Emulator, ns: &str, sets: usize) -> anyhow::Result<()> {
    use flowstop::crd::ExecutionStopSet;
    use flowstop::crd::set::SetPhase;
    let op = env::start_operator(env, emu, ns, UNTHROTTLED).await?;
    let api: Api<ExecutionStopSet> = Api::namespaced(env.client.clone(), ns);
    for s in 0..sets {
        let set: ExecutionStopSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "flowstop.dev/v1alpha1", "kind": "ExecutionStopSet",
            "metadata": {"name": format!("set{s}")},
            "spec": {"flowName": "f", "maxCount": REST_SET_SIZE,
                     "selector": {"executionNamePrefix": format!("set{s}-")},
                     "credentialsSecretRef": {"name": "creds"}}
        }))?;
        api.create(&kube::api::PostParams::default(), &set).await?;
    }
    for s in 0..sets {
        let name = format!("set{s}");
        let done = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            |o: Option<&ExecutionStopSet>| {
                o.and_then(|s| s.status.as_ref())
                    .is_some_and(|s| s.phase == Some(SetPhase::Completed))
            },
        );
        tokio::time::timeout(Duration::from_secs(600), done).await??;
    }
    op.stop().await;
    Ok(())
}

#[derive(Serialize, Debug)]
pub struct EmulatorThroughput {
    pub requests: usize,
    pub concurrency: usize,
    pub requests_per_s: Spread,
}

/// Signed DescribeExecution calls against fnf-emulator (no quota), from this process.
pub async fn emulator_throughput(n: usize, repeats: usize) -> anyhow::Result<EmulatorThroughput> {
    use futures::StreamExt;
    let emu = Emulator::start(&["--no-quota"]).await?;
    emu.executions("thr", 1).await?;
    let account = fnf::Account {
        endpoint: fnf::Endpoint::url(&emu.url, false)?,
        credentials: fnf::Credentials::new(env::AK, env::SK, None),
    };
    let client = fnf::Client::new(
        fnf::http_client(Duration::from_secs(2), Duration::from_secs(10)),
        Duration::from_secs(10),
    );
    let concurrency = 32;
    let mut rates = vec![];
    for _ in 0..repeats {
        let t0 = Instant::now();
        let results: Vec<_> = futures::stream::iter(0..n)
            .map(|_| {
                let (client, account) = (client.clone(), account.clone());
                async move {
                    client
                        .describe_execution(&account, "f", "thr-0", None)
                        .await
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let wall = t0.elapsed().as_secs_f64();
        for r in results {
            r?;
        }
        rates.push(n as f64 / wall);
    }
    Ok(EmulatorThroughput {
        requests: n,
        concurrency,
        requests_per_s: spread(&rates),
    })
}
