//! The fnf actions: parameters in, JSON answer (without `RequestId`) or error out.

use super::auth::param;
use super::error::ApiError;
use super::state::{Execution, Flow, State};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

pub type Params = [(String, String)];

pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    param(p, name).ok_or_else(|| ApiError::missing_param(name))
}

/// Flow and execution names: letters, digits, `_`, `-`; a letter or `_` first; 1–128.
fn name<'a>(p: &'a Params, field: &str) -> Result<&'a str, ApiError> {
    let v = required(p, field)?;
    let first_ok = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !first_ok || !rest_ok || v.len() > 128 {
        return Err(ApiError::invalid_argument(format!(
            "{field} {v:?} must match ^[A-Za-z_][A-Za-z0-9_-]{{0,127}}$"
        )));
    }
    Ok(v)
}

fn bounded<'a>(p: &'a Params, field: &str, max: usize) -> Result<Option<&'a str>, ApiError> {
    match param(p, field) {
        None => Ok(None),
        Some(v) if (1..=max).contains(&v.chars().count()) => Ok(Some(v)),
        Some(_) => Err(ApiError::invalid_argument(format!(
            "{field} must be 1 to {max} characters"
        ))),
    }
}

fn limit(p: &Params, max: u32) -> Result<usize, ApiError> {
    match param(p, "Limit") {
        None => Ok(60.min(max as usize)),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n as usize),
            _ => Err(ApiError::invalid_argument(format!(
                "Limit must be 1 to {max}"
            ))),
        },
    }
}

/// `StartedTimeBegin`/`StartedTimeEnd`: UTC RFC 3339, e.g. `2020-12-02T02:39:20.402Z`.
fn started_time(p: &Params, field: &str) -> Result<Option<Timestamp>, ApiError> {
    match param(p, field) {
        None => Ok(None),
        Some(v) => v.parse::<Timestamp>().map(Some).map_err(|_| {
            ApiError::invalid_argument(format!("{field} {v:?} is not a UTC RFC 3339 time"))
        }),
    }
}

pub fn execution_json(e: &Execution, flow: &Flow) -> Value {
    let mut v = json!({
        "Name": e.name,
        "FlowName": e.flow,
        "FlowDefinition": flow.definition,
        "Input": e.input,
        "Status": e.status,
        "StartedTime": time(e.started),
    });
    if let Some(t) = e.stopped {
        v["StoppedTime"] = time(t).into();
    }
    if let Some(o) = &e.output {
        v["Output"] = o.clone().into();
    }
    if let Some(r) = &flow.role_arn {
        v["RoleArn"] = r.clone().into();
    }
    v
}

fn flow_json(f: &Flow) -> Value {
    json!({
        "Name": f.name, "Id": f.id, "Definition": f.definition, "Description": f.description,
        "Type": "FDL", "RoleArn": f.role_arn.clone().unwrap_or_default(),
        "CreatedTime": time(f.created), "LastModifiedTime": time(f.modified), "ExecutionMode": f.execution_mode,
    })
}

/// Settings that shape answers.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// StopExecution answers Running and the stop lands after this delay.
    pub async_stop: Option<SignedDuration>,
}

/// One action: its parameters, the state, the time of the request and the settings that
/// shape answers.
type Action = fn(&Params, &mut State, Timestamp, &Behaviour) -> Result<Value, ApiError>;

/// The actions the emulator serves, by name: the one list both `run` and `supported` read.
const ACTIONS: &[(&str, Action)] = &[
    ("CreateFlow", create_flow),
    ("DescribeFlow", describe_flow),
    ("DeleteFlow", delete_flow),
    ("ListFlows", list_flows),
    ("StartExecution", start_execution),
    ("StopExecution", stop_execution),
    ("DescribeExecution", describe_execution),
    ("ListExecutions", list_executions),
    ("GetExecutionHistory", get_execution_history),
];

/// Whether the emulator serves `action` (the gateway refuses the others before
/// authentication).
pub fn supported(action: &str) -> bool {
    ACTIONS.iter().any(|(name, _)| *name == action)
}

/// Runs `action` on the state, by the table above.
pub fn run(
    action: &str,
    p: &Params,
    s: &mut State,
    now: Timestamp,
    b: &Behaviour,
) -> Result<Value, ApiError> {
    match ACTIONS.iter().find(|(name, _)| *name == action) {
        Some((_, act)) => act(p, s, now, b),
        None => Err(ApiError::action_not_supported(action)),
    }
}

fn create_flow(
    p: &Params,
    s: &mut State,
    now: Timestamp,
    _: &Behaviour,
) -> Result<Value, ApiError> {
    let flow = name(p, "Name")?;
    let definition = required(p, "Definition")?;
    if s.flows.contains_key(flow) {
        return Err(ApiError::flow_exists(flow));
    }
    let f = Flow {
        id: format!("{:032x}", rand::random::<u128>()),
        name: flow.into(),
        definition: definition.into(),
        description: param(p, "Description").unwrap_or_default().into(),
        role_arn: param(p, "RoleArn").map(String::from),
        execution_mode: param(p, "ExecutionMode").unwrap_or("Standard").into(),
        created: now,
        modified: now,
    };
    let v = flow_json(&f);
    s.flows.insert(flow.into(), f);
    Ok(v)
}

fn describe_flow(
    p: &Params,
    s: &mut State,
    _: Timestamp,
    _: &Behaviour,
) -> Result<Value, ApiError> {
    Ok(flow_json(s.flow(name(p, "Name")?)?))
}

/// Deleting a flow deletes its executions too.
fn delete_flow(p: &Params, s: &mut State, _: Timestamp, _: &Behaviour) -> Result<Value, ApiError> {
    let flow = name(p, "Name")?;
    s.flow(flow)?;
    s.flows.remove(flow);
    s.executions.retain(|(f, _), _| f != flow);
    Ok(json!({}))
}

/// Flows in name order; the NextToken is the name of the first flow of the next page.
fn list_flows(p: &Params, s: &mut State, _: Timestamp, _: &Behaviour) -> Result<Value, ApiError> {
    let limit = limit(p, 100)?;
    let from = param(p, "NextToken").unwrap_or("");
    let page: Vec<&Flow> = s
        .flows
        .values()
        .filter(|f| f.name.as_str() >= from)
        .take(limit + 1)
        .collect();
    let mut v = json!({"Flows": page.iter().take(limit).map(|f| flow_json(f)).collect::<Vec<_>>()});
    if page.len() > limit {
        v["NextToken"] = page[limit].name.clone().into();
    }
    Ok(v)
}

/// Without an ExecutionName the execution gets a random one.
fn start_execution(
    p: &Params,
    s: &mut State,
    now: Timestamp,
    _: &Behaviour,
) -> Result<Value, ApiError> {
    let flow = name(p, "FlowName")?;
    let exec = match param(p, "ExecutionName") {
        Some(_) => name(p, "ExecutionName")?.to_string(),
        None => format!("{:032x}", rand::random::<u128>()),
    };
    let input = param(p, "Input").unwrap_or("{}");
    if serde_json::from_str::<serde_json::Map<String, Value>>(input).is_err() {
        return Err(ApiError::invalid_argument("Input must be a JSON object"));
    }
    let e = s.start(flow, &exec, input, now)?.clone();
    Ok(execution_json(&e, s.flow(flow)?))
}

/// With `Behaviour::async_stop`, the answer says Running and the stop lands later.
fn stop_execution(
    p: &Params,
    s: &mut State,
    now: Timestamp,
    b: &Behaviour,
) -> Result<Value, ApiError> {
    let flow = name(p, "FlowName")?;
    let exec = name(p, "ExecutionName")?;
    let error = bounded(p, "Error", 128)?.unwrap_or_default();
    let cause = bounded(p, "Cause", 4096)?.unwrap_or_default();
    let e = s.execution_mut(flow, exec, now)?;
    e.stop(now, error, cause, b.async_stop)?;
    let e = e.clone();
    Ok(execution_json(&e, s.flow(flow)?))
}

fn describe_execution(
    p: &Params,
    s: &mut State,
    now: Timestamp,
    _: &Behaviour,
) -> Result<Value, ApiError> {
    let flow = name(p, "FlowName")?;
    let exec = name(p, "ExecutionName")?;
    let e = s.execution_mut(flow, exec, now)?.clone();
    Ok(execution_json(&e, s.flow(flow)?))
}

/// A flow's executions in name order, filtered by status, name prefix and start time; the
/// NextToken is the name of the first execution of the next page.
fn list_executions(
    p: &Params,
    s: &mut State,
    now: Timestamp,
    _: &Behaviour,
) -> Result<Value, ApiError> {
    let flow = name(p, "FlowName")?;
    let f = s.flow(flow)?.clone();
    let limit = limit(p, 100)?;
    let status = execution_status(p)?;
    let prefix = param(p, "ExecutionNamePrefix").unwrap_or("");
    let begin = started_time(p, "StartedTimeBegin")?;
    let end = started_time(p, "StartedTimeEnd")?;
    let from = param(p, "NextToken").unwrap_or("");
    let mut page = vec![];
    for ((fl, n), e) in s.executions.iter_mut() {
        if fl != flow || n.as_str() < from || !n.starts_with(prefix) {
            continue;
        }
        // Listed executions are brought up to date first, as a describe would.
        e.advance(now);
        let in_window = begin.is_none_or(|b| e.started >= b) && end.is_none_or(|t| e.started <= t);
        if in_window && status.is_none_or(|st| st == e.status) {
            page.push(e.clone());
            if page.len() > limit {
                break;
            }
        }
    }
    let mut v = json!({"Executions": page.iter().take(limit).map(|e| execution_json(e, &f)).collect::<Vec<_>>()});
    if page.len() > limit {
        v["NextToken"] = page[limit].name.clone().into();
    }
    Ok(v)
}

/// ListExecutions' optional `Status` filter: one of the execution statuses.
fn execution_status(p: &Params) -> Result<Option<&str>, ApiError> {
    let status = param(p, "Status");
    if let Some(st) = status {
        if ![
            "Starting",
            "Running",
            "Stopped",
            "Succeeded",
            "Failed",
            "TimedOut",
        ]
        .contains(&st)
        {
            return Err(ApiError::invalid_argument(format!(
                "Status {st:?} is not an execution status"
            )));
        }
    }
    Ok(status)
}

/// An execution's events from an event id on; the NextToken is the id of the first event
/// of the next page.
fn get_execution_history(
    p: &Params,
    s: &mut State,
    now: Timestamp,
    _: &Behaviour,
) -> Result<Value, ApiError> {
    let flow = name(p, "FlowName")?;
    let exec = name(p, "ExecutionName")?;
    let limit = limit(p, 1000)?;
    let from: i64 = match param(p, "NextToken") {
        None => 1,
        Some(t) => t
            .parse()
            .map_err(|_| ApiError::invalid_argument("NextToken"))?,
    };
    let e = s.execution_mut(flow, exec, now)?;
    let events: Vec<Value> = e
        .events
        .iter()
        .filter(|ev| ev.id >= from)
        .take(limit)
        .map(|ev| {
            json!({"Type": ev.kind, "EventId": ev.id, "ScheduleEventId": ev.id, "StepName": "",
                   "Time": time(ev.time), "EventDetail": ev.detail})
        })
        .collect();
    let mut v = json!({"Events": events});
    if let Some(next) = e.events.iter().find(|ev| ev.id >= from + limit as i64) {
        v["NextToken"] = next.id.to_string().into();
    }
    Ok(v)
}
