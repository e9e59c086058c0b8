//! `scripts/soak`: ExecutionStops under a faulty fnf API while the operator is SIGKILLed
//! and kube-apiserver restarted; then checks that every object reached the right final
//! phase with no stop repeated after a recorded success. See RELIABILITY.md.

#[path = "scenarios/env.rs"]
mod env;

use clap::Parser;
use env::{Emulator, Env, Watch, create_all, estop, start_operator};
use rand::Rng;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 300)]
    objects: usize,
    /// SIGKILLs of the operator at random moments
    #[arg(long, default_value_t = 3)]
    kills: usize,
    #[arg(long, default_value_t = 30)]
    max_attempts: u32,
    #[arg(long, hide = true)]
    bench: bool,
}

const OPERATOR: &[&str] = &[
    "--call-timeout",
    "1",
    "--backoff-base-ms",
    "100",
    "--backoff-max-ms",
    "2000",
    "--stop-rate",
    "1000",
    "--stop-burst",
    "1000",
    "--describe-wait",
    "1",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n = args.objects;
    let mut env = Env::start().await?;
    let emu = Emulator::start(&["--no-quota"]).await?;
    emu.executions("soak", n).await?;
    // 30 % errors (500/409/429), 5 % dropped connections, 2 % stalls past the 1 s client
    // timeout, 0–50 ms extra latency: for every action from here on.
    let rule = serde_json::json!({
        "chances": [[0.10, {"status": 500}], [0.10, {"status": 409}], [0.10, {"status": 429}], [0.05, "drop"], [0.02, {"stall": 1500}]],
        "latencyMs": [0, 50]
    });
    let r = reqwest::Client::new()
        .put(format!("{}/faults/*", emu.admin))
        .json(&rule)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "setting faults: {}", r.status());
    let ns = env.namespace("soak").await?;
    let max = args.max_attempts.to_string();
    let mut extra: Vec<&str> = OPERATOR.to_vec();
    extra.extend(["--max-attempts", &max]);
    let mut op = start_operator(&env, &emu, &ns, &extra).await?;
    let watch = Watch::start(&env.client, &ns).await;
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let objs = names
        .iter()
        .enumerate()
        .map(|(i, name)| estop(name, &format!("soak-{i}")))
        .collect();
    let t0 = create_all(&env.client, &ns, objs, 32).await?;

    // Kill the operator at random moments while objects are in flight; restart the
    // apiserver once, halfway.
    let mut kills = 0;
    let mut apiserver_restarts = 0;
    while kills < args.kills {
        let done = watch
            .seen
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.done.is_some())
            .count();
        if done >= n {
            break;
        }
        let pause = Duration::from_millis(rand::rng().random_range(300..1500));
        tokio::time::sleep(pause).await;
        let _ = op.child.start_kill();
        let _ = op.child.wait().await;
        kills += 1;
        if apiserver_restarts == 0 && kills * 2 >= args.kills {
            env.plane.restart_apiserver().await?;
            apiserver_restarts += 1;
        }
        op = start_operator(&env, &emu, &ns, &extra).await?;
        eprintln!("kill {kills} done ({done}/{n} final before it)");
    }
    if apiserver_restarts == 0 {
        env.plane.restart_apiserver().await?;
        apiserver_restarts += 1;
    }
    // The watch restarts itself across the apiserver restart; poll the API for the end.
    let api: kube::Api<flowstop::crd::ExecutionStop> =
        kube::Api::namespaced(env.client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(900);
    let objects = loop {
        let list = api.list(&Default::default()).await?;
        if list
            .items
            .iter()
            .filter(|o| {
                o.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_final())
            })
            .count()
            == n
        {
            break list.items;
        }
        anyhow::ensure!(Instant::now() < deadline, "not all objects finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let wall = t0.elapsed().as_secs_f64();

    // Checks.
    let mut wrong = vec![];
    let mut stale = 0;
    let mut attempts = 0u64;
    for o in &objects {
        let s = o.status.as_ref().expect("final");
        if s.phase != Some(flowstop::crd::Phase::Stopped) {
            wrong.push(format!(
                "{}: {:?} {:?}",
                kube::ResourceExt::name_any(o),
                s.phase,
                s.last_error.as_ref().map(|e| &e.code)
            ));
        }
        if s.next_attempt_time.is_some() || s.pending_request_id.is_some() {
            stale += 1;
        }
        attempts += u64::from(s.attempts);
    }
    let execs: Vec<serde_json::Value> = reqwest::get(format!("{}/executions", emu.admin))
        .await?
        .json()
        .await?;
    let stop_calls: u64 = execs.iter().filter_map(|e| e["stopCalls"].as_u64()).sum();
    let successes: u64 = execs.iter().filter_map(|e| e["stops"].as_u64()).sum();
    let max_calls_one = execs
        .iter()
        .filter_map(|e| e["stopCalls"].as_u64())
        .max()
        .unwrap_or(0);
    let counters = emu.counters().await?;
    let total_stop_requests: f64 = counters["StopExecution"]
        .as_object()
        .map_or(0.0, |m| m.values().filter_map(|v| v.as_f64()).sum());
    // A throttled call (429) is not an attempt: the bound is on the others.
    let throttled_stop_requests = counters["StopExecution"]["ResourceThrottled"]
        .as_f64()
        .unwrap_or(0.0);
    let faults: f64 = counters
        .as_object()
        .map(|m| {
            m.values()
                .flat_map(|v| v.as_object().cloned().unwrap_or_default())
                .filter(|(k, _)| k != "OK" && k != "ExecutionAlreadyCompleted")
                .map(|(_, v)| v.as_f64().unwrap_or(0.0))
                .sum()
        })
        .unwrap_or(0.0);

    // After every object is final: a fresh operator makes no call at all.
    let _ = op.child.start_kill();
    let _ = op.child.wait().await;
    let before = total_stop_requests;
    let fresh = start_operator(&env, &emu, &ns, &extra).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Every object in its ledger: settled ones never reach a controller, so there is no
    // reconcile to wait for.
    while fresh.metric("flowstop_objects").await < n as f64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fresh operator did not see everything"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counters = emu.counters().await?;
    let after: f64 = counters["StopExecution"]
        .as_object()
        .map_or(0.0, |m| m.values().filter_map(|v| v.as_f64()).sum());
    let calls_after_success = after - before;
    let bound = n as u64 * u64::from(args.max_attempts);

    let report = serde_json::json!({
        "objects": n, "kills": kills, "apiserver_restarts": apiserver_restarts, "wall_s": wall,
        "wrong_final_phase": wrong.len(), "lost": n - objects.len(), "stale_next_attempt_or_pending": stale,
        "stop_requests_at_emulator": total_stop_requests, "throttled_stop_requests": throttled_stop_requests, "stop_calls_reaching_executions": stop_calls,
        "successful_stops": successes, "max_stop_calls_one_execution": max_calls_one,
        "attempts_recorded": attempts, "retry_bound": bound, "faults_injected": faults,
        "stop_calls_after_all_final": calls_after_success,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    anyhow::ensure!(
        wrong.is_empty(),
        "objects in the wrong final phase: {wrong:?}"
    );
    anyhow::ensure!(
        stale == 0,
        "{stale} final objects still carry nextAttemptTime or pendingRequestId"
    );
    anyhow::ensure!(
        successes == n as u64,
        "{successes} successful stops for {n} executions"
    );
    let attempted = (total_stop_requests - throttled_stop_requests) as u64;
    anyhow::ensure!(
        attempted <= bound,
        "calls {attempted} (not counting {throttled_stop_requests} throttled) above the retry bound {bound}"
    );
    // Liveness: backoff is capped at 2 s, so only a stop left waiting for the 300 s
    // confirm window (an unconfirmed attempt taken for an accepted one) gets near it.
    anyhow::ensure!(
        wall < 240.0,
        "{wall:.0} s to finish: some object waited out the confirm window instead of retrying"
    );
    anyhow::ensure!(
        calls_after_success == 0.0,
        "{calls_after_success} StopExecution calls after every object was final"
    );
    println!(
        "soak: {n} objects, {kills} kills, {apiserver_restarts} apiserver restart(s), all Stopped in {wall:.1} s"
    );
    Ok(())
}
