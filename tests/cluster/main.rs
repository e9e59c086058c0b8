//! Tests on a real kube-apiserver + etcd (see support.rs). All of them share one
//! control plane, so they live in this one test binary.

mod controlplane;
mod support;
