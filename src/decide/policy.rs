//! Tenancy: whether the ExecutionStopPolicies allow an object's stop. Pure: the shell
//! passes the policies and the namespace's labels it has cached, and `decide` takes the
//! verdict as one more input.
//!
//! Alibaba's RAM cannot scope `fnf:StopExecution` to a flow, so with the operator's own
//! credentials this is the only place where "team A may stop only its flows" can be checked.

use crate::crd::Target;
use crate::crd::policy::{ExecutionStopPolicySpec, OperatorCredentials};
use fnf::Endpoint;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;

/// How objects that no policy selects are treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A namespace that no policy selects is not restricted (a single-tenant cluster needs
    /// no policy); a namespace that some policy selects may do only what its policies allow.
    #[default]
    Open,
    /// An object is allowed only if some policy selects its namespace and allows it.
    Enforce,
}

/// What a policy check needs to know of an object.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub namespace: &'a str,
    pub namespace_labels: &'a BTreeMap<String, String>,
    pub flow: &'a str,
    /// The region the call would go to; `None` when an explicit endpoint does not say.
    pub region: Option<String>,
    /// The object has no credentialsSecretRef: the call would use the operator's keys.
    pub operator_credentials: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Why not, naming only the policies that select the object's namespace (a tenant
    /// learns nothing of other tenants' flows).
    Denied(String),
}

/// Some policy that selects the namespace allows the request (or, in open mode, none selects it).
pub fn evaluate(
    mode: Mode,
    policies: &[(String, &ExecutionStopPolicySpec)],
    r: &Request<'_>,
) -> Verdict {
    let mut why = vec![];
    let mut selected = false;
    for (name, p) in policies {
        match selects(p, r.namespace_labels) {
            Selects::No => continue,
            // Fails closed: in open mode, "selects nothing" would lift a restriction.
            Selects::Unreadable => {
                selected = true;
                why.push(
                    "an ExecutionStopPolicy whose namespaceSelector cannot be read refuses everything until it is fixed"
                        .into(),
                );
            }
            Selects::Yes => {
                selected = true;
                match mismatch(p, r) {
                    None => return Verdict::Allowed,
                    Some(m) => why.push(format!("{name}: {m}")),
                }
            }
        }
    }
    if !selected {
        return match mode {
            Mode::Open => Verdict::Allowed,
            Mode::Enforce => Verdict::Denied(format!(
                "no ExecutionStopPolicy selects namespace {} (the operator runs with --policy-mode enforce)",
                r.namespace
            )),
        };
    }
    why.sort();
    Verdict::Denied(format!(
        "not allowed by the ExecutionStopPolicies that select namespace {}: {}",
        r.namespace,
        why.join("; ")
    ))
}

enum Selects {
    Yes,
    No,
    /// A selector that got past admission but cannot be read (admission checks operators
    /// and values; this is the last line): taken to select every namespace and allow nothing.
    Unreadable,
}

fn selects(p: &ExecutionStopPolicySpec, labels: &BTreeMap<String, String>) -> Selects {
    if p.all_namespaces {
        return Selects::Yes;
    }
    match p.namespace_selector.clone().map(Selector::try_from) {
        Some(Ok(s)) if !s.selects_all() && s.matches(labels) => Selects::Yes,
        Some(Ok(s)) if !s.selects_all() => Selects::No,
        // An empty selector is refused at admission; were it here, it would mean "all".
        None | Some(Ok(_)) | Some(Err(_)) => Selects::Unreadable,
    }
}

/// What of the request this policy does not allow, if anything.
fn mismatch(p: &ExecutionStopPolicySpec, r: &Request<'_>) -> Option<String> {
    if !p.flows.iter().any(|g| glob(g, r.flow)) {
        return Some(format!("flow {:?} is not among its flows", r.flow));
    }
    if !p.regions.is_empty() {
        match &r.region {
            Some(region) if p.regions.contains(region) => {}
            Some(region) => return Some(format!("region {region} is not among its regions")),
            None => {
                return Some(
                    "it lists regions, and the region of spec.endpoint cannot be told".into(),
                );
            }
        }
    }
    if r.operator_credentials && p.operator_credentials == OperatorCredentials::Deny {
        return Some(
            "it allows only objects with their own spec.credentialsSecretRef, not the operator's credentials".into(),
        );
    }
    None
}

/// `*` stands for any run of characters (also none); everything else is literal.
pub fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The region an object's calls go to: its regionId, else the region in its endpoint's
/// host (`[<account>.]<region>[-internal].fnf.aliyuncs.com`), else the operator's default.
pub fn region_of(target: &dyn Target, default: Option<&Endpoint>) -> Option<String> {
    if let Some(r) = target.region_id() {
        return Some(r.to_string());
    }
    match target.endpoint() {
        Some(text) => url::Url::parse(text)
            .ok()
            .and_then(|u| u.host_str().and_then(region_in_host)),
        None => match default? {
            Endpoint::Region { region, .. } => Some(region.clone()),
            Endpoint::Url(u) => u.host_str().and_then(region_in_host),
        },
    }
}

fn region_in_host(host: &str) -> Option<String> {
    let head = host.strip_suffix(".fnf.aliyuncs.com")?;
    let label = head.rsplit('.').next()?;
    let region = label.strip_suffix("-internal").unwrap_or(label);
    (!region.is_empty()).then(|| region.to_string())
}

#[cfg(test)]
mod tests;
