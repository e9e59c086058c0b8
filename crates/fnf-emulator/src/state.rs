//! Flows and executions, and how executions move through their lifecycle.
//! Every method takes `now`, so transitions are deterministic and testable.

use super::error::ApiError;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flow {
    pub id: String,
    pub name: String,
    pub definition: String,
    pub description: String,
    pub role_arn: Option<String>,
    pub execution_mode: String,
    pub created: Timestamp,
    pub modified: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub time: Timestamp,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Execution {
    pub flow: String,
    pub name: String,
    pub input: String,
    pub output: Option<String>,
    pub status: String,
    pub started: Timestamp,
    pub stopped: Option<Timestamp>,
    /// When the execution ends by itself, and how.
    pub ends: Option<(Timestamp, String)>,
    /// An asynchronous stop: the time the execution becomes Stopped.
    pub stop_at: Option<(Timestamp, String, String)>,
    pub events: Vec<Event>,
    /// Successful StopExecution answers given for this execution.
    pub stops: u32,
    /// Every StopExecution call that reached this execution, whatever the answer.
    #[serde(default)]
    pub stop_calls: u32,
}

/// The emulator's knobs for executions, read from the input JSON of StartExecution:
/// `{"emulator": {"durationMs": 500, "result": "Failed"}}`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Knobs {
    duration_ms: Option<i64>,
    result: Option<String>,
}

impl Execution {
    fn push(&mut self, kind: &str, time: Timestamp, detail: String) {
        let id = self.events.len() as i64 + 1;
        self.events.push(Event {
            id,
            kind: kind.into(),
            time,
            detail,
        });
    }

    /// Applies whatever was due by `now`: a scheduled end or an asynchronous stop.
    pub fn advance(&mut self, now: Timestamp) {
        if self.status != "Running" {
            return;
        }
        if let Some((at, error, cause)) = self.stop_at.clone() {
            if at <= now && self.ends.as_ref().is_none_or(|(end, _)| at <= *end) {
                self.finish(
                    at,
                    "Stopped",
                    serde_json::json!({"error": error, "cause": cause}).to_string(),
                );
                return;
            }
        }
        if let Some((at, result)) = self.ends.clone() {
            if at <= now {
                self.finish(at, &result, "{}".into());
            }
        }
    }

    fn finish(&mut self, at: Timestamp, status: &str, detail: String) {
        self.status = status.into();
        self.stopped = Some(at);
        self.stop_at = None;
        if status == "Succeeded" {
            self.output = Some(self.input.clone());
        }
        self.push(&format!("Execution{status}"), at, detail);
    }

    /// The next moment this execution changes by itself, if any.
    pub fn next_change(&self) -> Option<Timestamp> {
        if self.status != "Running" {
            return None;
        }
        let stop = self.stop_at.as_ref().map(|(t, _, _)| *t);
        let end = self.ends.as_ref().map(|(t, _)| *t);
        stop.into_iter().chain(end).min()
    }

    /// StopExecution. With `async_delay`, the answer still says Running and the stop
    /// lands after the delay, as the real service's documented example suggests it can.
    pub fn stop(
        &mut self,
        now: Timestamp,
        error: &str,
        cause: &str,
        async_delay: Option<SignedDuration>,
    ) -> Result<(), ApiError> {
        self.advance(now);
        self.stop_calls += 1;
        if self.status != "Running" || self.stop_at.is_some() {
            return Err(ApiError::already_completed(&self.flow, &self.name));
        }
        self.stops += 1;
        match async_delay {
            Some(d) => self.stop_at = Some((now + d, error.into(), cause.into())),
            None => self.finish(
                now,
                "Stopped",
                serde_json::json!({"error": error, "cause": cause}).to_string(),
            ),
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub flows: BTreeMap<String, Flow>,
    /// Keyed by (flow, execution); a list in the state file (JSON keys are strings).
    #[serde(with = "as_list")]
    pub executions: BTreeMap<(String, String), Execution>,
}

mod as_list {
    use super::Execution;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<(String, String), Execution>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(String, String), Execution>, D::Error> {
        let list = Vec::<Execution>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|e| ((e.flow.clone(), e.name.clone()), e))
            .collect())
    }
}

impl State {
    pub fn flow(&self, name: &str) -> Result<&Flow, ApiError> {
        self.flows
            .get(name)
            .ok_or_else(|| ApiError::flow_not_exists(name))
    }

    pub fn execution_mut(
        &mut self,
        flow: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<&mut Execution, ApiError> {
        self.flow(flow)?;
        let e = self
            .executions
            .get_mut(&(flow.to_string(), name.to_string()))
            .ok_or_else(|| ApiError::execution_not_exists(flow, name))?;
        e.advance(now);
        Ok(e)
    }

    /// StartExecution: a running execution of that name is returned as it is; an ended
    /// one is a conflict.
    pub fn start(
        &mut self,
        flow: &str,
        name: &str,
        input: &str,
        now: Timestamp,
    ) -> Result<&Execution, ApiError> {
        self.flow(flow)?;
        let key = (flow.to_string(), name.to_string());
        if let Some(e) = self.executions.get_mut(&key) {
            e.advance(now);
            if e.status != "Running" {
                return Err(ApiError::execution_exists(flow, name));
            }
            return Ok(&self.executions[&key]);
        }
        let knobs = serde_json::from_str::<serde_json::Value>(input)
            .ok()
            .and_then(|v| v.get("emulator").cloned())
            .and_then(|v| serde_json::from_value::<Knobs>(v).ok())
            .unwrap_or_default();
        let result = knobs.result.unwrap_or_else(|| "Succeeded".into());
        if !matches!(result.as_str(), "Succeeded" | "Failed" | "TimedOut") {
            return Err(ApiError::invalid_argument(format!(
                "emulator.result {result:?} is not Succeeded, Failed or TimedOut"
            )));
        }
        let ends = knobs
            .duration_ms
            .map(|ms| (now + SignedDuration::from_millis(ms.max(0)), result));
        let mut e = Execution {
            flow: flow.into(),
            name: name.into(),
            input: input.into(),
            output: None,
            status: "Running".into(),
            started: now,
            stopped: None,
            ends,
            stop_at: None,
            events: vec![],
            stops: 0,
            stop_calls: 0,
        };
        e.push(
            "ExecutionStarted",
            now,
            serde_json::json!({"input": input}).to_string(),
        );
        // A zero duration has already ended.
        e.advance(now);
        self.executions.insert(key.clone(), e);
        Ok(&self.executions[&key])
    }

    /// Creates the flow if needed and starts a running execution (for --seed-execution).
    pub fn seed(&mut self, flow: &str, name: &str, now: Timestamp) -> Result<(), ApiError> {
        self.flows.entry(flow.to_string()).or_insert_with(|| Flow {
            id: format!("{:032x}", rand::random::<u128>()),
            name: flow.into(),
            definition: "Type: StateMachine\nSpecVersion: v1\nStartAt: wait\nStates:\n  - Type: Wait\n    Name: wait\n    Duration: 86400\n    End: true\n".into(),
            description: "seeded".into(),
            role_arn: None,
            execution_mode: "Standard".into(),
            created: now,
            modified: now,
        });
        self.start(flow, name, "{}", now).map(|_| ())
    }

    /// The earliest moment any execution changes by itself.
    pub fn next_change(&self) -> Option<Timestamp> {
        self.executions
            .values()
            .filter_map(Execution::next_change)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn state_with_flow() -> State {
        let mut s = State::default();
        let now = t("2024-01-01T00:00:00Z");
        s.flows.insert(
            "f".into(),
            Flow {
                id: "1".into(),
                name: "f".into(),
                definition: String::new(),
                description: String::new(),
                role_arn: None,
                execution_mode: "Standard".into(),
                created: now,
                modified: now,
            },
        );
        s
    }

    #[test]
    fn runs_until_stopped_then_refuses_a_second_stop() {
        let mut s = state_with_flow();
        let now = t("2024-01-01T00:00:01Z");
        s.start("f", "e", "{}", now).unwrap();
        let e = s.execution_mut("f", "e", now).unwrap();
        e.stop(now, "E", "C", None).unwrap();
        assert_eq!(e.status, "Stopped");
        let err = e.stop(now, "E", "C", None).unwrap_err();
        assert_eq!(err.code, "ExecutionAlreadyCompleted");
        assert_eq!(
            e.events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["ExecutionStarted", "ExecutionStopped"]
        );
    }

    #[test]
    fn ends_by_itself_after_its_duration() {
        let mut s = state_with_flow();
        let now = t("2024-01-01T00:00:00Z");
        s.start(
            "f",
            "e",
            r#"{"emulator":{"durationMs":500,"result":"Failed"}}"#,
            now,
        )
        .unwrap();
        assert_eq!(s.execution_mut("f", "e", now).unwrap().status, "Running");
        let later = t("2024-01-01T00:00:00.5Z");
        let e = s.execution_mut("f", "e", later).unwrap();
        assert_eq!((e.status.as_str(), e.stopped), ("Failed", Some(later)));
        assert_eq!(
            s.start("f", "e", "{}", later).unwrap_err().code,
            "ExecutionAlreadyExists"
        );
    }

    #[test]
    fn asynchronous_stop_lands_after_the_delay() {
        let mut s = state_with_flow();
        let now = t("2024-01-01T00:00:00Z");
        s.start("f", "e", "{}", now).unwrap();
        let e = s.execution_mut("f", "e", now).unwrap();
        e.stop(now, "", "", Some(SignedDuration::from_millis(200)))
            .unwrap();
        assert_eq!(e.status, "Running");
        assert_eq!(e.next_change(), Some(t("2024-01-01T00:00:00.2Z")));
        let e = s
            .execution_mut("f", "e", t("2024-01-01T00:00:00.2Z"))
            .unwrap();
        assert_eq!(e.status, "Stopped");
    }

    #[test]
    fn unknown_flow_and_execution() {
        let mut s = state_with_flow();
        let now = t("2024-01-01T00:00:00Z");
        assert_eq!(
            s.execution_mut("nope", "e", now).unwrap_err().code,
            "FlowNotExists"
        );
        assert_eq!(
            s.execution_mut("f", "nope", now).unwrap_err().code,
            "ExecutionNotExists"
        );
    }
}
