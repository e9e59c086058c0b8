//! The `ExecutionStopPolicy` resource: which namespaces may stop which flows. Types only;
//! what a policy allows is decided in the operator's `decide::policy`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Allows the ExecutionStops and ExecutionStopSets of the selected namespaces to stop the
/// listed flows. Cluster-scoped: only cluster administrators write policies. With the
/// operator's `--policy-mode enforce`, an object is allowed only if some policy allows it;
/// in `open` mode, only namespaces that some policy selects are restricted.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flowstop.dev",
    version = "v1alpha1",
    kind = "ExecutionStopPolicy",
    shortname = "estoppolicy",
    category = "flowstop",
    doc = "Which namespaces may stop which flows, in which regions, with which credentials.",
    printcolumn = r#"{"name": "All Namespaces", "type": "boolean", "jsonPath": ".spec.allNamespaces"}"#,
    printcolumn = r#"{"name": "Flows", "type": "string", "jsonPath": ".spec.flows"}"#,
    printcolumn = r#"{"name": "Operator Credentials", "type": "string", "jsonPath": ".spec.operatorCredentials"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(
    "has(self.namespaceSelector) != (has(self.allNamespaces) && self.allNamespaces)"
).message(
    "set spec.namespaceSelector (with at least one label or expression) or spec.allNamespaces: true, not both"
))]
#[x_kube(validation = Rule::new(
    "!has(self.namespaceSelector) || (has(self.namespaceSelector.matchLabels) && size(self.namespaceSelector.matchLabels) > 0) || (has(self.namespaceSelector.matchExpressions) && size(self.namespaceSelector.matchExpressions) > 0)"
).message(
    "spec.namespaceSelector is empty, which would select every namespace: write spec.allNamespaces: true instead"
))]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStopPolicySpec {
    /// The namespaces this policy applies to, by their labels (e.g. matchLabels
    /// {team: data}). Must not be empty: to select every namespace, set allNamespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// This policy applies to every namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_namespaces: bool,
    /// Flows that may be stopped: names, or globs where `*` stands for any run of
    /// characters (e.g. `etl-*`, or `*` for every flow). 1 to 64 entries.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(inner(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_*-]+$")))]
    pub flows: Vec<String>,
    /// Regions (e.g. cn-hangzhou) the flows may be stopped in; omitted: any region. An
    /// object whose region cannot be told (an endpoint of another form) matches only a
    /// policy without regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(inner(
        length(min = 1, max = 64),
        regex(pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$")
    ))]
    pub regions: Vec<String>,
    /// Whether objects may use the operator's own credentials (environment or RRSA):
    /// Allow, or Deny (the default: only objects with their own credentialsSecretRef).
    #[serde(default)]
    pub operator_credentials: OperatorCredentials,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OperatorCredentials {
    Allow,
    #[default]
    Deny,
}
