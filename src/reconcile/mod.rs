//! The thin shell around `decide`: read the object and its Secret, ask `decide`, make the
//! call it asks for, write status by server-side apply when it changed, and requeue. What
//! both kinds share is in `shell`; `stop` and `set` keep what differs.

mod credentials;
pub mod policy;
pub mod set;
pub mod shell;
pub mod stop;
#[cfg(test)]
mod tests;

pub use credentials::SecretCache;

use crate::crd::ExecutionStopSet;
use crate::decide::policy::Verdict;
use crate::decide::{self, Tuning};
use crate::ratelimit::RateLimiter;
use crate::telemetry::Metrics;
use fnf::{Account, FnfApi, Provider};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use std::sync::Arc;

/// The field manager of every status write.
pub const MANAGER: &str = "flowstop";

pub struct Context {
    pub client: kube::Client,
    pub fnf: Arc<dyn FnfApi>,
    /// The default endpoint and where objects' requests may go.
    pub endpoints: decide::endpoint::Endpoints,
    /// The operator's own credentials, or why there are none.
    pub operator_credentials: Result<Provider, String>,
    pub tuning: Tuning,
    /// StopExecution and ListExecutions: the service's "other operations" bucket.
    pub stop_limiter: RateLimiter,
    pub describe_limiter: RateLimiter,
    /// The ExecutionStopSets the operator watches, to tell whether an ExecutionStop's set
    /// still exists. Filled once the controllers are built.
    pub sets: std::sync::OnceLock<Vec<Store<ExecutionStopSet>>>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub secrets: SecretCache,
    /// The ExecutionStopPolicies and namespace labels, for the tenancy verdict.
    pub policies: policy::Policies,
    /// True once the operator is shutting down (a signal, a lost Lease).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// Whether the policies allow an object of `ns` to stop executions of `flow`, now.
    pub async fn verdict(
        &self,
        ns: &str,
        target: &(dyn crate::crd::Target + Sync),
        flow: &str,
    ) -> Result<Verdict, Error> {
        self.policies.synced().await;
        Ok(self
            .policies
            .verdict(
                &self.client,
                ns,
                target,
                flow,
                self.endpoints.default.as_ref(),
            )
            .await?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the object changed while its status was being written")]
    Conflict,
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Conflict => "conflict",
        }
    }
}

/// Rate limits apply per AccessKeyId and region, as the service's quotas do
/// (`endpoint::quota_region`): no spelling of an endpoint makes a bucket of its own.
fn limiter_key(account: &Account, class: &str) -> String {
    format!(
        "{}|{}|{class}",
        decide::endpoint::quota_region(&account.endpoint).unwrap_or_default(),
        account.credentials.access_key_id
    )
}
