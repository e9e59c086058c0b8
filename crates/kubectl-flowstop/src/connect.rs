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

impl Kube {
    /// An API error from `verb` on `resource` (plural.group), explained to the user of
    /// this connection.
    pub fn api_problem(
        &self,
        verb: &str,
        resource: &str,
        name: Option<&str>,
        e: kube::Error,
    ) -> Problem {
        let ns = &self.namespace;
        let message = match &e {
            kube::Error::Api(s) if s.code == 403 => format!(
                "RBAC refused: {} may not {verb} {resource} in namespace {ns} ({}); ask for a Role with verb {verb:?} on {resource}",
                self.user, s.message
            ),
            // The API server's words when no such resource type is served: a plain 404 page
            // for a group it does not know, "could not find the requested resource" for a
            // resource missing from a group it does.
            kube::Error::Api(s)
                if s.code == 404
                    && (s.message.contains("404 page not found")
                        || s.message.contains("could not find the requested resource")) =>
            {
                format!(
                    "the cluster at {} does not serve {resource}: is flowstop installed? (kubectl apply -f crds/, or install the Helm chart)",
                    self.server
                )
            }
            // Anything else not found names itself (the object, or the namespace).
            kube::Error::Api(s) if s.code == 404 => format!("{} (namespace {ns})", s.message),
            kube::Error::Api(s) if s.code == 409 => format!(
                "{}/{} already exists in namespace {ns}: choose another --name, or look at it with kubectl flowstop describe {}",
                resource.split('.').next().unwrap_or(resource),
                name.unwrap_or_default(),
                name.unwrap_or_default()
            ),
            kube::Error::Api(s) if s.code == 422 => {
                return Problem::usage(format!("the cluster refused the request: {}", s.message));
            }
            kube::Error::Api(s) => format!("{verb} {resource}: {} ({})", s.message, s.code),
            other => format!(
                "cannot reach the cluster at {}: {other} (check --kubeconfig and --context)",
                self.server
            ),
        };
        Problem::error(message)
    }
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
