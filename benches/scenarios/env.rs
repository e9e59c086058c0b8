//! The benchmark's world: a local control plane with the CRD and RBAC installed, the
//! fnf-emulator and the operator as separate release processes, and a watch that
//! timestamps every ExecutionStop's progress.
//!
//! Shared by the `scenarios` and `soak` benchmarks; each uses part of it.
#![allow(dead_code)]

use flowstop::crd::ExecutionStop;
use futures::StreamExt;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::controlplane::ControlPlane;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const AK: &str = "benchAccessKeyId";
pub const SK: &str = "benchAccessKeySecret";

pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

pub struct Env {
    pub plane: ControlPlane,
    pub client: kube::Client,
    pub operator_kubeconfig: PathBuf,
    pub admin_http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn start() -> anyhow::Result<Env> {
        let out = std::process::Command::new(repo("crates/testkit/control-plane/build.sh"))
            .stderr(Stdio::inherit())
            .output()?;
        anyhow::ensure!(out.status.success(), "building the control plane failed");
        let bin_dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
        let dir = tempfile::tempdir()?;
        let plane = ControlPlane::start(&bin_dir, dir.path()).await?;
        let kube = testkit::cluster::Cluster::attach(
            plane.kubeconfig.clone(),
            plane.server(),
            bin_dir.clone(),
        );
        testkit::operator::install(&kube);
        let operator_kubeconfig = kube.service_account_kubeconfig("flowstop-system", "flowstop");
        let kc = kube::config::Kubeconfig::read_from(&plane.kubeconfig)?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        // The benchmark creates objects in bulk; do not let client-side limits shape it.
        config.read_timeout = Some(Duration::from_secs(60));
        let client = kube::Client::try_from(config)?;
        let admin_http = plane.admin_http()?;
        let env = Env {
            plane,
            client,
            operator_kubeconfig,
            admin_http,
            _dir: dir,
        };
        // kube-apiserver builds a CRD's handler (schemas, CEL programs) on its first request,
        // which took ~2 s here: warm it up so it is not charged to the first measurement.
        let ns = env.namespace("warmup").await?;
        let api: Api<ExecutionStop> = Api::namespaced(env.client.clone(), &ns);
        api.create(&PostParams::default(), &estop("warmup", "warmup"))
            .await?;
        api.delete("warmup", &Default::default()).await?;
        Ok(env)
    }

    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xffffff);
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
            serde_json::json!({
                "metadata": {"name": "creds"}, "stringData": {"accessKeyId": AK, "accessKeySecret": SK}
            }),
        )?;
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), &name)
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(name)
    }

    /// kube-apiserver's own request counters: (resource, subresource, verb) → count.
    pub async fn apiserver_requests(
        &self,
    ) -> anyhow::Result<HashMap<(String, String, String), f64>> {
        let text = self
            .admin_http
            .get(format!("{}/metrics", self.plane.server()))
            .send()
            .await?
            .text()
            .await?;
        let mut out = HashMap::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
        {
            let (labels, value) = line.rsplit_once(' ').unwrap_or((line, "0"));
            let get = |k: &str| {
                labels
                    .split(&format!("{k}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            *out.entry((get("resource"), get("subresource"), get("verb")))
                .or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
        Ok(out)
    }
}

/// Writes to executionstops (by subresource) and events between two snapshots.
pub fn writes(
    before: &HashMap<(String, String, String), f64>,
    after: &HashMap<(String, String, String), f64>,
    resource: &str,
    subresource: &str,
) -> f64 {
    after
        .iter()
        .filter(|((r, s, v), _)| {
            r == resource
                && s == subresource
                && matches!(v.as_str(), "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE")
        })
        .map(|(k, n)| n - before.get(k).copied().unwrap_or(0.0))
        .sum()
}

/// A child process that announces itself on stdout.
pub async fn spawn(
    program: &str,
    args: &[String],
    env: &[(&str, &Path)],
    announce_lines: usize,
) -> anyhow::Result<(Child, Vec<String>)> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut got = vec![];
    while got.len() < announce_lines {
        got.push(
            lines
                .next_line()
                .await?
                .ok_or_else(|| anyhow::anyhow!("{program} exited early"))?,
        );
    }
    Ok((child, got))
}

pub struct Emulator {
    pub _child: Child,
    pub url: String,
    pub admin: String,
}

impl Emulator {
    pub async fn start(extra: &[&str]) -> anyhow::Result<Emulator> {
        let mut args = vec!["--access-key".to_string(), format!("{AK}:{SK}")];
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, lines) = spawn(
            testkit::cluster::workspace_bin(repo("crates/fnf-emulator"), "fnf-emulator")
                .to_str()
                .unwrap(),
            &args,
            &[],
            2,
        )
        .await?;
        let admin = lines[1].trim_start_matches("admin ").to_string();
        Ok(Emulator {
            _child: child,
            url: lines[0].clone(),
            admin,
        })
    }

    pub async fn counters(&self) -> anyhow::Result<serde_json::Value> {
        Ok(reqwest::get(format!("{}/counters", self.admin))
            .await?
            .json()
            .await?)
    }

    /// Starts `n` running executions `prefix-i` of flow `f` (creating the flow).
    pub async fn executions(&self, prefix: &str, n: usize) -> anyhow::Result<()> {
        start_executions(&self.url, (AK, SK), prefix, n).await
    }
}

/// Creates flow `f` and starts `n` running executions `prefix-i`, with the given key
/// (retrying what the service says may pass, e.g. a quota that is already in use).
pub async fn start_executions(
    url: &str,
    key: (&str, &str),
    prefix: &str,
    n: usize,
) -> anyhow::Result<()> {
    let account = fnf::Account {
        endpoint: fnf::Endpoint::url(url, false)?,
        credentials: fnf::Credentials::new(key.0, key.1, None),
    };
    let client = fnf::Client::new(
        fnf::http_client(Duration::from_secs(2), Duration::from_secs(10)),
        Duration::from_secs(10),
    );
    let create = fnf::Unsigned::create_flow("f", "Type: StateMachine");
    // An existing flow (FlowAlreadyExists) is fine.
    let _ = client
        .call::<serde_json::Value>(&account, &create, Duration::ZERO)
        .await;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let (client, account) = (client.clone(), account.clone());
            async move {
                let name = format!("{prefix}-{i}");
                let mut tries = 0;
                while let Err(e) = client
                    .start_execution(&account, "f", Some(&name), None)
                    .await
                {
                    tries += 1;
                    anyhow::ensure!(e.retryable() && tries < 50, "starting {name}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

pub use testkit::operator::Operator;

/// The release operator for namespace `ns`, as its ServiceAccount, on the emulator.
pub async fn start_operator(
    env: &Env,
    emulator: &Emulator,
    ns: &str,
    extra: &[&str],
) -> anyhow::Result<Operator> {
    let log = std::env::var_os("FLOWSTOP_BENCH_OPERATOR_LOG").map(PathBuf::from);
    Operator::launch(testkit::operator::Launch {
        binary: env!("CARGO_BIN_EXE_flowstop").into(),
        kubeconfig: env.operator_kubeconfig.clone(),
        namespace: ns,
        endpoint: &emulator.url,
        args: extra,
        env: &[],
        log: log.as_deref(),
        ready_within: Duration::from_secs(120),
    })
    .await
}

/// When each object was first seen Stopping and first seen Ready (or final).
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub stopping: Option<Instant>,
    pub done: Option<Instant>,
}

pub struct Watch {
    pub seen: Arc<Mutex<HashMap<String, Seen>>>,
    pub changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    pub async fn start(client: &kube::Client, ns: &str) -> Watch {
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let changed = Arc::new(tokio::sync::Notify::new());
        let api: Api<ExecutionStop> = Api::namespaced(client.clone(), ns);
        let (s, c) = (seen.clone(), changed.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                match ev {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        let name = kube::ResourceExt::name_any(&o);
                        let phase = o.status.as_ref().and_then(|s| s.phase);
                        let mut m = s.lock().unwrap();
                        let e = m.entry(name).or_default();
                        if phase.is_some() && e.stopping.is_none() {
                            e.stopping = Some(now);
                        }
                        if phase.is_some_and(|p| p.is_final()) && e.done.is_none() {
                            e.done = Some(now);
                            c.notify_waiters();
                        }
                    }
                    _ => {}
                }
            }
        });
        let _ = ready_rx.await;
        Watch {
            seen,
            changed,
            task,
        }
    }

    /// Waits until `names` are all final; returns when that was seen.
    pub async fn all_done(&self, names: &[String], limit: Duration) -> anyhow::Result<Instant> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            {
                let m = self.seen.lock().unwrap();
                let done: Vec<Instant> = names
                    .iter()
                    .filter_map(|n| m.get(n).and_then(|s| s.done))
                    .collect();
                if done.len() == names.len() {
                    return Ok(done.into_iter().max().unwrap_or_else(Instant::now));
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => anyhow::bail!("not all {} objects finished in {limit:?}", names.len()),
            }
        }
    }
}

/// An ExecutionStop object for `exec` of flow f.
pub fn estop(name: &str, exec: &str) -> ExecutionStop {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "flowstop.dev/v1alpha1", "kind": "ExecutionStop",
        "metadata": {"name": name},
        "spec": {"flowName": "f", "executionName": exec, "credentialsSecretRef": {"name": "creds"}}
    }))
    .expect("static object")
}

/// Creates the objects with `parallel` requests in flight; returns when the first was sent.
pub async fn create_all(
    client: &kube::Client,
    ns: &str,
    objs: Vec<ExecutionStop>,
    parallel: usize,
) -> anyhow::Result<Instant> {
    let api: Api<ExecutionStop> = Api::namespaced(client.clone(), ns);
    let t0 = Instant::now();
    use futures::TryStreamExt;
    // Answers are dropped as they come: 100,000 of them would be a few hundred MiB here.
    futures::stream::iter(objs)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await.map(|_| ()) }
        })
        .buffer_unordered(parallel)
        .try_for_each(|()| futures::future::ready(Ok(())))
        .await?;
    Ok(t0)
}
