//! `testkit control-plane`: run a local control plane in the foreground until told to stop.

use super::ControlPlane;
use std::io::Write;
use std::path::PathBuf;
use tokio::io::AsyncBufReadExt;
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Directory holding kube-apiserver, etcd and kubectl (crates/testkit/control-plane/build.sh prints it)
    #[arg(long, env = "FLOWSTOP_CONTROL_PLANE_BIN")]
    pub bin_dir: PathBuf,
    /// State directory (default: a new temporary directory, removed on exit)
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Exit when standard input closes, so a parent that dies takes the plane with it;
    /// a line "restart-apiserver" on standard input restarts kube-apiserver
    #[arg(long)]
    pub follow_stdin: bool,
    /// kube-apiserver's `--feature-gates` (e.g. `WatchList=false`)
    #[arg(long)]
    pub apiserver_feature_gates: Option<String>,
}

/// Prints `kubeconfig PATH`, `server URL`, `pids ETCD APISERVER CONTROLLER_MANAGER` and `ready`, then serves
/// until SIGINT, SIGTERM or (with --follow-stdin) the end of standard input.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("flowstop-cp-").tempdir()?),
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.as_ref().expect("set above").path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    // Handlers first: a signal that arrives right after `ready` must not kill us with
    // the default action and orphan the children.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut plane =
        ControlPlane::start_with(&args.bin_dir, &dir, args.apiserver_feature_gates.as_deref())
            .await?;
    announce(&plane)?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            line = lines.next_line(), if args.follow_stdin => match line {
                Ok(Some(l)) if l.trim() == "restart-apiserver" => {
                    plane.restart_apiserver().await?;
                    announce(&plane)?;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
        }
    }
    plane.stop().await;
    drop(temp);
    Ok(())
}

fn announce(plane: &ControlPlane) -> anyhow::Result<()> {
    let [etcd, api, cm] = plane.pids();
    let mut out = std::io::stdout().lock();
    writeln!(out, "kubeconfig {}", plane.kubeconfig.display())?;
    writeln!(out, "server {}", plane.server())?;
    writeln!(out, "pids {etcd} {api} {cm}")?;
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}
