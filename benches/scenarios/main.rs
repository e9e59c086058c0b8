//! `scripts/bench`: flowstop against the API quota and against Alibaba's own tools, on a
//! local control plane and the fnf-emulator, release builds, in one run. Writes
//! results.json, results.md and quota.png. See BENCHMARKS.md.

mod env;
mod floors;
mod report;
mod scenarios;
mod set;
mod stats;

use clap::Parser;

/// How much faster than the service's the buckets refill in the scale scenario.
const SCALE_SPEEDUP: f64 = 25.0;
use std::path::PathBuf;

#[derive(Parser, Debug)]
struct Args {
    /// Tiny sizes, one run each: the CI smoke test that keeps this from rotting
    #[arg(long)]
    small: bool,
    /// Repeats of the burst, quota and restart scenarios
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Where to write results.json, results.md and quota.png
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
    /// Run only these scenarios (latency, burst, quota, set, emulator, rest, scale — or one
    /// half of it, scale-rest or scale-sets); all when empty, but scale only with --small (in
    /// full it takes about half an hour)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Accept cargo's own `--bench` flag
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (lat, burst, quota, rest, set_n, repeats) = if args.small {
        (5, 20, 30, 50, 30, 1)
    } else {
        (200, 1000, 200, 10_000, 1000, args.repeats)
    };
    let python = std::env::var("FLOWSTOP_PYTHON")
        .map_err(|_| anyhow::anyhow!("FLOWSTOP_PYTHON is not set: run scripts/bench"))?;
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        env::repo(&args.out.display().to_string())
    };
    std::fs::create_dir_all(&out)?;

    let run = |s: &str| {
        (args.only.is_empty() && (s != "scale" || args.small)) || args.only.iter().any(|o| o == s)
    };
    let env = env::Env::start().await?;
    eprintln!("control plane up");
    let latency = if run("latency") {
        Some(scenarios::latency(&env, lat).await?)
    } else {
        None
    };
    let burst = if run("burst") {
        Some(scenarios::burst(&env, burst, repeats).await?)
    } else {
        None
    };
    let mut quota_runs = vec![];
    if run("quota") {
        quota_runs.push(scenarios::quota_flowstop(&env, quota, repeats).await?);
        for mode in ["legacy", "tea16"] {
            quota_runs.push(scenarios::quota_peer(&python, mode, quota, repeats).await?);
        }
    }
    let set = if run("set") {
        // Too small (30 in the smoke) for a per-child bound: one lost race is 0.03 a child.
        Some(set::set_quota(&env, set_n, repeats, scenarios::SPEEDUP, false).await?)
    } else {
        None
    };
    let emulator = if run("emulator") {
        Some(scenarios::emulator_throughput(if args.small { 500 } else { 20_000 }, repeats).await?)
    } else {
        None
    };
    let at_rest = if run("rest") {
        Some(scenarios::at_rest(&env, rest, repeats, std::time::Duration::ZERO).await?)
    } else {
        None
    };
    // 100,000 finished objects at rest (held 5 minutes), then sets of 10,000 and 1,000 with
    // the quota sped up 25 times (a 10,000-set's floor is then 3.4 minutes); the smoke
    // (--small) runs 2,000 objects and a set of 1,000.
    let scale = if run("scale") || run("scale-rest") || run("scale-sets") {
        let (objects, hold, sizes) = if args.small {
            (2000, 0, vec![1000])
        } else {
            (100_000, 300, vec![1000, 10_000])
        };
        let rest = if run("scale") || run("scale-rest") {
            let hold = std::time::Duration::from_secs(hold);
            Some(scenarios::at_rest(&env, objects, repeats, hold).await?)
        } else {
            None
        };
        // The smoke runs on a debug build beside other checks: at the quota scenario's pace.
        let speedup = if args.small {
            scenarios::SPEEDUP
        } else {
            SCALE_SPEEDUP
        };
        let mut sets = vec![];
        if run("scale") || run("scale-sets") {
            for n in sizes {
                sets.push(set::set_quota(&env, n, repeats, speedup, args.small).await?);
            }
        }
        Some(report::Scale { rest, sets })
    } else {
        None
    };
    env.plane.stop().await;

    let results = report::Results {
        machine: report::machine(),
        command: if args.small { "scripts/bench --small".into() } else { "scripts/bench".into() },
        latency,
        burst,
        quota_objects: quota,
        quota_floor_s: scenarios::floor(quota),
        quota: quota_runs,
        peers_unavailable: vec![
            "aliyun CLI: the Go module proxy refuses github.com/aliyun/aliyun-cli/v3 (403 \"not available\"), so it cannot be built here".into(),
        ],
        at_rest,
        emulator,
        set,
        scale,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let md = report::markdown(&results);
    std::fs::write(out.join("results.md"), &md)?;
    if !results.quota.is_empty() {
        report::chart(&results, &out.join("quota.png"))?;
    }
    println!("{md}");
    println!("wrote {}", out.display());
    Ok(())
}
