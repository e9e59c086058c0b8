//! Tests on a real kube-apiserver + etcd (the test kit's control plane). All of them
//! share one control plane, so they live in this one test binary.

mod admission;
mod chart;
mod endpoints;
mod gitops;
mod health;
mod observability;
mod operator;
mod reliability;
mod sets;
mod status_truth;
mod sts;
mod tenancy;
