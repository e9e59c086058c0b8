//! Shared helpers of the integration tests: the oracles installed by `scripts/oracles`,
//! and an in-process fnf-emulator.
#![allow(dead_code)] // each test binary uses a different part

use flowstop::emulator::{self, Config};
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

pub fn oracle_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracle")
        .join(name)
}

pub const AK: &str = "testAccessKeyId";
pub const SK: &str = "testAccessKeySecret/+=";

/// An emulator on a free loopback port with the test key, optionally adjusted.
pub async fn emulator(adjust: impl FnOnce(&mut Config)) -> emulator::Running {
    let mut config = Config {
        access_keys: vec![(AK.into(), SK.into())],
        ..Config::default()
    };
    adjust(&mut config);
    emulator::start(config)
        .await
        .expect("the emulator starts on loopback")
}
