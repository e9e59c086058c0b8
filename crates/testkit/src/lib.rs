//! flowstop's test kit, for tests, benchmarks and scripts alike (never shipped):
//! - `controlplane`: etcd + kube-apiserver built from upstream modules, on loopback;
//! - `cluster`: one such plane per test process, driven with kubectl as users do;
//! - `operator`: install crds/ and deploy/, run `flowstop run` as its ServiceAccount;
//! - `cloud`: an in-process fnf-emulator and a client on it;
//! - `node`: a real single node (kubelet, containerd, runc, CNI) in a network namespace;
//! - `fixtures`: typed builders of the objects tests apply;
//! - `gitops`: Argo CD and Flux built from their modules, a git server, on a plane of their own;
//! - `oracle`: Alibaba's official SDKs, installed by scripts/oracles;
//! - `tools`: helm, promtool, krew and the health judges, built from their modules.
#![forbid(unsafe_code)]

pub mod cloud;
pub mod cluster;
pub mod controlplane;
pub mod fixtures;
pub mod gitops;
pub mod node;
pub mod operator;
pub mod oracle;
pub mod tools;
