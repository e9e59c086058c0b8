//! Request and response types of the fnf 2019-03-15 actions flowstop uses.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An execution's status as the API reports it. Unknown values are kept verbatim
/// rather than rejected, so a new status on Alibaba's side never breaks a stop.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    Starting,
    Running,
    Stopped,
    Succeeded,
    Failed,
    TimedOut,
    Other(String),
}

impl ExecutionStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Stopped => "Stopped",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::TimedOut => "TimedOut",
            Self::Other(s) => s,
        }
    }

    /// True once the execution can no longer change.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Stopped | Self::Succeeded | Self::Failed | Self::TimedOut
        )
    }
}

impl From<&str> for ExecutionStatus {
    fn from(s: &str) -> Self {
        match s {
            "Starting" => Self::Starting,
            "Running" => Self::Running,
            "Stopped" => Self::Stopped,
            "Succeeded" => Self::Succeeded,
            "Failed" => Self::Failed,
            "TimedOut" => Self::TimedOut,
            other => Self::Other(other.to_string()),
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ExecutionStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ExecutionStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(String::deserialize(d)?.as_str().into())
    }
}

/// The execution fields returned by StopExecution, StartExecution and DescribeExecution.
/// Every field but `Status` is optional: the API omits what does not apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Execution {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_name: Option<String>,
    pub status: ExecutionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_definition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// A page of ListExecutions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub executions: Vec<Execution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// StopExecution's parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StopRequest {
    pub flow_name: String,
    pub execution_name: String,
    pub cause: Option<String>,
    pub error: Option<String>,
    /// Sent as the `RequestId` query parameter: the service then uses it as the call's id,
    /// which lets a caller recognise its own earlier attempt.
    pub request_id: Option<String>,
}

/// ListExecutions' parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListRequest {
    pub flow_name: String,
    pub status: Option<String>,
    pub execution_name_prefix: Option<String>,
    /// UTC RFC 3339 (`2020-12-02T02:39:20.402Z`): executions started at or after this.
    pub started_time_begin: Option<String>,
    /// UTC RFC 3339: executions started at or before this.
    pub started_time_end: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_stop_response() {
        let body = r#"{"Status":"Running","StoppedTime":"2019-01-01T01:01:01.001Z","RequestId":"testRequestId",
            "StartedTime":"2019-01-01T01:01:01.001Z","FlowDefinition":"x","Output":"{\"key\":\"value\"}",
            "FlowName":"my_flow_name","Name":"my_exec_name","Input":"{\"key\":\"value\"}",
            "RoleArn":"acs:ram:${region}:${accountID}:${role}"}"#;
        let e: Execution = serde_json::from_str(body).unwrap();
        assert_eq!(e.status, ExecutionStatus::Running);
        assert_eq!(e.request_id.as_deref(), Some("testRequestId"));
        assert_eq!(e.stopped_time.as_deref(), Some("2019-01-01T01:01:01.001Z"));
        assert!(!e.status.is_final());
    }

    #[test]
    fn unknown_status_is_kept() {
        let e: Execution = serde_json::from_str(r#"{"Status":"Paused"}"#).unwrap();
        assert_eq!(e.status, ExecutionStatus::Other("Paused".into()));
        assert!(!e.status.is_final());
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"Status":"Paused"}"#);
    }

    #[test]
    fn final_statuses() {
        for s in ["Stopped", "Succeeded", "Failed", "TimedOut"] {
            assert!(ExecutionStatus::from(s).is_final(), "{s}");
        }
        for s in ["Starting", "Running"] {
            assert!(!ExecutionStatus::from(s).is_final(), "{s}");
        }
    }
}
