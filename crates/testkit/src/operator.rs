//! Running the operator as users do: the CRD from crds/, RBAC from deploy/, and the
//! `flowstop run` binary acting as its ServiceAccount (never as admin).

use crate::cluster::{Cluster, cluster, workspace_bin};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// A path in the repository (the operator's package).
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Installs the CRDs of crds/ and waits until they are served, then applies deploy/ as a
/// user would. Any kubectl failure panics with kubectl's message.
pub fn install(c: &Cluster) {
    c.must(&["apply", "-f", repo("crds").to_str().unwrap()], None);
    c.must(
        &[
            "wait",
            "--for=condition=Established",
            "crd/executionstops.flowstop.dev",
            "crd/executionstopsets.flowstop.dev",
            "crd/executionstoppolicies.flowstop.dev",
            "--timeout=60s",
        ],
        None,
    );
    c.must(&["apply", "-k", repo("deploy").to_str().unwrap()], None);
}

/// The cluster with the CRD and the operator's RBAC installed (once per process).
pub fn installed() -> &'static Cluster {
    static DONE: OnceLock<()> = OnceLock::new();
    let c = cluster();
    DONE.get_or_init(|| install(c));
    c
}

/// A running `flowstop run`.
pub struct Operator {
    pub child: tokio::process::Child,
    /// Base URL of its /metrics, /healthz and /readyz.
    pub metrics: String,
}

/// How to run `flowstop run`: against which cluster, for which namespace, with which
/// default endpoint, extra flags and environment (nothing else of ours is inherited).
pub struct Launch<'a> {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub namespace: &'a str,
    pub endpoint: &'a str,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// Debug logs appended to this file; otherwise warnings (or $FLOWSTOP_TEST_LOG) on
    /// our stderr.
    pub log: Option<&'a Path>,
    pub ready_within: Duration,
}

impl Operator {
    /// Starts the operator and waits for /readyz.
    pub async fn launch(l: Launch<'_>) -> anyhow::Result<Operator> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let stderr = match l.log {
            Some(path) => std::process::Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => std::process::Stdio::inherit(),
        };
        let level = match l.log {
            Some(_) => "debug".to_string(),
            None => std::env::var("FLOWSTOP_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        };
        let child = tokio::process::Command::new(&l.binary)
            .args(["run", "--namespace", l.namespace, "--endpoint", l.endpoint])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(l.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &l.kubeconfig)
            .envs(l.env.iter().copied())
            .env("RUST_LOG", level)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()?;
        let op = Operator {
            child,
            metrics: format!("http://127.0.0.1:{port}"),
        };
        op.wait_ready(l.ready_within).await?;
        Ok(op)
    }

    /// Starts the operator of this workspace on the shared cluster, as its ServiceAccount,
    /// for namespace `ns` (comma-separate several), with short test backoffs.
    pub async fn start(ns: &str, endpoint: &str, extra: &[&str]) -> Operator {
        Self::start_with(ns, endpoint, extra, &[], None).await
    }

    /// As `start`, with debug logs written to `log`.
    pub async fn start_logged(ns: &str, endpoint: &str, extra: &[&str], log: &Path) -> Operator {
        Self::start_with(ns, endpoint, extra, &[], Some(log)).await
    }

    /// As `start`, with these environment variables (the operator's own credentials, say).
    pub async fn start_with(
        ns: &str,
        endpoint: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Operator {
        let args: Vec<&str> = TEST_ARGS
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect();
        Self::launch(Launch {
            binary: workspace_bin(repo(""), "flowstop"),
            kubeconfig: installed().service_account_kubeconfig("flowstop-system", "flowstop"),
            namespace: ns,
            endpoint,
            args: &args,
            env,
            log,
            ready_within: Duration::from_secs(30),
        })
        .await
        .expect("the operator starts and becomes ready")
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.metrics)).await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the operator did not become ready within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics has a body")
    }

    /// The sum of a metric over its label sets.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// CPU seconds used so far, peak and current RSS in MiB, from /proc.
    pub fn usage(&self) -> (f64, f64, f64) {
        let pid = self.child.id().unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            cpu_seconds(pid),
            kib("VmHWM:") / 1024.0,
            kib("VmRSS:") / 1024.0,
        )
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, as Kubernetes stops a Pod (the exit is the caller's to wait for).
    pub fn sigterm(&self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// SIGTERM, and wait (bounded) for the exit.
    pub async fn stop(mut self) {
        self.sigterm();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// CPU seconds a process has used so far (user + system), from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (field(11) + field(12)) / 100.0
}

/// `kubectl wait` as a user would, for a condition or a jsonpath value.
pub fn wait_for(c: &Cluster, ns: &str, name: &str, what: &str) {
    let out = c.kubectl(
        &[
            "wait",
            "-n",
            ns,
            &format!("executionstop/{name}"),
            &format!("--for={what}"),
            "--timeout=60s",
        ],
        None,
    );
    if !out.status.success() {
        let status = c.kubectl(
            &["get", "-n", ns, "executionstop", name, "-o", "yaml"],
            None,
        );
        panic!(
            "waiting for {what}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&status.stdout)
        );
    }
}

/// An ExecutionStop's uid (its requests' RequestId starts with it).
pub fn uid(ns: &str, name: &str) -> String {
    installed().must(
        &[
            "get",
            "estop",
            "-n",
            ns,
            name,
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    )
}

pub fn status(c: &Cluster, ns: &str, name: &str) -> serde_json::Value {
    let out = c.must(
        &["get", "-n", ns, "executionstop", name, "-o", "json"],
        None,
    );
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["status"].clone()
}

/// The Ready condition of a status, as `kubectl get -o json` shows it.
pub fn ready_condition(status: &serde_json::Value) -> serde_json::Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_else(|| panic!("no Ready condition in {status:#}"))
}

/// Waits (bounded: 60 s) until `probe` holds, polling an observable state.
pub async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !probe().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Events are published off the critical path: wait (bounded) for one to appear.
pub async fn wait_event(c: &Cluster, ns: &str, type_: &str, reason: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events = c.must(
            &[
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                &format!("type={type_}"),
                "-o",
                "json",
            ],
            None,
        );
        if events.contains(&format!("\"reason\": \"{reason}\"")) {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {type_} event {reason}: {events}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Namespace, Secret, emulator with flow "f", operator.
pub async fn setup(
    prefix: &str,
    adjust: impl FnOnce(&mut fnf_emulator::Config),
    extra: &[&str],
) -> (String, crate::cloud::Cloud, Operator) {
    let c = installed();
    let ns = c.namespace(prefix);
    let cloud = crate::cloud::Cloud::new(adjust).await;
    cloud.flow("f").await;
    c.apply(&crate::fixtures::secret(
        &ns,
        "creds",
        crate::cloud::AK,
        crate::cloud::SK,
    ));
    let op = Operator::start(&ns, &cloud.emu.url(), extra).await;
    (ns, cloud, op)
}

/// The operator's flags in tests: short retries and confirmations, so a test waits seconds.
pub const TEST_ARGS: &[&str] = &[
    "--backoff-base-ms",
    "100",
    "--backoff-max-ms",
    "1000",
    "--describe-wait",
    "5",
];
