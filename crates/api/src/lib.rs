//! flowstop's API, shared by the operator and the kubectl plugin: the ExecutionStop,
//! ExecutionStopSet (`set`) and ExecutionStopPolicy (`policy`) types with their status, the
//! condition types, the set-child relation ([`set::owner_set`], [`set::is_child`]), the exit
//! codes and the CRDs. `crds/` is generated from these (`flowstop crd`) and a test fails when
//! it drifts. Types only: what to do with them is decided in the operator's `decide`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod exit;
pub mod policy;
pub mod set;
pub use set::{ExecutionStopSet, ExecutionStopSetSpec, ExecutionStopSetStatus};

/// Condition types, as kstatus and `kubectl wait` read them.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
}

/// Stop one running Serverless Workflow execution. The object is a one-shot request and
/// a receipt: the operator calls StopExecution at most as often as its retry policy
/// allows and records the outcome in status. Deleting it changes nothing in the cloud.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flowstop.dev",
    version = "v1alpha1",
    kind = "ExecutionStop",
    namespaced,
    shortname = "estop",
    category = "flowstop",
    status = "ExecutionStopStatus",
    doc = "A request to stop one Alibaba Cloud Serverless Workflow execution, and its outcome.",
    printcolumn = r#"{"name": "Flow", "type": "string", "jsonPath": ".spec.flowName"}"#,
    printcolumn = r#"{"name": "Execution", "type": "string", "jsonPath": ".spec.executionName"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Execution Status", "type": "string", "jsonPath": ".status.execution.status"}"#,
    printcolumn = r#"{"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts"}"#,
    printcolumn = r#"{"name": "Error", "type": "string", "jsonPath": ".status.lastError.code"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message(
    "spec is immutable: create a new ExecutionStop to stop another execution or change the request"
))]
#[x_kube(validation = Rule::new("!(has(self.regionId) && has(self.endpoint))").message(
    "set spec.regionId or spec.endpoint, not both"
))]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStopSpec {
    /// Name of the flow (FlowName): letters, digits, `_` and `-`, starting with a letter
    /// or `_`, at most 128 characters.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
    )]
    pub flow_name: String,
    /// Name of the execution to stop (ExecutionName); same rules as flowName.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
    )]
    pub execution_name: String,
    /// How the stop is made and with what keys.
    #[serde(flatten)]
    pub options: StopOptions,
    /// Delete this object this many seconds after it is final, as Jobs'
    /// ttlSecondsAfterFinished does (0: as soon as it is final). Never for an object a GitOps
    /// tool or Helm manages (Argo CD's tracking annotation or label, Flux's labels): remove it
    /// from git instead. Deleting it makes no call. Unset: kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
}

/// How a stop is made and with what keys: what an ExecutionStop and an ExecutionStopSet
/// share (a set gives its own to every ExecutionStop it creates).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StopOptions {
    /// Why the execution is stopped (Cause), 1 to 4096 characters. Recorded on the execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub cause: Option<String>,
    /// Error code recorded on the stopped execution (Error), 1 to 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub error: Option<String>,
    /// Region of the flow, e.g. cn-hangzhou; calls go to https://<regionId>.fnf.aliyuncs.com.
    /// Without it (and without endpoint) the operator's default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$")
    )]
    pub region_id: Option<String>,
    /// Explicit API endpoint, instead of regionId: scheme, host and optional port only
    /// (https, or http on loopback), e.g. https://cn-hangzhou.fnf.aliyuncs.com; no path,
    /// query, fragment or user@.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[^/?#@\s]+/?$")
    )]
    pub endpoint: Option<String>,
    /// A Secret in this namespace with keys accessKeyId, accessKeySecret and optionally
    /// securityToken. Without it, the operator's own credentials (environment or RRSA) are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// How many StopExecution calls may be made in total before giving up on retryable
    /// errors (1 to 100; the operator's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
}

/// Where calls go and with which keys: what ExecutionStop and ExecutionStopSet share.
pub trait Target {
    fn region_id(&self) -> Option<&str>;
    fn endpoint(&self) -> Option<&str>;
    fn credentials_secret_ref(&self) -> Option<&SecretRef>;
}

macro_rules! target {
    ($t:ty $(, $options:ident)?) => {
        impl Target for $t {
            fn region_id(&self) -> Option<&str> {
                self$(.$options)?.region_id.as_deref()
            }
            fn endpoint(&self) -> Option<&str> {
                self$(.$options)?.endpoint.as_deref()
            }
            fn credentials_secret_ref(&self) -> Option<&SecretRef> {
                self$(.$options)?.credentials_secret_ref.as_ref()
            }
        }
    };
}
target!(StopOptions);
target!(ExecutionStopSpec, options);
target!(ExecutionStopSetSpec, options);

/// A Secret in the ExecutionStop's own namespace. There is deliberately no namespace field.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where the stop stands. Final phases are Stopped, AlreadyFinished and Failed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted; no call made yet (e.g. waiting for credentials or the rate limit).
    Pending,
    /// A StopExecution call is being made or its result confirmed.
    Stopping,
    /// The last call failed in a way that may pass; the next attempt is at nextAttemptTime.
    Retrying,
    /// The execution was stopped by this request.
    Stopped,
    /// The execution had already ended (Succeeded, Failed, TimedOut or Stopped) before the call.
    AlreadyFinished,
    /// Gave up: a terminal error, or attempts exhausted. See lastError.
    Failed,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Stopped | Self::AlreadyFinished | Self::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Stopping => "Stopping",
            Self::Retrying => "Retrying",
            Self::Stopped => "Stopped",
            Self::AlreadyFinished => "AlreadyFinished",
            Self::Failed => "Failed",
        }
    }
}

/// The execution as the API last reported it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionInfo {
    /// Starting, Running, Stopped, Succeeded, Failed or TimedOut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_time: Option<String>,
}

/// The last error from the API or from getting credentials.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// The API's error code (e.g. ResourceThrottled), or a flowstop code such as Timeout.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Whether the operator will try again.
    pub retryable: bool,
}

/// Observed state, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStopStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Ready (True once the execution is known to be stopped or finished), Reconciling and
    /// Stalled (True when the operator gave up), each with observedGeneration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// StopExecution calls made so far. A call the service throttled (429) is not one: it
    /// was not carried out.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<Time>,
    /// Since when every StopExecution has been throttled (429); cleared by any other answer.
    /// Throttled for --throttle-limit-seconds (30 minutes) in a row, the object gives up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_since: Option<Time>,
    /// RequestId sent with the attempt in progress; recorded before the call, so a restart
    /// knows a call may have been made and confirms with DescribeExecution first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_request_id: Option<String>,
    /// RequestId of the call that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// RequestId of an attempt whose outcome is unknown (its answer was lost to a timeout,
    /// a broken connection, a 5xx or a restart). If the execution is later found Stopped,
    /// this attempt is taken to be what stopped it; otherwise someone else did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed_request_id: Option<String>,
    /// resourceVersion of the credentials Secret when it was last rejected (403), so a
    /// changed Secret is retried at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_credentials_version: Option<String>,
    /// No ExecutionStopPolicy allows the stop (phase Pending, reason Forbidden): no call is
    /// made. The policies are looked at again every --policy-recheck-seconds; once one
    /// allows it, the stop goes ahead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub denied_by_policy: bool,
}

pub(crate) fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    serde_json::from_value(serde_json::json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string"},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64"},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string"},
                "message": {"type": "string"}
            }
        }
    }))
    .expect("static schema")
}

/// The files under `crds/`, in the order `flowstop crd` prints them.
pub const CRD_FILES: [&str; 3] = [
    "executionstop.yaml",
    "executionstopset.yaml",
    "executionstoppolicy.yaml",
];

/// Every CRD as one YAML stream, exactly as checked in under `crds/` (CRD_FILES, joined
/// by `---`).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let mut stop = serde_json::to_value(ExecutionStop::crd()).expect("the CRD serializes");
    let mut set = serde_json::to_value(ExecutionStopSet::crd()).expect("the CRD serializes");
    // Until the operator writes status, the API server shows `observedGeneration: 0`: kstatus
    // (Flux, kpt) then sees a generation not yet observed and says InProgress, instead of
    // Current for an object without conditions.
    for crd in [&mut stop, &mut set] {
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["default"] =
            serde_json::json!({"observedGeneration": 0});
    }
    let stop = serde_yaml_ng::to_string(&stop).expect("the CRD serializes");
    // Children are labelled with the set's name, and a label value has at most 63 characters.
    set["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = serde_json::json!([{
        "rule": "self.metadata.name.size() <= 63",
        "message": "metadata.name of an ExecutionStopSet may have at most 63 characters"
    }]);
    let set = serde_yaml_ng::to_string(&set).expect("the CRD serializes");
    let mut policy =
        serde_json::to_value(policy::ExecutionStopPolicy::crd()).expect("the CRD serializes");
    // The label selector's schema (Kubernetes' own) checks no operator: admission does, so a
    // policy cannot hold a selector the operator cannot read. Bounded, so CEL's cost is.
    let expressions = &mut policy["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["spec"]["properties"]["namespaceSelector"]["properties"]["matchExpressions"];
    expressions["maxItems"] = serde_json::json!(16);
    expressions["items"]["properties"]["values"]["maxItems"] = serde_json::json!(64);
    expressions["items"]["x-kubernetes-validations"] = serde_json::json!([
        {"rule": "self.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist']",
         "message": "operator must be In, NotIn, Exists or DoesNotExist"},
        {"rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
         "message": "values: In and NotIn need at least one, Exists and DoesNotExist take none"}
    ]);
    let policy = serde_yaml_ng::to_string(&policy).expect("the CRD serializes");
    format!("{stop}---\n{set}---\n{policy}")
}

#[cfg(test)]
mod tests {
    /// `crds/` is generated from the types; regenerate with `flowstop crd > crds/executionstop.yaml`.
    #[test]
    fn checked_in_crd_matches_the_types() {
        let checked_in = format!(
            "{}---\n{}---\n{}",
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../crds/executionstop.yaml"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../crds/executionstopset.yaml"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../crds/executionstoppolicy.yaml"
            ))
        );
        assert!(
            super::crd_yaml() == checked_in,
            "crds/ is stale: run `cargo run -- crd` and split its documents into {:?}",
            super::CRD_FILES
        );
    }
}
