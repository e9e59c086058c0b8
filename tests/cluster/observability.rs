//! The chart's observability pack, judged by Prometheus's own tools (promtool and its PromQL
//! parser, built from github.com/prometheus/prometheus): the PrometheusRule as the chart
//! renders it passes `promtool check rules` and the unit tests of
//! tests/prometheus/alerts_test.yaml; every query of the dashboard and the alerts parses and
//! reads only metrics that a live operator's /metrics exports.

use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use testkit::fixtures::ExecutionStop;
use testkit::operator::{installed, repo, setup, wait_for};

fn promtool() -> PathBuf {
    testkit::tools::tool("promtool")
}

/// `helm template` of the chart with the PrometheusRule (`extra`: more `--set-json`) (release flowstop in
/// flowstop-system, as the unit tests' series are labelled), as a Prometheus rules file.
fn rendered_rules(extra: &[&str]) -> String {
    let chart = repo("charts/flowstop");
    let mut args = vec![
        "template",
        "flowstop",
        chart.to_str().unwrap(),
        "--namespace",
        "flowstop-system",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ];
    for e in extra {
        args.extend(["--set-json", e]);
    }
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(testkit::tools::tool("helm"))
        .args(&args)
        .env("HELM_CONFIG_HOME", home.path())
        .env("HELM_CACHE_HOME", home.path())
        .env("HELM_DATA_HOME", home.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rule: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    assert_eq!(rule["kind"], "PrometheusRule");
    let mut file = serde_yaml_ng::Mapping::new();
    file.insert("groups".into(), rule["spec"]["groups"].clone());
    serde_yaml_ng::to_string(&file).unwrap()
}

/// Runs `promtool test rules` on the checked-in tests with `rules` as rules.yaml.
fn promtool_test(rules: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    std::fs::copy(
        repo("tests/prometheus/alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .unwrap();
    let check = Command::new(promtool())
        .args(["check", "rules", "rules.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new(promtool())
        .args(["test", "rules", "alerts_test.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        test.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&test.stdout),
            String::from_utf8_lossy(&test.stderr)
        ),
    )
}

#[test]
fn each_alert_fires_on_its_symptom_and_stays_quiet_when_healthy() {
    let (ok, out) = promtool_test(&rendered_rules(&[]));
    assert!(ok, "promtool test rules: {out}");
    assert!(out.contains("SUCCESS"), "{out}");
    // The tests can fail, and the chart's values reach the rules: with a throttling
    // threshold of one half, a third throttled no longer fires.
    let (ok, out) = promtool_test(&rendered_rules(&[
        "metrics.prometheusRule.throttledRatio=0.5",
    ]));
    assert!(!ok, "the tests passed with throttledRatio=0.5: {out}");
    assert!(out.contains("FlowstopThrottled"), "{out}");
    assert!(
        !out.contains("FlowstopObjectsStuck"),
        "only the throttling test fails: {out}"
    );
}

/// The metric names a Prometheus scrape of this /metrics text yields.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// (expression, metric names it reads) for each, from the PromQL lister beside promtool;
/// panics naming any expression that does not parse.
fn parse(exprs: &[String]) -> Vec<(String, Vec<String>)> {
    let lister = promtool().with_file_name("promql");
    let mut child = Command::new(lister)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    for e in exprs {
        // One line each: the lister reads lines.
        writeln!(input, "{}", e.replace('\n', " ")).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), exprs.len(), "{lines:?}");
    exprs
        .iter()
        .zip(lines)
        .map(|(e, names)| {
            assert!(!names.starts_with("error:"), "{e}\n{names}");
            let names: Vec<String> = names.split_whitespace().map(String::from).collect();
            assert!(!names.is_empty(), "{e} reads no metric");
            (e.clone(), names)
        })
        .collect()
}

fn dashboard_queries(path: &Path) -> (Vec<String>, Vec<String>) {
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    // Template variables: label_values(METRIC, label).
    let variables = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["query"].as_str()?.strip_prefix("label_values("))
        .map(|q| q.split([',', ')']).next().unwrap().trim().to_string())
        .collect();
    (exprs, variables)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_read_only_metrics_the_operator_exports() {
    let c = installed();
    let (ns, cloud, op) = setup("observe", |_| {}, &[]).await;
    cloud.start("f", "e1", None).await;
    c.apply(
        &ExecutionStop::new(&ns, "s", "f", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "s", "jsonpath={.status.phase}=Stopped");
    let names = exported(&op.metrics_text().await);
    op.stop().await;
    assert!(
        names.contains("flowstop_oldest_unfinished_seconds"),
        "{names:?}"
    );

    let (mut exprs, variables) =
        dashboard_queries(&repo("charts/flowstop/files/dashboards/flowstop.json"));
    assert!(exprs.len() >= 9, "{exprs:?}");
    let rules: Value = serde_yaml_ng::from_str(&rendered_rules(&[])).unwrap();
    let alerts: Vec<String> = rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(alerts.len(), 5);
    exprs.extend(alerts);
    let mut read: BTreeSet<String> = variables.into_iter().collect();
    for (expr, used) in parse(&exprs) {
        for name in used {
            assert!(
                names.contains(&name),
                "{expr} reads {name}, not exported: {names:?}"
            );
            read.insert(name);
        }
    }
    // Every metric the operator exports is on the dashboard or in an alert (a histogram
    // through its buckets).
    for name in &names {
        if name.ends_with("_sum") || name.ends_with("_count") {
            continue;
        }
        assert!(read.contains(name), "nothing reads {name}");
    }
}
