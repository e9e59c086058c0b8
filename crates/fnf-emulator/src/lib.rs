#![forbid(unsafe_code)]
//! fnf-emulator: a local Serverless Workflow (fnf 2019-03-15) API with the real signature
//! rules, errors and quotas, plus an STS stand-in, fault injection and an admin endpoint.

mod actions;
mod admin;
mod auth;
mod config;
pub mod error;
pub mod faults;
mod quota;
pub mod rpc;
pub mod state;
mod sts;

pub use config::{Config, parse_rule};

use auth::{Keys, Nonces};
use faults::Faults;
use quota::Quotas;
use state::State;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Everything the emulator holds, behind one lock: calls are short and never await
/// while holding it.
#[derive(Debug)]
pub struct Inner {
    pub state: State,
    pub keys: Keys,
    pub nonces: Nonces,
    pub quotas: Option<Quotas>,
    pub faults: Faults,
    pub behaviour: actions::Behaviour,
    /// (action, outcome) → calls; outcome is `OK` or the error code or fault.
    pub counters: BTreeMap<(String, String), u64>,
    pub accepted_oidc_tokens: Vec<String>,
    pub seen_oidc_tokens: Vec<String>,
}

#[derive(Debug)]
pub struct Emulator {
    pub inner: Mutex<Inner>,
    /// Woken whenever an execution changes, for long-polls.
    pub changed: Notify,
    pub config: Config,
}

impl Emulator {
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let state = match &config.state_file {
            Some(path) if path.exists() => serde_json::from_slice(&std::fs::read(path)?)?,
            _ => State::default(),
        };
        let mut faults = Faults::default();
        for (action, rule) in &config.faults {
            faults.rules.insert(action.clone(), rule.clone());
        }
        let mut state = state;
        let now = jiff::Timestamp::now();
        for (flow, exec) in &config.seed_executions {
            state
                .seed(flow, exec, now)
                .map_err(|e| anyhow::anyhow!("--seed-execution {flow}:{exec}: {}", e.message))?;
        }
        let inner = Inner {
            state,
            keys: Keys {
                static_keys: config.access_keys.iter().cloned().collect(),
                sts: Default::default(),
            },
            nonces: Nonces::default(),
            quotas: (!config.no_quota).then(|| Quotas::new(config.quota_speedup)),
            faults,
            behaviour: actions::Behaviour {
                async_stop: config
                    .async_stop_ms
                    .map(|ms| jiff::SignedDuration::from_millis(ms as i64)),
            },
            counters: BTreeMap::new(),
            accepted_oidc_tokens: config.oidc_tokens.clone(),
            seen_oidc_tokens: vec![],
        };
        Ok(Self {
            inner: Mutex::new(inner),
            changed: Notify::new(),
            config,
        })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug already reported; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the state file, if one is configured.
    fn persist(&self, inner: &Inner) {
        if let Some(path) = &self.config.state_file {
            let tmp = path.with_extension("tmp");
            let data = serde_json::to_vec(&inner.state).expect("state serializes");
            if let Err(e) = std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, path)) {
                tracing::error!(error = %e, path = %path.display(), "cannot write the state file");
            }
        }
    }

    pub fn count(&self, action: &str, outcome: &str) -> u64 {
        self.lock()
            .counters
            .get(&(action.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// A running emulator: its API and admin addresses.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub emulator: Arc<Emulator>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds both listeners and serves until the returned value is dropped.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let api = TcpListener::bind(config.listen).await?;
    let admin = TcpListener::bind(config.admin_listen).await?;
    serve(config, api, admin)
}

/// Serves on listeners bound by the caller (e.g. inside another network namespace) until
/// the returned value is dropped; `config.listen` and `config.admin_listen` are ignored.
pub fn serve(config: Config, api: TcpListener, admin: TcpListener) -> anyhow::Result<Running> {
    let (addr, admin_addr) = (api.local_addr()?, admin.local_addr()?);
    let emulator = Arc::new(Emulator::new(config)?);
    let api_app = rpc::router(emulator.clone());
    let admin_app = admin::router(emulator.clone());
    let tasks = vec![
        tokio::spawn(async move {
            if let Err(e) = axum::serve(api, api_app).await {
                tracing::error!(error = %e, "API server stopped");
            }
        }),
        tokio::spawn(async move {
            if let Err(e) = axum::serve(admin, admin_app).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        }),
    ];
    Ok(Running {
        addr,
        admin_addr,
        emulator,
        tasks,
    })
}
