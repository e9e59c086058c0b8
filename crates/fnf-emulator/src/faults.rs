//! Fault injection: scripted sequences and probabilities per action, set by flag or
//! through the admin endpoint.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// One injected misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fault {
    /// An fnf error answer with this status (409, 429, 500…); 502/503 come as a proxy's HTML page.
    Status(u16),
    /// Close the connection without an answer.
    Drop,
    /// Wait this long, then answer normally (longer than a client timeout = a stall).
    Stall(u64),
    /// A 200 whose JSON body is cut short.
    Malformed,
}

impl std::str::FromStr for Fault {
    type Err = String;
    /// `500`, `429`, `drop`, `malformed`, `stall:30000`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "malformed" => Ok(Self::Malformed),
            _ => {
                if let Some(ms) = s.strip_prefix("stall:") {
                    return ms
                        .parse()
                        .map(Self::Stall)
                        .map_err(|e| format!("fault {s:?}: {e}"));
                }
                match s.parse::<u16>() {
                    Ok(n @ 400..=599) => Ok(Self::Status(n)),
                    _ => Err(format!(
                        "fault {s:?} is not a status 400-599, drop, malformed or stall:MS"
                    )),
                }
            }
        }
    }
}

/// Faults for one action, or for every action under `*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Used one per call, in order, before any probability applies.
    #[serde(default)]
    pub script: VecDeque<Fault>,
    /// Each entry: the chance (0–1) that a call gets this fault.
    #[serde(default)]
    pub chances: Vec<(f64, Fault)>,
    /// Extra latency for every call, drawn uniformly from [min, max] milliseconds.
    #[serde(default)]
    pub latency_ms: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Faults {
    pub rules: HashMap<String, Rule>,
}

/// What to do to one call.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub fault: Option<Fault>,
    pub latency_ms: u64,
}

impl Faults {
    /// Decides for one call of `action`; `roll` gives uniform numbers in [0, 1).
    pub fn plan(&mut self, action: &str, mut roll: impl FnMut() -> f64) -> Plan {
        let mut plan = Plan::default();
        for key in [action, "*"] {
            let Some(rule) = self.rules.get_mut(key) else {
                continue;
            };
            if let Some((lo, hi)) = rule.latency_ms {
                plan.latency_ms += lo + ((hi.saturating_sub(lo)) as f64 * roll()) as u64;
            }
            if plan.fault.is_none() {
                plan.fault = rule.script.pop_front();
            }
            if plan.fault.is_none() {
                let r = roll();
                let mut acc = 0.0;
                for (p, f) in &rule.chances {
                    acc += p;
                    if r < acc {
                        plan.fault = Some(f.clone());
                        break;
                    }
                }
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_run_in_order_then_chances_apply() {
        let mut f = Faults::default();
        f.rules.insert(
            "StopExecution".into(),
            Rule {
                script: ["500", "429"].iter().map(|s| s.parse().unwrap()).collect(),
                ..Default::default()
            },
        );
        f.rules.insert(
            "*".into(),
            Rule {
                chances: vec![(0.5, Fault::Drop)],
                ..Default::default()
            },
        );
        assert_eq!(
            f.plan("StopExecution", || 0.9).fault,
            Some(Fault::Status(500))
        );
        assert_eq!(
            f.plan("StopExecution", || 0.9).fault,
            Some(Fault::Status(429))
        );
        assert_eq!(f.plan("StopExecution", || 0.9).fault, None);
        assert_eq!(f.plan("StopExecution", || 0.1).fault, Some(Fault::Drop));
        assert_eq!(f.plan("DescribeExecution", || 0.1).fault, Some(Fault::Drop));
    }

    #[test]
    fn parses_fault_names() {
        assert_eq!("stall:2500".parse::<Fault>(), Ok(Fault::Stall(2500)));
        assert_eq!("503".parse::<Fault>(), Ok(Fault::Status(503)));
        assert!("200".parse::<Fault>().is_err());
        assert!("boom".parse::<Fault>().is_err());
    }
}
