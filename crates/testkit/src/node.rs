//! A real single-node cluster: the control plane plus kube-scheduler, kube-proxy, kubelet,
//! containerd, runc and the CNI bridge, in a network namespace of its own
//! (crates/testkit/node/node.sh, which this starts and follows). The node is
//! 198.51.100.10; the host reaches it through a veth (198.51.100.1), nothing else does.
//!
//! The launcher follows our stdin: when this process ends in any way, the pipe closes and
//! the launcher takes the node down with it.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

/// The node's address, where its API server (6443) and whatever a test binds in its
/// namespace listen.
pub const NODE_IP: &str = "198.51.100.10";

pub struct Node {
    launcher: Child,
    stdin: Option<ChildStdin>,
    pub kubeconfig: PathBuf,
    /// The node's network namespace (/run/netns/...).
    pub netns: PathBuf,
    /// Its state: logs, containerd's socket (run/containerd.sock), the kubelet's root.
    pub dir: PathBuf,
    /// kubectl on it, as on the control plane.
    cluster: crate::cluster::Cluster,
}

/// Where the node's binaries are: FLOWSTOP_NODE_BIN, or build them (cached).
pub fn bin_dir() -> PathBuf {
    crate::cluster::built("FLOWSTOP_NODE_BIN", "control-plane/build.sh", &["node"])
}

/// An OCI archive of one static binary (`deploy/image/oci.py`), run as `/ENTRY`.
pub fn image(binary: &Path, out: &Path, name: &str, entry: &str) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/image/oci.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(binary)
        .arg(out)
        .args([name, entry])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("oci.py {} failed", binary.display());
    }
    Ok(())
}

/// `testkit node`: the launcher in the foreground, its stdin and stdout ours.
pub fn run_launcher(images: &[PathBuf]) -> anyhow::Result<()> {
    let status = launcher(images)?.status()?;
    if !status.success() {
        bail!("node.sh: {status}");
    }
    Ok(())
}

fn launcher(images: &[impl AsRef<std::ffi::OsStr>]) -> anyhow::Result<Command> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/node.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .args(images)
        .env("FLOWSTOP_CONTROL_PLANE_BIN", crate::cluster::bin_dir())
        .env("FLOWSTOP_NODE_BIN", bin_dir());
    Ok(cmd)
}

impl Node {
    /// Starts a node with these OCI archives imported; returns once it is Ready.
    pub fn start(images: &[&Path]) -> anyhow::Result<Node> {
        let control_plane = crate::cluster::bin_dir();
        let mut launcher = launcher(images)?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node.sh")?;
        let stdin = launcher.stdin.take();
        let mut lines = BufReader::new(launcher.stdout.take().expect("piped")).lines();
        let (mut kubeconfig, mut netns, mut dir) = (None, None, None);
        loop {
            let Some(line) = lines.next().transpose()? else {
                bail!(
                    "node.sh exited before the node was ready: {:?}",
                    launcher.wait()?
                );
            };
            match line.split_once(' ') {
                Some(("kubeconfig", p)) => kubeconfig = Some(PathBuf::from(p)),
                Some(("netns", p)) => netns = Some(PathBuf::from(p)),
                Some(("dir", p)) => dir = Some(PathBuf::from(p)),
                _ if line == "ready" => break,
                _ => {}
            }
        }
        let kubeconfig = kubeconfig.context("node.sh printed no kubeconfig")?;
        let kubeconfig_path = kubeconfig.clone();
        Ok(Node {
            launcher,
            stdin,
            kubeconfig,
            netns: netns.context("node.sh printed no netns")?,
            dir: dir.context("node.sh printed no dir")?,
            cluster: crate::cluster::Cluster::from_kubeconfig(kubeconfig_path, control_plane)?,
        })
    }

    /// `kubectl` on the node, with `input` on its stdin.
    pub fn kubectl(&self, args: &[&str], input: Option<&str>) -> Output {
        self.cluster.kubectl(args, input)
    }

    /// `kubectl`, which must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str], input: Option<&str>) -> String {
        self.cluster.must(args, input)
    }

    /// `ctr` on the node's containerd (namespace k8s.io).
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("run/containerd.sock"))
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr runs");
        assert!(
            out.status.success(),
            "ctr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// A TCP listener bound inside the node's network namespace, so Pods reach it and
    /// nothing outside the node does (the host still does, through the veth).
    pub fn listen(&self, addr: SocketAddr) -> anyhow::Result<TcpListener> {
        let netns = std::fs::File::open(&self.netns)?;
        // A namespace is per thread: enter it on a thread of our own, bind, and leave the
        // thread behind; the socket stays in the namespace it was made in.
        std::thread::spawn(move || -> anyhow::Result<TcpListener> {
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let listener = TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the binding thread panicked"))?
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Closing stdin is the launcher's signal to tear the node down; wait for it.
        drop(self.stdin.take());
        let _ = self.launcher.wait();
    }
}
