//! flowstop: stop Alibaba Cloud Serverless Workflow executions declaratively from Kubernetes.
#![forbid(unsafe_code)]

pub mod cli;
/// The resources' types and CRDs live in their own crate, `flowstop-api`.
pub use flowstop_api as crd;
pub mod decide;
pub use flowstop_api::exit;
pub mod lease;
pub mod ratelimit;
pub mod reconcile;
pub mod run;
pub mod telemetry;
pub mod watch;
