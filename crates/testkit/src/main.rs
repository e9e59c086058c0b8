#![forbid(unsafe_code)]
//! `testkit`: the test kit's commands, for scripts.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use testkit::cluster::Cluster;

#[derive(Parser, Debug)]
#[command(about = "flowstop's test kit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local Kubernetes control plane (etcd + kube-apiserver) in the foreground
    ControlPlane(testkit::controlplane::ServeArgs),
    /// Run a single-node cluster (kubelet, containerd, runc, CNI) in a network namespace of
    /// its own, with these OCI archives imported; prints `kubeconfig PATH` and `ready`, and
    /// tears it down when standard input closes (crates/testkit/node/node.sh)
    Node {
        /// OCI image archives to import (e.g. scripts/image's)
        images: Vec<PathBuf>,
    },
    /// Install crds/ (waiting until served) and deploy/ with kubectl
    Install(Plane),
    /// Write a kubeconfig acting as a ServiceAccount (a real TokenRequest token); print its path
    ServiceAccountKubeconfig {
        #[command(flatten)]
        plane: Plane,
        /// NAMESPACE/NAME of the ServiceAccount
        #[arg(long, default_value = "flowstop-system/flowstop")]
        service_account: String,
    },
}

/// The plane to act on.
#[derive(Args, Debug)]
struct Plane {
    /// Its admin kubeconfig
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Directory holding kubectl (control-plane/build.sh prints it)
    #[arg(long, env = "FLOWSTOP_CONTROL_PLANE_BIN")]
    bin_dir: PathBuf,
}

impl Plane {
    fn cluster(self) -> anyhow::Result<Cluster> {
        Cluster::from_kubeconfig(self.kubeconfig, self.bin_dir)
    }
}

#[tokio::main]
async fn main() {
    let result = match Cli::parse().command {
        Command::ControlPlane(a) => testkit::controlplane::serve(a).await,
        Command::Node { images } => testkit::node::run_launcher(&images),
        Command::Install(plane) => plane.cluster().map(|c| testkit::operator::install(&c)),
        Command::ServiceAccountKubeconfig {
            plane,
            service_account,
        } => plane.cluster().and_then(|c| {
            let (ns, name) = service_account
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("--service-account takes NAMESPACE/NAME"))?;
            println!("{}", c.service_account_kubeconfig(ns, name).display());
            Ok(())
        }),
    };
    // Exit here rather than return: the runtime would otherwise wait on shutdown for the
    // blocking read of standard input that --follow-stdin keeps going.
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    });
}
