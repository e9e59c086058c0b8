//! Alibaba's official SDKs, installed by `scripts/oracles`, used as oracles for the wire.

use std::path::PathBuf;

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which installs Alibaba's SDKs as oracles")
    })
}

/// Python with Alibaba's SDKs (alibabacloud-openapi-util, Tea and legacy fnf clients).
pub fn python() -> String {
    required_env("FLOWSTOP_PYTHON")
}

/// node_modules holding @alicloud/fnf-2019-03-15.
pub fn node_path() -> String {
    required_env("FLOWSTOP_NODE_PATH")
}

/// A script of `crates/testkit/oracle/` that drives the SDKs.
pub fn file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("oracle")
        .join(name)
}
