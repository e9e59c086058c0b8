//! Errors a person can act on: what went wrong, in words that say what to do next.

use crate::connect::Kube;
use crate::text::safe;
use flowstop::exit;

/// Prints the problem on stderr. Its message may quote the cluster's answers, names and
/// status (which the cloud wrote), so it goes through [`safe`] like everything else shown.
pub fn report(p: &Problem) {
    eprintln!("error: {}", safe(&p.message));
}

#[derive(Debug)]
pub struct Problem {
    pub code: i32,
    pub message: String,
}

impl Problem {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            code: exit::ERROR,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    /// An API error from `verb` on `resource` (plural.group), explained.
    pub fn api(k: &Kube, verb: &str, resource: &str, name: Option<&str>, e: kube::Error) -> Self {
        let ns = &k.namespace;
        let message = match &e {
            kube::Error::Api(s) if s.code == 403 => format!(
                "RBAC refused: {} may not {verb} {resource} in namespace {ns} ({}); ask for a Role with verb {verb:?} on {resource}",
                k.user, s.message
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
                    k.server
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
                return Self::usage(format!("the cluster refused the request: {}", s.message));
            }
            kube::Error::Api(s) => format!("{verb} {resource}: {} ({})", s.message, s.code),
            other => format!(
                "cannot reach the cluster at {}: {other} (check --kubeconfig and --context)",
                k.server
            ),
        };
        Self::error(message)
    }
}
