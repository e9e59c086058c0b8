//! Running the operator as users do: the CRD from crds/, RBAC from deploy/, and the
//! `flowstop run` binary acting as its ServiceAccount (never as admin).

use crate::common;
use crate::support::{Cluster, cluster};
use flowstop::emulator::Running;
use flowstop::fnf::{self, Account, Credentials, Endpoint, Unsigned};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The cluster with the CRD and the operator's RBAC installed (once per run).
pub fn installed() -> &'static Cluster {
    static DONE: OnceLock<()> = OnceLock::new();
    let c = cluster();
    DONE.get_or_init(|| {
        c.must(&["apply", "-f", repo("crds").to_str().unwrap()], None);
        c.must(
            &[
                "wait",
                "--for=condition=Established",
                "crd/executionstops.flowstop.dev",
                "--timeout=60s",
            ],
            None,
        );
        c.must(&["apply", "-k", repo("deploy").to_str().unwrap()], None);
    });
    c
}

pub struct Operator {
    child: tokio::process::Child,
    pub metrics: String,
}

impl Operator {
    /// Starts `flowstop run` for namespace `ns`, with the emulator as default endpoint,
    /// and waits for /readyz.
    pub async fn start(ns: &str, endpoint: &str, extra: &[&str]) -> Operator {
        Self::start_logged(ns, endpoint, extra, None).await
    }

    /// As `start`, with debug logs written to `log`.
    pub async fn start_logged(
        ns: &str,
        endpoint: &str,
        extra: &[&str],
        log: Option<&Path>,
    ) -> Operator {
        Self::start_with(ns, endpoint, extra, &[], log).await
    }

    /// As `start`, with these environment variables (the operator's own credentials, say).
    pub async fn start_with(
        ns: &str,
        endpoint: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Operator {
        let c = installed();
        let kubeconfig = c.service_account_kubeconfig("flowstop-system", "flowstop");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = format!("http://127.0.0.1:{port}");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowstop"))
            .args([
                "run",
                "--namespace",
                ns,
                "--endpoint",
                endpoint,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args([
                "--backoff-base-ms",
                "100",
                "--backoff-max-ms",
                "1000",
                "--describe-wait",
                "5",
            ])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                match log {
                    Some(_) => "debug".to_string(),
                    None => std::env::var("FLOWSTOP_TEST_LOG").unwrap_or_else(|_| "warn".into()),
                },
            )
            .stderr(match log {
                Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
                None => std::process::Stdio::inherit(),
            })
            .kill_on_drop(true)
            .spawn()
            .expect("flowstop run starts");
        let op = Operator { child, metrics };
        op.wait_ready().await;
        op
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.metrics)).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The sum of a counter over all label sets.
    pub async fn counter(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// An emulator plus a fnf client on it with the test key.
pub struct Cloud {
    pub emu: Running,
    pub client: fnf::Client,
    pub account: Account,
}

impl Cloud {
    pub async fn new(adjust: impl FnOnce(&mut flowstop::emulator::Config)) -> Cloud {
        let emu = common::emulator(|c| {
            c.no_quota = true;
            adjust(c)
        })
        .await;
        let account = Account {
            endpoint: Endpoint::url(&emu.url(), false).unwrap(),
            credentials: Credentials::new(common::AK, common::SK, None),
        };
        let client = fnf::Client::new(
            fnf::http_client(Duration::from_secs(2), Duration::from_secs(5)),
            Duration::from_secs(5),
        );
        Cloud {
            emu,
            client,
            account,
        }
    }

    pub async fn flow(&self, name: &str) {
        let u = Unsigned::create_flow(name, "Type: StateMachine\nName: x");
        self.client
            .call::<serde_json::Value>(&self.account, &u, Duration::ZERO)
            .await
            .unwrap();
    }

    pub async fn start(&self, flow: &str, exec: &str, input: Option<&str>) {
        self.client
            .start_execution(&self.account, flow, Some(exec), input)
            .await
            .unwrap();
    }

    pub fn count(&self, action: &str, outcome: &str) -> u64 {
        self.emu.emulator.count(action, outcome)
    }

    /// Every call of `action`, whatever its outcome.
    pub fn calls(&self, action: &str) -> u64 {
        self.emu
            .emulator
            .lock()
            .counters
            .iter()
            .filter(|((a, _), _)| a == action)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The Secret the tests use, with the emulator's key (or another secret).
pub fn secret_yaml(ns: &str, name: &str, secret: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         stringData: {{accessKeyId: {}, accessKeySecret: {:?}}}\n",
        common::AK,
        secret
    )
}

pub fn estop_yaml(ns: &str, name: &str, flow: &str, exec: &str, extra: &str) -> String {
    format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStop\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  flowName: {flow}\n  executionName: {exec}\n  credentialsSecretRef: {{name: creds}}\n{extra}"
    )
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

pub fn status(c: &Cluster, ns: &str, name: &str) -> serde_json::Value {
    let out = c.must(
        &["get", "-n", ns, "executionstop", name, "-o", "json"],
        None,
    );
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["status"].clone()
}
