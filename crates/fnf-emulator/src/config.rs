//! Command-line settings of `fnf-emulator` (also used by tests that start it in-process).

use super::faults::{Fault, Rule};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "fnf-emulator",
    version,
    about = "A local Alibaba Cloud Serverless Workflow (fnf) API"
)]
pub struct Config {
    /// Address of the RPC API (port 0: any free port; the URL is the first stdout line)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address of the admin endpoint (faults, counters); never part of the RPC surface
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin_listen: SocketAddr,
    /// An accepted key pair, ID:SECRET (repeatable); each key is its own account
    #[arg(long = "access-key", value_parser = parse_key)]
    pub access_keys: Vec<(String, String)>,
    /// Keep flows and executions in this JSON file across restarts
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Allowed difference between a request's Timestamp and now, in seconds
    #[arg(long, default_value_t = 900)]
    pub skew_seconds: i64,
    /// Refill the quota buckets this many times faster than the real service
    #[arg(long, default_value_t = 1.0)]
    pub quota_speedup: f64,
    /// Do not throttle at all
    #[arg(long)]
    pub no_quota: bool,
    /// StopExecution answers Running, and the execution stops this many ms later
    #[arg(long)]
    pub async_stop_ms: Option<u64>,
    /// Faults, ACTION=ITEM,ITEM… with ACTION a name or `*`; ITEM is a fault used once in
    /// order (500, 429, drop, malformed, stall:MS), FAULT@P for a chance P, or latency:MIN-MAX
    #[arg(long = "fault", value_parser = parse_rule)]
    pub faults: Vec<(String, Rule)>,
    /// OIDC tokens the STS stand-in accepts (repeatable; default: any JWT-shaped token)
    #[arg(long = "oidc-token")]
    pub oidc_tokens: Vec<String>,
    /// Start with a running execution, FLOW:EXECUTION (repeatable; the flow is created too)
    #[arg(long = "seed-execution", value_parser = parse_seed)]
    pub seed_executions: Vec<(String, String)>,
    /// Log format: text or json
    #[arg(long, default_value = "text")]
    pub log_format: String,
}

impl Default for Config {
    fn default() -> Self {
        <Self as clap::Parser>::parse_from(["fnf-emulator"])
    }
}

fn parse_key(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
            Ok((id.into(), secret.into()))
        }
        _ => Err("expected ID:SECRET".into()),
    }
}

fn parse_seed(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((flow, exec)) if !flow.is_empty() && !exec.is_empty() => {
            Ok((flow.into(), exec.into()))
        }
        _ => Err("expected FLOW:EXECUTION".into()),
    }
}

pub fn parse_rule(s: &str) -> Result<(String, Rule), String> {
    let (action, items) = s.split_once('=').ok_or("expected ACTION=ITEM,ITEM…")?;
    let mut rule = Rule::default();
    for item in items.split(',').filter(|i| !i.is_empty()) {
        if let Some(range) = item.strip_prefix("latency:") {
            let (lo, hi) = range.split_once('-').ok_or("latency:MIN-MAX")?;
            let lo = lo.parse().map_err(|_| "latency MIN")?;
            let hi = hi.parse().map_err(|_| "latency MAX")?;
            rule.latency_ms = Some((lo, hi));
        } else if let Some((fault, p)) = item.split_once('@') {
            let p: f64 = p.parse().map_err(|_| format!("chance in {item:?}"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("chance in {item:?} must be 0 to 1"));
            }
            rule.chances.push((p, fault.parse::<Fault>()?));
        } else {
            rule.script.push_back(item.parse()?);
        }
    }
    Ok((action.into(), rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fault_rules() {
        let (a, r) = parse_rule("*=500@0.3,drop@0.05,latency:5-20").unwrap();
        assert_eq!(a, "*");
        assert_eq!(
            r.chances,
            vec![(0.3, Fault::Status(500)), (0.05, Fault::Drop)]
        );
        assert_eq!(r.latency_ms, Some((5, 20)));
        let (a, r) = parse_rule("StopExecution=500,500,429").unwrap();
        assert_eq!(a, "StopExecution");
        assert_eq!(r.script.len(), 3);
        assert!(parse_rule("StopExecution").is_err());
        assert!(parse_rule("x=500@2").is_err());
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let c = Config::default();
        assert!(c.listen.ip().is_loopback() && c.admin_listen.ip().is_loopback());
        assert!(!c.no_quota);
    }
}
