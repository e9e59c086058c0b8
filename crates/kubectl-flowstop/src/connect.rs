//! kubectl's usual connection flags, read the way kubectl reads them.

use crate::problem::Problem;
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's)
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Username to impersonate
    #[arg(long = "as", global = true)]
    pub as_user: Option<String>,
    /// Group to impersonate (repeatable)
    #[arg(long = "as-group", global = true)]
    pub as_group: Vec<String>,
}

/// A client, the namespace to work in, and what to call the user in messages.
pub struct Kube {
    pub client: kube::Client,
    pub namespace: String,
    pub user: String,
    pub server: String,
}

pub async fn connect(a: &KubeArgs) -> Result<Kube, Problem> {
    let options = KubeConfigOptions {
        context: a.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &a.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                Problem::error(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(kc, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    };
    let mut config = config.map_err(|e| {
        Problem::error(format!(
            "no cluster to talk to: {e} (pass --kubeconfig or --context, or set KUBECONFIG)"
        ))
    })?;
    if let Some(user) = &a.as_user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !a.as_group.is_empty() {
        config.auth_info.impersonate_groups = Some(a.as_group.clone());
    }
    let namespace = a
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let user = a.as_user.clone().unwrap_or_else(|| "you".into());
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| Problem::error(format!("cannot make a client for the cluster: {e}")))?;
    Ok(Kube {
        client,
        namespace,
        user,
        server,
    })
}
