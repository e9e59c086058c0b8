//! The cloud side of a test: an in-process fnf-emulator with the test key, and a client
//! on it.

use fnf::{Account, Credentials, Endpoint, Unsigned};
use fnf_emulator::{Config, Running};
use std::time::Duration;

pub const AK: &str = "testAccessKeyId";
pub const SK: &str = "testAccessKeySecret/+=";

/// An emulator on a free loopback port with the test key, optionally adjusted.
pub async fn emulator(adjust: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config {
        access_keys: vec![(AK.into(), SK.into())],
        ..Config::default()
    };
    adjust(&mut config);
    fnf_emulator::start(config)
        .await
        .expect("the emulator starts on loopback")
}

/// An emulator (no quota unless adjusted) plus a fnf client on it with the test key.
pub struct Cloud {
    pub emu: Running,
    pub client: fnf::Client,
    pub account: Account,
}

impl Cloud {
    pub async fn new(adjust: impl FnOnce(&mut Config)) -> Cloud {
        let emu = emulator(|c| {
            c.no_quota = true;
            adjust(c)
        })
        .await;
        Self::on(emu)
    }

    /// A client on an emulator started elsewhere (e.g. inside a node's namespace).
    pub fn on(emu: Running) -> Cloud {
        let account = Account {
            endpoint: Endpoint::url(&emu.url(), !emu.addr.ip().is_loopback()).unwrap(),
            credentials: Credentials::new(AK, SK, None),
        };
        let client = fnf::Client::new(
            fnf::http_client(Duration::from_secs(2), Duration::from_secs(5)),
            Duration::from_secs(5),
        );
        Cloud {
            emu,
            client,
            account,
        }
    }

    pub async fn flow(&self, name: &str) {
        let u = Unsigned::create_flow(name, "Type: StateMachine\nName: x");
        self.client
            .call::<serde_json::Value>(&self.account, &u, Duration::ZERO)
            .await
            .unwrap();
    }

    /// Starts an execution as a client of the service would: a 429 (an emulator with its
    /// quota on, a test starting hundreds in a row) is waited out and tried again.
    pub async fn start(&self, flow: &str, exec: &str, input: Option<&str>) {
        let mut tries = 0u64;
        loop {
            match self
                .client
                .start_execution(&self.account, flow, Some(exec), input)
                .await
            {
                Ok(_) => return,
                Err(e) if e.kind() == fnf::ErrorKind::Throttled && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20 * tries.min(10))).await;
                }
                Err(e) => panic!("starting {exec}: {e}"),
            }
        }
    }

    /// Stops an execution as another client would (a person, a script).
    pub async fn stop_out_of_band(&self, flow: &str, exec: &str) -> fnf::Execution {
        self.client
            .stop_execution(
                &self.account,
                &fnf::StopRequest {
                    flow_name: flow.into(),
                    execution_name: exec.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    /// Scripts faults from now on, e.g. `StopExecution=500,500,429` (as `--fault` does).
    pub fn fault(&self, rule: &str) {
        let (action, rule) = fnf_emulator::parse_rule(rule).expect("a fault rule");
        self.emu.emulator.lock().faults.rules.insert(action, rule);
    }

    /// Calls of `action` with this outcome (`OK` or an error code).
    pub fn count(&self, action: &str, outcome: &str) -> u64 {
        self.emu.emulator.count(action, outcome)
    }

    /// Every execution as the emulator's admin endpoint reports it (status, stopCalls…).
    pub async fn executions(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("{}/executions", self.emu.admin_url()))
            .await
            .expect("the emulator's admin endpoint answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Every call of `action`, whatever its outcome.
    pub fn calls(&self, action: &str) -> u64 {
        self.emu
            .emulator
            .lock()
            .counters
            .iter()
            .filter(|((a, _), _)| a == action)
            .map(|(_, n)| n)
            .sum()
    }
}
