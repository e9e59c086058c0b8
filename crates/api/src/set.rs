//! The `ExecutionStopSet` resource: stop every execution of a flow that matches a selector,
//! after a preview. Types only.

use super::{LastError, StopOptions, conditions_schema};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label on every ExecutionStop a set creates: the set's name.
pub const SET_LABEL: &str = "flowstop.dev/set";

/// How many names of matching executions status shows.
pub const FIRST_MATCHES: usize = 10;

/// Stop every execution of a flow that matches the selector, at most maxCount of them. While
/// dryRun is true the operator only lists and counts; once false it takes one snapshot of the
/// matching executions and creates one ExecutionStop per execution.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flowstop.dev",
    version = "v1alpha1",
    kind = "ExecutionStopSet",
    namespaced,
    shortname = "estopset",
    category = "flowstop",
    status = "ExecutionStopSetStatus",
    doc = "A request to stop every matching execution of a flow, with a preview first, and its outcome.",
    printcolumn = r#"{"name": "Flow", "type": "string", "jsonPath": ".spec.flowName"}"#,
    printcolumn = r#"{"name": "Dry Run", "type": "boolean", "jsonPath": ".spec.dryRun"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Matched", "type": "integer", "jsonPath": ".status.matched"}"#,
    printcolumn = r#"{"name": "Stopped", "type": "integer", "jsonPath": ".status.children.stopped"}"#,
    printcolumn = r#"{"name": "Failed", "type": "integer", "jsonPath": ".status.children.failed"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(IMMUTABLE_BUT_DRY_RUN).message(
    "spec is immutable except spec.dryRun, which may only change from true to false: create a new ExecutionStopSet to change the request"
))]
#[x_kube(validation = Rule::new("!(has(self.regionId) && has(self.endpoint))").message(
    "set spec.regionId or spec.endpoint, not both"
))]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStopSetSpec {
    /// Name of the flow (FlowName): letters, digits, `_` and `-`, starting with a letter
    /// or `_`, at most 128 characters.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
    )]
    pub flow_name: String,
    /// Which executions of the flow; the filters are ANDed.
    #[serde(default)]
    pub selector: Selector,
    /// The most executions this set may stop. If more match when it goes live, it fails
    /// and stops none (1 to 10000).
    #[schemars(range(min = 1, max = 10000))]
    pub max_count: u32,
    /// Preview only: list and count, stop nothing. May change only from true to false.
    #[serde(default)]
    pub dry_run: bool,
    /// How each execution is stopped and with what keys: cause, error, regionId or
    /// endpoint, credentialsSecretRef, maxAttempts, given to every ExecutionStop it creates.
    #[serde(flatten)]
    pub options: StopOptions,
    /// Delete this object this many seconds after it is final, as Jobs'
    /// ttlSecondsAfterFinished does (0: as soon as it is final); its
    /// ExecutionStops go with it (garbage collector). Never for an object a GitOps
    /// tool or Helm manages (Argo CD's tracking annotation or label, Flux's labels): remove it
    /// from git instead. Deleting it makes no call. Unset: kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
}

/// Every spec field but dryRun unchanged, and dryRun unchanged or true → false.
const IMMUTABLE_BUT_DRY_RUN: &str = "self == oldSelf || (oldSelf.dryRun && !self.dryRun \
    && self.flowName == oldSelf.flowName && self.selector == oldSelf.selector \
    && self.maxCount == oldSelf.maxCount \
    && has(self.cause) == has(oldSelf.cause) && (!has(self.cause) || self.cause == oldSelf.cause) \
    && has(self.error) == has(oldSelf.error) && (!has(self.error) || self.error == oldSelf.error) \
    && has(self.regionId) == has(oldSelf.regionId) && (!has(self.regionId) || self.regionId == oldSelf.regionId) \
    && has(self.endpoint) == has(oldSelf.endpoint) && (!has(self.endpoint) || self.endpoint == oldSelf.endpoint) \
    && has(self.credentialsSecretRef) == has(oldSelf.credentialsSecretRef) \
    && (!has(self.credentialsSecretRef) || self.credentialsSecretRef == oldSelf.credentialsSecretRef) \
    && has(self.maxAttempts) == has(oldSelf.maxAttempts) && (!has(self.maxAttempts) || self.maxAttempts == oldSelf.maxAttempts))";

/// Filters of ListExecutions.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new(
    "!has(self.startedAfter) || !has(self.startedBefore) || timestamp(self.startedAfter) < timestamp(self.startedBefore)"
).message("spec.selector.startedAfter must be before spec.selector.startedBefore"))]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Only executions in this status: Running (the default) or Starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SelectorStatus>,
    /// Only executions whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
    )]
    pub execution_name_prefix: Option<String>,
    /// Only executions started at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_after: Option<Time>,
    /// Only executions started at or before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_before: Option<Time>,
}

/// The statuses an execution can be stopped in.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SelectorStatus {
    #[default]
    Running,
    Starting,
}

impl SelectorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Starting => "Starting",
        }
    }
}

/// Where the set stands. Final phases are Completed and Failed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SetPhase {
    /// Nothing listed yet, and waiting: no ExecutionStopPolicy allows the set (reason
    /// Forbidden). Looked at again every --policy-recheck-seconds.
    Pending,
    /// dryRun: the matching executions are counted, none is stopped.
    Previewing,
    /// Listing the matching executions: once live, taking the snapshot and creating one
    /// ExecutionStop per execution in it.
    Listing,
    /// Every ExecutionStop exists; some are not final yet.
    Stopping,
    /// Every ExecutionStop is final and none failed (or nothing matched).
    Completed,
    /// The set could not be carried out (too many matches, no such flow, credentials),
    /// or some of its ExecutionStops failed. See the Ready condition and lastError.
    Failed,
}

impl SetPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Previewing => "Previewing",
            Self::Listing => "Listing",
            Self::Stopping => "Stopping",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
        }
    }
}

/// The set's ExecutionStops by phase.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildCounts {
    pub total: u32,
    pub pending: u32,
    pub stopping: u32,
    pub retrying: u32,
    pub stopped: u32,
    pub already_finished: u32,
    pub failed: u32,
}

impl ChildCounts {
    pub fn finals(&self) -> u32 {
        self.stopped + self.already_finished + self.failed
    }
}

/// Observed state, written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStopSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SetPhase>,
    /// Ready, Reconciling and Stalled, each with observedGeneration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many executions matched: in a preview, at listedTime; once live, in the snapshot.
    /// maxCount + 1 means "more than maxCount" (listing stops there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<u32>,
    /// The first matching executions by name (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_matches: Vec<String>,
    /// When the matching executions were last listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_time: Option<Time>,
    /// Live: executions started after this time are not part of the set. Recorded before
    /// the first listing, so a restart takes the same snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<MicroTime>,
    /// Live: every execution of the snapshot has its ExecutionStop.
    #[serde(default)]
    pub snapshot_complete: bool,
    /// The set's ExecutionStops by phase.
    #[serde(default)]
    pub children: ChildCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// Failed ListExecutions attempts in a row (a throttled call, 429, is not one).
    #[serde(default)]
    pub list_attempts: u32,
    /// Since when every ListExecutions has been throttled (429); cleared by any other
    /// answer. Throttled for --throttle-limit-seconds in a row, the set gives up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_since: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<Time>,
    /// resourceVersion of the credentials Secret (or `operator`) when ListExecutions was
    /// last refused with 403, so a changed Secret is tried again at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_credentials_version: Option<String>,
    /// No ExecutionStopPolicy allows the set (phase Pending, reason Forbidden): nothing is
    /// listed. The policies are looked at again every --policy-recheck-seconds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub denied_by_policy: bool,
    /// The listing under way, recorded every ten pages at most: a restart resumes it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<ListingProgress>,
    /// Executions whose ExecutionStop name was taken by an object this set did not create
    /// (at most 10 named; `nameConflicts` counts them all). They are not stopped by the set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_taken: Vec<String>,
    /// How many executions' ExecutionStop names were taken (see nameTaken).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub name_conflicts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Which listing is under way.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ListPass {
    /// Counting every match before anything is created: a preview, or a live set checking
    /// maxCount against the snapshot.
    Counting,
    /// Live, within maxCount: one ExecutionStop per match, page by page.
    Creating,
}

/// How far a listing has got.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListingProgress {
    pub pass: ListPass,
    /// ListExecutions' NextToken for the next page; none before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Pages read in this pass.
    pub pages: u32,
    /// Matches found in this pass so far.
    pub found: u32,
}

impl ListingProgress {
    pub fn start(pass: ListPass) -> Self {
        Self {
            pass,
            next_token: None,
            pages: 0,
            found: 0,
        }
    }
}

/// The ExecutionStopSet that created `child`: its controller ownerReference to a set. The
/// only mark of a child: names and labels can be had by anyone who may create an
/// ExecutionStop in the namespace, and a set never counts or waits for such an object.
pub fn owner_set(
    child: &super::ExecutionStop,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    child.metadata.owner_references.iter().flatten().find(|o| {
        o.controller == Some(true)
            && o.kind == "ExecutionStopSet"
            && o.api_version == "flowstop.dev/v1alpha1"
    })
}

/// Whether `child` was created by `set` (same namespace, controller ownerReference to its uid).
pub fn is_child(set: &ExecutionStopSet, child: &super::ExecutionStop) -> bool {
    child.metadata.namespace == set.metadata.namespace
        && set.metadata.uid.is_some()
        && owner_set(child).map(|o| Some(&o.uid)) == Some(set.metadata.uid.as_ref())
}
