//! One real control plane per test process, started lazily through `testkit
//! control-plane` and shared by every test in it; a fresh namespace per test.
//!
//! The launcher follows our stdin: when this process ends in any way, the pipe closes
//! and the launcher takes etcd and kube-apiserver down with it.

use kube::config::{KubeConfigOptions, Kubeconfig};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// A control plane driven with kubectl as users do.
pub struct Cluster {
    /// The `testkit control-plane` process that owns the plane, when we started it.
    _launcher: Option<Mutex<(Child, ChildStdin)>>,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub bin_dir: PathBuf,
}

/// Where the control-plane binaries are: FLOWSTOP_CONTROL_PLANE_BIN, or build them
/// (cached) with crates/testkit/control-plane/build.sh.
pub fn bin_dir() -> PathBuf {
    built("FLOWSTOP_CONTROL_PLANE_BIN", "control-plane/build.sh", &[])
}

/// A directory of tools built from upstream modules: `$env` when set (the scripts export
/// it once built), else what `crates/testkit/<script> <args>` prints after building them
/// into the cache (or finding them there).
pub fn built(env: &str, script: &str, args: &[&str]) -> PathBuf {
    if let Ok(dir) = std::env::var(env) {
        return dir.into();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new(&path)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{script} runs: {e}"));
    assert!(out.status.success(), "{script} {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().into()
}

/// A binary of this workspace, `bin` of the package in `package_dir`: the one cargo
/// built beside the running test or benchmark (`cargo test --workspace` builds every
/// package's binaries), or built now with the same profile and target directory.
pub fn workspace_bin(package_dir: impl AsRef<Path>, bin: &str) -> PathBuf {
    // .../target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("the running executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps");
    let path = profile_dir.join(bin);
    if !path.exists() {
        let target = profile_dir.parent().expect("<target>/<profile>");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .args(["build", "--quiet", "--bin", bin, "--manifest-path"])
            .arg(package_dir.as_ref().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "building {bin} failed");
    }
    path
}

/// Starts `testkit control-plane` and reads its announcement up to `ready`.
pub fn launch(extra: &[&str]) -> (Child, ChildStdin, Vec<(String, String)>) {
    let mut child = Command::new(workspace_bin(env!("CARGO_MANIFEST_DIR"), "testkit"))
        .arg("control-plane")
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(["--follow-stdin"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("testkit control-plane starts");
    let stdin = child.stdin.take().unwrap();
    let info = read_announcement(child.stdout.take().unwrap());
    (child, stdin, info)
}

pub fn read_announcement(stdout: impl std::io::Read) -> Vec<(String, String)> {
    let mut info = vec![];
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line == "ready" {
            return info;
        }
        let (k, v) = line.split_once(' ').unwrap_or((&line, ""));
        info.push((k.to_string(), v.to_string()));
    }
    panic!("the control plane exited before it was ready: {info:?}");
}

pub fn get<'a>(info: &'a [(String, String)], key: &str) -> &'a str {
    &info
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in {info:?}"))
        .1
}

/// The control plane of this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (child, stdin, info) = launch(&[]);
        Cluster {
            kubeconfig: get(&info, "kubeconfig").into(),
            server: get(&info, "server").into(),
            _launcher: Some(Mutex::new((child, stdin))),
            bin_dir: bin_dir(),
        }
    })
}

impl Cluster {
    /// The plane an admin kubeconfig points at (its first cluster).
    pub fn from_kubeconfig(kubeconfig: PathBuf, bin_dir: PathBuf) -> anyhow::Result<Cluster> {
        let kc = Kubeconfig::read_from(&kubeconfig)?;
        let server = kc
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .ok_or_else(|| anyhow::anyhow!("{} names no server", kubeconfig.display()))?;
        Ok(Self::attach(kubeconfig, server, bin_dir))
    }

    /// A plane started elsewhere (in process, say), with its admin kubeconfig.
    pub fn attach(kubeconfig: PathBuf, server: String, bin_dir: PathBuf) -> Cluster {
        Cluster {
            _launcher: None,
            kubeconfig,
            server,
            bin_dir,
        }
    }

    pub async fn client(&self) -> kube::Client {
        self.client_from(&self.kubeconfig).await
    }

    async fn client_from(&self, path: &Path) -> kube::Client {
        let kc = Kubeconfig::read_from(path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(self.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// `kubectl apply -f -`, as a user does; returns (success, stdout + stderr), for
    /// tests where a refusal is the point.
    pub fn try_apply(&self, yaml: &str) -> (bool, String) {
        let out = self.kubectl(&["apply", "-f", "-"], Some(yaml));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `kubectl apply -f -` that must succeed: a failed apply fails the test here, with
    /// kubectl's message, instead of as a later timeout.
    pub fn apply(&self, yaml: &str) -> String {
        let (ok, out) = self.try_apply(yaml);
        assert!(ok, "kubectl apply failed: {out}\n{yaml}");
        out
    }

    pub fn must(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new namespace for one test (this plane never deletes namespaces).
    pub fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        self.must(&["create", "namespace", &name], None);
        name
    }

    /// A client acting as ServiceAccount `ns/name` with a real TokenRequest token.
    pub async fn service_account_client(&self, ns: &str, name: &str) -> kube::Client {
        let path = self.service_account_kubeconfig(ns, name);
        self.client_from(&path).await
    }

    /// A kubeconfig file acting as ServiceAccount `ns/name` with a real TokenRequest token.
    pub fn service_account_kubeconfig(&self, ns: &str, name: &str) -> PathBuf {
        let token = self.must(&["create", "token", name, "-n", ns, "--duration=2h"], None);
        let kc = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let ca = kc.clusters[0]
            .cluster
            .as_ref()
            .unwrap()
            .certificate_authority_data
            .clone()
            .unwrap();
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\n\
             users:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: local, user: sa}}\ncurrent-context: sa\n",
            self.server,
            token.trim()
        );
        let path = self
            .kubeconfig
            .with_file_name(format!("kubeconfig-{ns}-{name}"));
        std::fs::write(&path, yaml).unwrap();
        path
    }
}
