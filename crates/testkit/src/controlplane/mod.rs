//! A real local Kubernetes control plane: etcd and kube-apiserver built from upstream
//! modules (crates/testkit/control-plane), on free loopback ports, with RBAC and TokenRequest,
//! and kube-controller-manager running only the controller that fills aggregated ClusterRoles
//! (so `edit`, `admin` and `view` gain what the project's roles aggregate into them). No
//! garbage collector runs by default: tests see what an operator must do without one (and
//! some assert what is left behind). A plane started with `FLOWSTOP_GARBAGE_COLLECTOR=1`
//! in its environment also runs kube-controller-manager's garbage collector (the GitOps
//! tests' plane: Argo CD prunes with foreground deletion, a set's children go with it).
//! Used by the integration tests, the demo and the benchmarks.

mod pki;
mod serve;

pub use serve::{ServeArgs, serve};

use anyhow::{Context, bail};
use base64::Engine;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// `1` in the environment of the process that starts a plane: its kube-controller-manager
/// also runs the garbage collector.
pub const GARBAGE_COLLECTOR_ENV: &str = "FLOWSTOP_GARBAGE_COLLECTOR";

pub struct ControlPlane {
    dir: PathBuf,
    bin_dir: PathBuf,
    etcd: Child,
    apiserver: Child,
    controller_manager: Option<Child>,
    /// kube-apiserver's `--feature-gates`, if any.
    feature_gates: Option<String>,
    pub etcd_port: u16,
    pub api_port: u16,
    pub kubeconfig: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Polls `url` until it answers 200, the process exits, or `limit` passes.
async fn wait_ready(
    http: &reqwest::Client,
    url: &str,
    child: &mut Child,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut delay = Duration::from_millis(50);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{url}: the process exited ({status}) before it was ready; log:\n{}",
                log_tail(log)
            );
        }
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{url} not ready after {limit:?}; log:\n{}", log_tail(log));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Asks a process to stop, and kills it if it has not within 10 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from `bin_dir` with their state in `dir`.
    pub async fn start(bin_dir: &Path, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(bin_dir, dir, None).await
    }

    /// As `start`, with kube-apiserver's `--feature-gates` (e.g. `WatchList=false`, to
    /// serve as a Kubernetes release with that default would).
    pub async fn start_with(
        bin_dir: &Path,
        dir: &Path,
        feature_gates: Option<&str>,
    ) -> anyhow::Result<Self> {
        let pki_dir = dir.join("pki");
        pki::generate(&pki_dir).context("generating certificates")?;
        let (etcd_port, peer_port) = (free_port()?, free_port()?);
        let etcd_log = dir.join("etcd.log");
        let mut etcd = Command::new(bin_dir.join("etcd"))
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .args(["--unsafe-no-fsync", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&etcd_log)?)
            .stderr(std::fs::File::create(dir.join("etcd.err.log"))?)
            .kill_on_drop(true)
            .spawn()
            .context("starting etcd")?;
        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let health = format!("http://127.0.0.1:{etcd_port}/health");
        wait_ready(
            &plain,
            &health,
            &mut etcd,
            &dir.join("etcd.err.log"),
            Duration::from_secs(30),
        )
        .await?;

        let api_port = free_port()?;
        let apiserver = Self::spawn_apiserver(bin_dir, dir, etcd_port, api_port, feature_gates)?;
        let mut plane = Self {
            dir: dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            etcd,
            apiserver,
            controller_manager: None,
            feature_gates: feature_gates.map(str::to_string),
            etcd_port,
            api_port,
            kubeconfig: dir.join("kubeconfig"),
        };
        plane.wait_apiserver().await?;
        plane.write_kubeconfig()?;
        plane.controller_manager = Some(plane.spawn_controller_manager()?);
        Ok(plane)
    }

    fn spawn_controller_manager(&self) -> anyhow::Result<Child> {
        let kubeconfig = self.kubeconfig.display().to_string();
        // The garbage collector needs nothing more: it discovers every resource and
        // watches their metadata with the admin kubeconfig.
        let controllers = if std::env::var_os(GARBAGE_COLLECTOR_ENV).is_some_and(|v| v == "1") {
            "--controllers=clusterrole-aggregation,garbagecollector"
        } else {
            "--controllers=clusterrole-aggregation"
        };
        Command::new(self.bin_dir.join("kube-controller-manager"))
            .arg(format!("--kubeconfig={kubeconfig}"))
            .args([
                controllers,
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(
                self.dir.join("controller-manager.log"),
            )?)
            .kill_on_drop(true)
            .spawn()
            .context("starting kube-controller-manager")
    }

    fn spawn_apiserver(
        bin_dir: &Path,
        dir: &Path,
        etcd_port: u16,
        api_port: u16,
        feature_gates: Option<&str>,
    ) -> anyhow::Result<Child> {
        let p = |f: &str| dir.join("pki").join(f).display().to_string();
        Command::new(bin_dir.join("kube-apiserver"))
            .args(feature_gates.map(|g| format!("--feature-gates={g}")))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!("--client-ca-file={}", p("ca.crt")))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", p("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                p("sa.key")
            ))
            .args([
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
            ])
            .args([
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
            ])
            .args(["--profiling=false", "--v=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("apiserver.log"))?,
            )
            .kill_on_drop(true)
            .spawn()
            .context("starting kube-apiserver")
    }

    /// An HTTP client that authenticates as the admin client certificate.
    pub fn admin_http(&self) -> anyhow::Result<reqwest::Client> {
        let pki = self.dir.join("pki");
        let mut pem = std::fs::read(pki.join("admin.crt"))?;
        pem.extend(std::fs::read(pki.join("admin.key"))?);
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
                pki.join("ca.crt"),
            )?)?)
            .identity(reqwest::Identity::from_pem(&pem)?)
            .timeout(Duration::from_secs(5))
            .build()?)
    }

    async fn wait_apiserver(&mut self) -> anyhow::Result<()> {
        // Anonymous /readyz can be 403 until RBAC is bootstrapped: ask as admin.
        let http = self.admin_http()?;
        let url = format!("https://127.0.0.1:{}/readyz", self.api_port);
        wait_ready(
            &http,
            &url,
            &mut self.apiserver,
            &self.dir.join("apiserver.log"),
            Duration::from_secs(90),
        )
        .await
    }

    fn write_kubeconfig(&self) -> anyhow::Result<()> {
        let b64 = |f: &str| -> anyhow::Result<String> {
            Ok(base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(self.dir.join("pki").join(f))?))
        };
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             users:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
             contexts:\n- name: local\n  context: {{cluster: local, user: admin}}\ncurrent-context: local\n",
            self.server(),
            b64("ca.crt")?,
            b64("admin.crt")?,
            b64("admin.key")?
        );
        std::fs::write(&self.kubeconfig, config)?;
        Ok(())
    }

    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// etcd, kube-apiserver, kube-controller-manager (0 for one not running).
    pub fn pids(&self) -> [u32; 3] {
        [
            self.etcd.id().unwrap_or(0),
            self.apiserver.id().unwrap_or(0),
            self.controller_manager
                .as_ref()
                .and_then(Child::id)
                .unwrap_or(0),
        ]
    }

    /// Stops kube-apiserver and starts it again on the same port, keeping etcd.
    pub async fn restart_apiserver(&mut self) -> anyhow::Result<()> {
        terminate(&mut self.apiserver).await;
        self.apiserver = Self::spawn_apiserver(
            &self.bin_dir,
            &self.dir,
            self.etcd_port,
            self.api_port,
            self.feature_gates.as_deref(),
        )?;
        self.wait_apiserver().await
    }

    /// Stops every process (etcd last).
    pub async fn stop(mut self) {
        if let Some(cm) = self.controller_manager.as_mut() {
            terminate(cm).await;
        }
        terminate(&mut self.apiserver).await;
        terminate(&mut self.etcd).await;
    }
}
