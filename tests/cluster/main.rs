//! Tests on a real kube-apiserver + etcd (see support.rs). All of them share one
//! control plane, so they live in this one test binary.

mod admission;
#[path = "../support/mod.rs"]
mod common;
mod controlplane;
mod endpoints;
mod operator;
mod operator_support;
mod reliability;
mod status_truth;
mod support;
