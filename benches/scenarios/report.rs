//! results.json, results.md and quota.png.

use crate::scenarios::{Burst, Latency, QuotaRun, Rest, floor};
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let run = |c: &str, a: &[&str]| {
        std::process::Command::new(c)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: run("uname", &["-r"]),
        rustc: run("rustc", &["--version"]),
    }
}

#[derive(Serialize)]
pub struct Results {
    pub machine: Machine,
    pub command: String,
    pub latency: Option<Latency>,
    pub burst: Option<Burst>,
    pub quota_objects: usize,
    pub quota_floor_s: f64,
    pub quota: Vec<QuotaRun>,
    pub peers_unavailable: Vec<String>,
    pub at_rest: Option<Rest>,
    pub emulator: Option<crate::scenarios::EmulatorThroughput>,
    pub set: Option<crate::set::SetRun>,
    pub scale: Option<Scale>,
}

fn mark(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

pub fn markdown(r: &Results) -> String {
    let m = &r.machine;
    let mut s = format!(
        "Machine: {} ({} cores), {} GiB, Linux {}, {}. Command: `{}`.\n\n",
        m.cpu, m.cores, m.memory_gib, m.kernel, m.rustc, r.command
    );
    s += "| scenario | measure | value | target | |\n|---|---|---|---|---|\n";
    if let Some(l) = &r.latency {
        s += &format!(
            "| latency ({} sequential) | create → Ready p50 / p99 as a ratio to the floor | {:.2} × / {:.2} × | p50 ≤ 1.5 ×, p99 ≤ 2 × floor | {} |\n",
            l.n,
            l.p50_to_floor,
            l.p99_to_floor,
            mark(l.p50_to_floor <= 1.5 && l.p99_to_floor <= 2.0)
        );
        s += &format!(
            "| | create → Ready p50 / p95 / p99 / max (ms); floor p50 / p99 (ms) | {:.1} / {:.1} / {:.1} / {:.1}; {:.1} / {:.1} | | |\n",
            l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.floor_p50_ms, l.floor_p99_ms
        );
        s += &format!(
            "| | breakdown p50: create → first status / first status → final (ms); StopExecution mean (ms) | {:.1} / {:.1}; {:.2} | | |\n",
            l.to_stopping_p50_ms, l.to_final_p50_ms, l.fnf_call_mean_ms
        );
    }
    if let Some(b) = &r.burst {
        s += &format!(
            "| burst ({} at once) | objects/s as a share of the floor's (median, min–max) | {} | ≥ 0.80 | {} |\n",
            b.n,
            b.share_of_floor,
            mark(b.share_of_floor.median >= 0.8)
        );
        s += &format!(
            "| | objects/s: flowstop / floor (bare client, same writes, 32 at once) | {} / {} | | |\n",
            b.objects_per_s, b.floor_objects_per_s
        );
        s += &format!("| | wall time (s) | {} | | |\n", b.wall_s);
        s += &format!(
            "| | StopExecution calls per object | {:.3} | exactly 1 | {} |\n",
            b.stop_calls_per_object,
            mark((b.stop_calls_per_object - 1.0).abs() < 1e-9)
        );
        s += &format!(
            "| | status writes per object (apiserver_request_total) | {:.3} | ≤ 2 | {} |\n",
            b.status_writes_per_object,
            mark(b.status_writes_per_object <= 2.0)
        );
        s += &format!(
            "| | Event writes per object | {:.3} | | |\n",
            b.event_writes_per_object
        );
        s += &format!(
            "| | operator CPU (s) / peak RSS (MiB) | {} / {:.1} | | |\n",
            b.operator_cpu_s, b.operator_peak_rss_mib
        );
        s += &format!(
            "| | CPU (s) of kube-apiserver / etcd / fnf-emulator in the same run | {:.2} / {:.2} / {:.2} | | |\n",
            b.apiserver_cpu_s, b.etcd_cpu_s, b.emulator_cpu_s
        );
    }
    for q in &r.quota {
        let best = r
            .quota
            .iter()
            .filter(|o| o.tool != q.tool)
            .all(|o| q.wall_s.median < o.wall_s.median);
        let target = if q.tool == "flowstop" {
            format!(
                "≤ 1.05 × floor, ≤ 2 % throttled, ahead of peers | {}",
                mark(q.ratio_to_floor <= 1.05 && q.throttled_share.median <= 0.02 && best)
            )
        } else {
            " | ".into()
        };
        s += &format!(
            "| quota ({} stops, floor {:.2} s) | {}: wall s / × floor / share 429 / calls | {} / {:.3} / {:.1} % / {:.0} | {} |\n",
            r.quota_objects,
            r.quota_floor_s,
            q.tool,
            q.wall_s,
            q.ratio_to_floor,
            q.throttled_share.median * 100.0,
            q.calls,
            target
        );
    }
    for p in &r.peers_unavailable {
        s += &format!("| quota | {p} | not run | | |\n");
    }
    if let Some(set) = &r.set {
        s += &crate::set::rows(set, mark);
    }
    if let Some(e) = &r.emulator {
        s += &format!(
            "| fnf-emulator ({} signed DescribeExecution, {} in flight, client on the same machine) | requests/s | {:.0} ({:.0}–{:.0}, {} runs) | never the bottleneck | |\n",
            e.requests,
            e.concurrency,
            e.requests_per_s.median,
            e.requests_per_s.min,
            e.requests_per_s.max,
            e.requests_per_s.runs
        );
    }
    if let Some(a) = &r.scale {
        s += &scale_rows(a, mark);
    }
    if let Some(a) = &r.at_rest {
        let what = format!("at rest ({} finished objects, operator restarted)", a.n);
        s += &rest_rows(a, &what, 64.0, None, mark);
    }
    s
}

/// A bar per tool: wall time of the quota scenario, with the floor drawn across.
pub fn chart(r: &Results, path: &Path) -> anyhow::Result<()> {
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").map_err(|e| {
        anyhow::anyhow!("the chart needs DejaVuSans.ttf (Debian fonts-dejavu-core): {e}")
    })?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("font"))?;
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = r
        .quota
        .iter()
        .map(|q| q.wall_s.max)
        .fold(r.quota_floor_s, f64::max)
        * 1.15;
    let n = r.quota.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} StopExecution calls against the documented quota (10 burst, 2/s; refill ×10)",
                r.quota_objects
            ),
            ("sans-serif", 18),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("wall time (s), median; whiskers min–max")
        .label_style(("sans-serif", 14))
        .draw()?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    for (i, q) in r.quota.iter().enumerate() {
        let x = i as f64;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.2, 0.0), (x + 0.8, q.wall_s.median)],
            colors[i % 4].filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x + 0.5, q.wall_s.min), (x + 0.5, q.wall_s.max)],
            BLACK.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!(
                "{}: {:.2} s, {:.0}% 429",
                q.tool,
                q.wall_s.median,
                q.throttled_share.median * 100.0
            ),
            (x + 0.05, q.wall_s.max + top * 0.03),
            ("sans-serif", 13),
        )))?;
    }
    let f = floor(r.quota_objects);
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, f), (n as f64, f)],
        RED.stroke_width(1),
    )))?;
    chart.draw_series(std::iter::once(Text::new(
        format!("floor {f:.2} s"),
        (n as f64 - 0.6, f - top * 0.05),
        ("sans-serif", 13).into_font().color(&RED),
    )))?;
    root.present()?;
    Ok(())
}

/// The scale scenario: many finished objects at rest, and sets at two sizes.
#[derive(serde::Serialize, Debug)]
pub struct Scale {
    pub rest: Option<crate::scenarios::Rest>,
    pub sets: Vec<crate::set::SetRun>,
}

fn scale_rows(sc: &Scale, mark: impl Fn(bool) -> &'static str) -> String {
    let mut s = String::new();
    if let Some(a) = &sc.rest {
        let what = format!(
            "scale: at rest ({} finished objects, {} of them children of {} sets; held {:.0} s after the first start)",
            a.n, a.children, a.sets, a.held_s
        );
        s += &rest_rows(a, &what, 96.0, Some(30.0), &mark);
    }
    for set in &sc.sets {
        s += &crate::set::rows(set, &mark);
    }
    s
}

/// The at-rest rows: `what` names the scenario; the RSS limit, and the restart-time limit
/// where there is one.
fn rest_rows(
    a: &crate::scenarios::Rest,
    what: &str,
    rss_limit: f64,
    ready_limit: Option<f64>,
    mark: impl Fn(bool) -> &'static str,
) -> String {
    let mut s = format!(
        "| {what} | fnf calls / status writes / apiserver writes | {:.0} / {:.0} / {:.0} | 0 / 0 / 0 | {} |\n",
        a.fnf_calls,
        a.status_writes,
        a.apiserver_writes,
        mark(a.fnf_calls == 0.0 && a.status_writes == 0.0 && a.apiserver_writes == 0.0)
    );
    s += &format!(
        "| | RSS with every object seen (MiB) | {} | ≤ {rss_limit:.0} | {} |\n",
        a.rss_mib,
        mark(a.rss_mib.max <= rss_limit)
    );
    let (limit, met) = match ready_limit {
        Some(l) => (format!("≤ {l:.0} s"), mark(a.time_to_all_seen_s.max <= l)),
        None => (String::new(), ""),
    };
    s += &format!(
        "| | start → ready / start → every object seen (s), initial lists streamed (the default on 1.34+) | {} / {} | {limit} | {met} |\n",
        a.time_to_ready_s, a.time_to_all_seen_s,
    );
    s += &format!(
        "| | the same in pages of 500 (`--initial-list pages`, as without WatchList) | {} / {} | | |\n",
        a.paged_time_to_ready_s, a.paged_time_to_all_seen_s,
    );
    s
}
