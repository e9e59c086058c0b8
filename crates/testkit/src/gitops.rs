//! The real GitOps controllers, built from their upstream modules by `gitops/build.sh`
//! (Argo CD v3.6.2's application-controller and repo-server, Flux v1.9.6's
//! source-controller and kustomize-controller), run as local processes against a control
//! plane of their own, with a smart-HTTP git server that tests push to as users do.
//!
//! That plane runs kube-controller-manager's garbage collector (Argo CD prunes with
//! foreground deletion; a set's ExecutionStops go with it), which the shared plane of
//! `cluster` must not: some of its tests assert what is left without one. Each piece is
//! started once per test process, on first use, and shared: tests scope themselves to a
//! namespace, an Application and Kustomizations of their own. Every process here follows
//! a pipe from this process and stops when it closes, so nothing outlives the tests; their
//! logs are in the plane's directory (`log_tail` shows the end of one).

use crate::cloud::Cloud;
use crate::cluster::{
    Cluster, bin_dir as control_plane_bin, get, read_announcement, workspace_bin,
};
use crate::operator::{Launch, Operator, repo};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where the GitOps binaries and CRDs are: FLOWSTOP_GITOPS_BIN, or build them (cached)
/// with crates/testkit/gitops/build.sh.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| crate::cluster::built("FLOWSTOP_GITOPS_BIN", "gitops/build.sh", &[]))
        .clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A process that lives while its owner does, and at most as long as this test process:
/// a shell runs it, reads our pipe until it closes (we dropped it, or we exited in any
/// way), then stops it with SIGTERM.
pub struct Supervised {
    shell: Child,
    stdin: Option<ChildStdin>,
    pub log: PathBuf,
}

impl Supervised {
    /// Starts `program args` with `env` added, in `dir`, its output appended to `log`.
    pub fn spawn(
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        dir: &Path,
        log: PathBuf,
    ) -> Supervised {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("a log file");
        let mut shell = Command::new("sh")
            .args([
                "-c",
                r#""$@" < /dev/null & pid=$!; cat > /dev/null; kill "$pid" 2> /dev/null; wait "$pid""#,
                "sh",
            ])
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let stdin = shell.stdin.take();
        Supervised { shell, stdin, log }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.shell.wait();
    }
}

/// The last lines of a log, for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    format!(
        "--- {} (last {lines} lines)\n{}",
        path.display(),
        all[all.len().saturating_sub(lines)..].join("\n")
    )
}

/// Polls `probe` until it holds or `limit` passes; `what` and `context()` explain a timeout.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !probe() {
        assert!(
            Instant::now() < deadline,
            "never, within {limit:?}: {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_ok(url: &str) -> bool {
    // A blocking probe without a client library: HTTP/1.0 over a socket.
    use std::io::Read;
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The GitOps tests' control plane: the shared plane's binaries, plus the garbage
/// collector, with the operator's CRDs and RBAC installed.
pub struct Plane {
    pub cluster: Cluster,
    /// Where this plane and everything started here keep state and logs (removed when
    /// the plane's launcher exits).
    pub dir: PathBuf,
    _launcher: Mutex<(Child, ChildStdin)>,
}

/// The GitOps plane of this test process, started on first use.
pub fn plane() -> &'static Plane {
    static PLANE: OnceLock<Plane> = OnceLock::new();
    PLANE.get_or_init(|| {
        let mut child = Command::new(workspace_bin(env!("CARGO_MANIFEST_DIR"), "testkit"))
            .arg("control-plane")
            .arg("--bin-dir")
            .arg(control_plane_bin())
            .arg("--follow-stdin")
            .env(crate::controlplane::GARBAGE_COLLECTOR_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("testkit control-plane starts");
        let stdin = child.stdin.take().unwrap();
        let info = read_announcement(child.stdout.take().unwrap());
        let kubeconfig = PathBuf::from(get(&info, "kubeconfig"));
        let dir = kubeconfig.parent().unwrap().to_path_buf();
        // A testkit binary built before the garbage-collector switch would start a plane
        // without it, and pruning tests would fail obscurely: say so now.
        let cm_pid = get(&info, "pids").split(' ').nth(2).unwrap_or("0").to_string();
        // Announced as soon as it is spawned: its command line reads empty until its exec.
        let read = || {
            let raw = std::fs::read(format!("/proc/{cm_pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&raw).replace('\0', " ")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut cmdline = read();
        while !cmdline.contains("kube-controller-manager") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            cmdline = read();
        }
        assert!(
            cmdline.contains("garbagecollector"),
            "the GitOps plane's kube-controller-manager (pid {cm_pid}) does not run the garbage collector \
             (command line {cmdline:?}; a testkit binary older than the switch? cargo build -p testkit)\n{}",
            log_tail(&dir.join("controller-manager.log"), 30)
        );
        let cluster = Cluster::attach(kubeconfig, get(&info, "server").into(), control_plane_bin());
        crate::operator::install(&cluster);
        Plane {
            cluster,
            dir,
            _launcher: Mutex::new((child, stdin)),
        }
    })
}

impl Plane {
    fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Supervised {
        let mut env = env.to_vec();
        env.push(("KUBECONFIG", self.cluster.kubeconfig.display().to_string()));
        Supervised::spawn(
            program,
            args,
            &env,
            &self.dir,
            self.dir.join(format!("{name}.log")),
        )
    }

    /// Applies CRD manifests server-side (Argo CD's Application CRD is too large for a
    /// client-side apply's annotation) and waits until each is served.
    fn install_crds(&self, files: &[PathBuf]) {
        let mut args = vec!["apply".to_string(), "--server-side".into()];
        for f in files {
            args.push("-f".into());
            args.push(f.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.cluster.must(&args, None);
        let names: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(String::from)
            .collect();
        // Polled rather than `kubectl wait`, which fails on a CRD whose status has no
        // conditions yet.
        for name in &names {
            wait_until(
                &format!("{name} is established"),
                Duration::from_secs(60),
                || {
                    let out = self.cluster.kubectl(
                        &[
                            "get",
                            name,
                            "-o",
                            r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#,
                        ],
                        None,
                    );
                    out.stdout == b"True"
                },
                String::new,
            );
        }
    }

    /// A namespace for one test, an emulator with these flows, and the credentials Secret
    /// the examples name (`fnf-credentials`, the test key). The operator is the test's to
    /// start (`operator`): some tests look at what the tools do before it writes.
    pub async fn setup(&self, prefix: &str, flows: &[&str]) -> (String, Cloud) {
        let ns = self.cluster.namespace(prefix);
        let cloud = Cloud::new(|_| {}).await;
        for f in flows {
            cloud.flow(f).await;
        }
        self.cluster.apply(&crate::fixtures::secret(
            &ns,
            "fnf-credentials",
            crate::cloud::AK,
            crate::cloud::SK,
        ));
        (ns, cloud)
    }

    /// The operator of this workspace on this plane, as its ServiceAccount, watching `ns`.
    pub async fn operator(&self, ns: &str, cloud: &Cloud) -> Operator {
        Operator::launch(Launch {
            binary: workspace_bin(repo(""), "flowstop"),
            kubeconfig: self
                .cluster
                .service_account_kubeconfig("flowstop-system", "flowstop"),
            namespace: ns,
            endpoint: &cloud.emu.url(),
            args: crate::operator::TEST_ARGS,
            env: &[],
            log: None,
            // Generous: the GitOps tests run beside the rest, on a busy machine.
            ready_within: Duration::from_secs(60),
        })
        .await
        .expect("the operator starts and becomes ready")
    }

    /// Annotates an object as the tools' CLIs do to ask for a reconciliation now:
    /// `argocd app get --refresh` for an Application, `flux reconcile` for Flux objects.
    pub fn poke(&self, ns: &str, resource: &str) {
        let annotation = if resource.starts_with("application") {
            "argocd.argoproj.io/refresh=normal".to_string()
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            format!("reconcile.fluxcd.io/requestedAt={now}")
        };
        self.cluster.must(
            &["annotate", "-n", ns, resource, &annotation, "--overwrite"],
            None,
        );
    }
}

/// The git server: `git http-backend` behind Go's net/http/cgi (gitops/gitserver), on
/// loopback, read and write without authentication.
pub struct GitServer {
    /// http://127.0.0.1:PORT
    pub url: String,
    root: PathBuf,
    _process: Supervised,
}

/// The git server of this test process, started on first use.
pub fn git_server() -> &'static GitServer {
    static GIT: OnceLock<GitServer> = OnceLock::new();
    GIT.get_or_init(|| {
        let p = plane();
        let root = p.dir.join("git");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let process = p.spawn(
            "gitserver",
            &bin_dir().join("gitserver"),
            &[root.display().to_string(), format!("127.0.0.1:{port}")],
            &[],
        );
        wait_until(
            "the git server listens",
            Duration::from_secs(10),
            || port_open(port),
            || log_tail(&process.log, 20),
        );
        GitServer {
            url: format!("http://127.0.0.1:{port}"),
            root,
            _process: process,
        }
    })
}

impl GitServer {
    /// A new repository `NAME.git` on the server with branch `main` (as a forge creates
    /// one), and a clone of it over HTTP to commit and push to, as a user does.
    pub fn repo(&self, name: &str) -> Repo {
        let bare = self.root.join(format!("{name}.git"));
        git(
            &self.root,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
            Some(&bare),
        );
        let url = format!("{}/{name}.git", self.url);
        let work = tempfile::Builder::new()
            .prefix("flowstop-gitops-")
            .tempdir()
            .unwrap();
        git(work.path(), &["clone", "--quiet", &url, "."], None);
        git(
            work.path(),
            &["symbolic-ref", "HEAD", "refs/heads/main"],
            None,
        );
        Repo { url, work }
    }
}

/// Runs git (with a fixed identity), panicking with its output when it fails; returns stdout.
fn git(dir: &Path, args: &[&str], extra: Option<&Path>) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=flowstop tests",
            "-c",
            "user.email=tests@flowstop.dev",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .args(extra)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A working clone of a repository on the git server.
pub struct Repo {
    /// The URL the controllers read it from.
    pub url: String,
    work: tempfile::TempDir,
}

impl Repo {
    /// Writes a file (creating its directories) in the working tree.
    pub fn write(&self, path: &str, content: &str) -> &Self {
        let file = self.work.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
        self
    }

    /// Removes a file from the working tree.
    pub fn remove(&self, path: &str) -> &Self {
        std::fs::remove_file(self.work.path().join(path)).unwrap();
        self
    }

    /// `git add -A`, `git commit`, `git push origin main`; the new commit's id.
    pub fn commit(&self, message: &str) -> String {
        let dir = self.work.path();
        git(dir, &["add", "-A"], None);
        git(
            dir,
            &["commit", "--quiet", "--allow-empty", "-m", message],
            None,
        );
        git(dir, &["push", "--quiet", "origin", "main"], None);
        git(dir, &["rev-parse", "HEAD"], None).trim().to_string()
    }
}

/// Flux's source-controller and kustomize-controller, watching every namespace.
pub struct Flux {
    pub source_controller: Supervised,
    pub kustomize_controller: Supervised,
}

/// Flux of this test process, started on first use (its CRDs installed, `flux-system`
/// created).
pub fn flux() -> &'static Flux {
    static FLUX: OnceLock<Flux> = OnceLock::new();
    FLUX.get_or_init(|| {
        let p = plane();
        let bin = bin_dir();
        let crds: Vec<PathBuf> = std::fs::read_dir(bin.join("crds/flux"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        p.install_crds(&crds);
        p.cluster
            .apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: flux-system}\n");
        let storage = p.dir.join("flux-storage");
        std::fs::create_dir_all(&storage).unwrap();
        // The artifact server's address is also what it advertises in status.artifact.url,
        // where kustomize-controller downloads from: one fixed port for both.
        let storage_port = free_port();
        let (source_health, kustomize_health) = (free_port(), free_port());
        let common = |health: u16| {
            vec![
                "--metrics-addr=0".to_string(),
                format!("--health-addr=127.0.0.1:{health}"),
                "--log-encoding=console".into(),
            ]
        };
        let env = [("RUNTIME_NAMESPACE", "flux-system".to_string())];
        let mut args = common(source_health);
        args.extend([
            format!("--storage-path={}", storage.display()),
            format!("--storage-addr=127.0.0.1:{storage_port}"),
            format!("--storage-adv-addr=127.0.0.1:{storage_port}"),
        ]);
        let source_controller = p.spawn(
            "source-controller",
            &bin.join("source-controller"),
            &args,
            &env,
        );
        let mut args = common(kustomize_health);
        // A dependent Kustomization looks at its dependencies again every 30 s by
        // default; the tests wait for that, so make it short.
        args.push("--requeue-dependency=2s".into());
        let kustomize_controller = p.spawn(
            "kustomize-controller",
            &bin.join("kustomize-controller"),
            &args,
            &env,
        );
        for (port, s) in [
            (source_health, &source_controller),
            (kustomize_health, &kustomize_controller),
        ] {
            wait_until(
                "a Flux controller is ready",
                Duration::from_secs(60),
                || http_ok(&format!("http://127.0.0.1:{port}/readyz")),
                || log_tail(&s.log, 30),
            );
        }
        Flux {
            source_controller,
            kustomize_controller,
        }
    })
}

impl Flux {
    pub fn logs(&self) -> String {
        format!(
            "{}\n{}",
            log_tail(&self.source_controller.log, 30),
            log_tail(&self.kustomize_controller.log, 60)
        )
    }
}

/// Redis and Argo CD's repo server, shared by the Argo CD instances.
struct ArgoBase {
    redis: String,
    repo_server: String,
    _redis: Supervised,
    repo_server_process: Supervised,
}

fn argo_base() -> &'static ArgoBase {
    static BASE: OnceLock<ArgoBase> = OnceLock::new();
    BASE.get_or_init(|| {
        let p = plane();
        let bin = bin_dir();
        let crds = bin.join("crds/argocd");
        p.install_crds(&[
            crds.join("application-crd.yaml"),
            crds.join("appproject-crd.yaml"),
        ]);
        let redis_port = free_port();
        let redis = p.spawn(
            "redis",
            Path::new("redis-server"),
            &[
                "--bind".into(),
                "127.0.0.1".into(),
                "--port".into(),
                redis_port.to_string(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
            ],
            &[],
        );
        wait_until(
            "redis listens",
            Duration::from_secs(10),
            || port_open(redis_port),
            || log_tail(&redis.log, 20),
        );
        let (port, metrics) = (free_port(), free_port());
        // The repo server runs git, and Argo CD's helper scripts from PATH (build.sh puts
        // them beside the binary); its clones go under TMPDIR.
        let tmp = p.dir.join("argocd-repo-server-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let repo_server_process = p.spawn(
            "argocd-repo-server",
            &bin.join("argocd"),
            &[
                "repo-server".into(),
                "--address=127.0.0.1".into(),
                format!("--port={port}"),
                "--metrics-address=127.0.0.1".into(),
                format!("--metrics-port={metrics}"),
                format!("--redis=127.0.0.1:{redis_port}"),
                "--disable-tls".into(),
                "--client-ca-path=".into(),
                "--logformat=text".into(),
            ],
            &[
                ("PATH", path),
                ("TMPDIR", tmp.display().to_string()),
                ("ARGOCD_GPG_ENABLED", "false".into()),
            ],
        );
        wait_until(
            "Argo CD's repo server is healthy",
            Duration::from_secs(60),
            || http_ok(&format!("http://127.0.0.1:{metrics}/healthz")),
            || log_tail(&repo_server_process.log, 30),
        );
        ArgoBase {
            redis: format!("127.0.0.1:{redis_port}"),
            repo_server: format!("127.0.0.1:{port}"),
            _redis: redis,
            repo_server_process,
        }
    })
}

/// An Argo CD application-controller for the Applications of one namespace.
pub struct ArgoCd {
    /// Where its Applications, `argocd-cm` and AppProject `default` live.
    pub namespace: &'static str,
    pub controller: Supervised,
}

/// Argo CD with flowstop's health checks in `argocd-cm`, as the README says to install
/// them (namespace `argocd`), started on first use.
pub fn argocd() -> &'static ArgoCd {
    static ARGO: OnceLock<ArgoCd> = OnceLock::new();
    ARGO.get_or_init(|| ArgoCd::start("argocd", &health_customizations()))
}

/// Argo CD without them (namespace `argocd-plain`): what a user who skipped them gets.
pub fn argocd_without_health_checks() -> &'static ArgoCd {
    static ARGO: OnceLock<ArgoCd> = OnceLock::new();
    ARGO.get_or_init(|| ArgoCd::start("argocd-plain", &serde_json::Map::new()))
}

/// `argocd-cm` data: `resource.customizations.health.flowstop.dev_<Kind>` for each
/// `deploy/argocd/resource_customizations/flowstop.dev/<Kind>/health.lua`.
pub fn health_customizations() -> serde_json::Map<String, serde_json::Value> {
    let dir = repo("deploy/argocd/resource_customizations/flowstop.dev");
    let mut data = serde_json::Map::new();
    for kind in std::fs::read_dir(&dir).unwrap() {
        let kind = kind.unwrap();
        let lua = std::fs::read_to_string(kind.path().join("health.lua")).unwrap();
        data.insert(
            format!(
                "resource.customizations.health.flowstop.dev_{}",
                kind.file_name().to_string_lossy()
            ),
            lua.into(),
        );
    }
    assert!(data.len() >= 2, "no health checks under {}", dir.display());
    data
}

impl ArgoCd {
    fn start(
        namespace: &'static str,
        cm_data: &serde_json::Map<String, serde_json::Value>,
    ) -> ArgoCd {
        let p = plane();
        let base = argo_base();
        let part_of = serde_json::json!({"app.kubernetes.io/part-of": "argocd"});
        let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "argocd-cm", "namespace": namespace, "labels": part_of},
             "data": cm_data},
            // Argo CD's settings refuse to load without it (argocd-server would create its key).
            {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": "argocd-secret", "namespace": namespace, "labels": part_of},
             "stringData": {"server.secretkey": "flowstop-tests"}},
        ]});
        p.cluster.apply(&objects.to_string());
        // The `default` project (argocd-server creates it; it does not run here).
        p.cluster.apply(
            &serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                "metadata": {"name": "default", "namespace": namespace},
                "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                         "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]},
            })
            .to_string(),
        );
        let metrics = free_port();
        let controller = p.spawn(
            &format!("argocd-application-controller-{namespace}"),
            &bin_dir().join("argocd"),
            &[
                "application-controller".into(),
                format!("--namespace={namespace}"),
                format!("--redis={}", base.redis),
                format!("--repo-server={}", base.repo_server),
                "--repo-server-plaintext".into(),
                format!("--metrics-port={metrics}"),
                // Argo CD 3 keeps each resource's health out of the Application unless
                // asked; the tests read it there (the UI reads it from the resource tree).
                "--persist-resource-health".into(),
                "--logformat=text".into(),
                "--status-processors=4".into(),
                "--operation-processors=4".into(),
            ],
            // Outside a cluster: `https://kubernetes.default.svc` is KUBECONFIG's cluster.
            &[("ARGOCD_FAKE_IN_CLUSTER", "true".into())],
        );
        wait_until(
            "Argo CD's application controller is healthy",
            Duration::from_secs(60),
            || http_ok(&format!("http://127.0.0.1:{metrics}/healthz")),
            || log_tail(&controller.log, 30),
        );
        ArgoCd {
            namespace,
            controller,
        }
    }

    pub fn logs(&self) -> String {
        format!(
            "{}\n{}",
            log_tail(&argo_base().repo_server_process.log, 20),
            log_tail(&self.controller.log, 60)
        )
    }
}
