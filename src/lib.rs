//! flowstop: stop Alibaba Cloud Serverless Workflow executions declaratively from Kubernetes.
#![forbid(unsafe_code)]

pub mod cli;
pub mod crd;
pub mod decide;
pub mod exit;
pub mod lease;
pub mod ratelimit;
pub mod reconcile;
pub mod run;
pub mod telemetry;
