//! `kubectl flowstop get` and `kubectl flowstop describe`.

use crate::connect::Kube;
use crate::problem::Problem;
use crate::text::{safe, safe_json, safe_yaml};
use clap::{Args, ValueEnum};
use flowstop_api::ExecutionStop;
use flowstop_api::exit;
use flowstop_api::set::{ExecutionStopSet, SetPhase};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// One object's name (default: all in the namespace)
    pub name: Option<String>,
    /// Print the objects as JSON or YAML instead of a table
    #[arg(short = 'o', long)]
    pub output: Option<Output>,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The ExecutionStop (or, if there is none of that name, ExecutionStopSet)
    pub name: String,
}

pub async fn get(k: &Kube, a: GetArgs) -> Result<i32, Problem> {
    let (stops, sets) = listed(k, a.name.as_deref()).await?;
    match a.output {
        Some(format) => print_list(&stops, &sets, format),
        None => print_tables(k, &stops, &sets),
    }
    Ok(exit::STOPPED)
}

/// The namespace's ExecutionStops and ExecutionStopSets, or those named `name` (an error
/// when there are none: a name is a question about one object).
async fn listed(
    k: &Kube,
    name: Option<&str>,
) -> Result<(Vec<ExecutionStop>, Vec<ExecutionStopSet>), Problem> {
    let stops: Api<ExecutionStop> = Api::namespaced(k.client.clone(), &k.namespace);
    let sets: Api<ExecutionStopSet> = Api::namespaced(k.client.clone(), &k.namespace);
    let (mut s, mut t) = (
        list(k, &stops, "executionstops.flowstop.dev").await?,
        list(k, &sets, "executionstopsets.flowstop.dev").await?,
    );
    if let Some(name) = name {
        s.retain(|o| o.name_any() == name);
        t.retain(|o| o.name_any() == name);
        if s.is_empty() && t.is_empty() {
            return Err(Problem::error(format!(
                "no ExecutionStop or ExecutionStopSet {name} in namespace {}",
                k.namespace
            )));
        }
    }
    Ok((s, t))
}

/// `-o json|yaml`: one List of both kinds, as kubectl prints several objects.
fn print_list(s: &[ExecutionStop], t: &[ExecutionStopSet], format: Output) {
    let items: Vec<serde_json::Value> = s
        .iter()
        .map(|o| serde_json::to_value(o).expect("serializes"))
        .chain(
            t.iter()
                .map(|o| serde_json::to_value(o).expect("serializes")),
        )
        .collect();
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    print!("{}", render(&doc, format));
}

/// A table per kind that has objects, a blank line between them; a note on stderr when
/// there are none.
fn print_tables(k: &Kube, s: &[ExecutionStop], t: &[ExecutionStopSet]) {
    if !s.is_empty() {
        stops_table(s);
    }
    if !t.is_empty() {
        if !s.is_empty() {
            println!();
        }
        sets_table(t);
    }
    if s.is_empty() && t.is_empty() {
        eprintln!(
            "No ExecutionStops or ExecutionStopSets in namespace {}.",
            safe(&k.namespace)
        );
    }
}

fn stops_table(s: &[ExecutionStop]) {
    let rows = s.iter().map(|o| {
        let st = o.status.clone().unwrap_or_default();
        vec![
            o.name_any(),
            o.spec.flow_name.clone(),
            o.spec.execution_name.clone(),
            st.phase.map_or("Pending", |p| p.as_str()).to_string(),
            st.attempts.to_string(),
            st.last_error.map(|e| e.code).unwrap_or_default(),
        ]
    });
    table(
        &[
            "EXECUTIONSTOP",
            "FLOW",
            "EXECUTION",
            "PHASE",
            "ATTEMPTS",
            "ERROR",
        ],
        rows,
    );
}

fn sets_table(t: &[ExecutionStopSet]) {
    let rows = t.iter().map(|o| {
        let st = o.status.clone().unwrap_or_default();
        vec![
            o.name_any(),
            o.spec.flow_name.clone(),
            o.spec.dry_run.to_string(),
            st.phase.map_or("Pending", SetPhase::as_str).to_string(),
            st.matched.map(|m| m.to_string()).unwrap_or_default(),
            st.children.stopped.to_string(),
            st.children.failed.to_string(),
        ]
    });
    table(
        &[
            "EXECUTIONSTOPSET",
            "FLOW",
            "DRY RUN",
            "PHASE",
            "MATCHED",
            "STOPPED",
            "FAILED",
        ],
        rows,
    );
}

async fn list<K>(k: &Kube, api: &Api<K>, resource: &str) -> Result<Vec<K>, Problem>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| k.api_problem("list", resource, None, e))
}

/// The objects as they are (a program reading them gets the same values), but with no
/// control character written raw: see [`safe_json`].
fn render(v: &serde_json::Value, format: Output) -> String {
    match format {
        Output::Json => format!("{}\n", safe_json(v)),
        Output::Yaml => safe_yaml(v),
    }
}

fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    // Every cell comes from an object: shown safe, and measured as shown.
    let rows: Vec<Vec<String>> = rows
        .map(|r| r.iter().map(|c| safe(c).into_owned()).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub async fn describe(k: &Kube, a: DescribeArgs) -> Result<i32, Problem> {
    let stops: Api<ExecutionStop> = Api::namespaced(k.client.clone(), &k.namespace);
    let found = stops
        .get_opt(&a.name)
        .await
        .map_err(|e| k.api_problem("get", "executionstops.flowstop.dev", Some(&a.name), e))?;
    // An ExecutionStop of that name wins; only without one is a set looked up.
    let kind = if let Some(o) = found {
        describe_stop(k, &o);
        "ExecutionStop"
    } else {
        let sets: Api<ExecutionStopSet> = Api::namespaced(k.client.clone(), &k.namespace);
        let Some(o) = sets.get_opt(&a.name).await.map_err(|e| {
            k.api_problem("get", "executionstopsets.flowstop.dev", Some(&a.name), e)
        })?
        else {
            return Err(Problem::error(format!(
                "no ExecutionStop or ExecutionStopSet {} in namespace {}",
                a.name, k.namespace
            )));
        };
        describe_set(k, &o);
        "ExecutionStopSet"
    };
    events(k, &a.name, kind).await;
    Ok(exit::STOPPED)
}

fn describe_stop(k: &Kube, o: &ExecutionStop) {
    let s = o.status.clone().unwrap_or_default();
    println!(
        "ExecutionStop  {}/{}",
        safe(&k.namespace),
        safe(&o.name_any())
    );
    println!("Flow           {}", safe(&o.spec.flow_name));
    println!("Execution      {}", safe(&o.spec.execution_name));
    println!(
        "Phase          {}",
        s.phase.map_or("Pending", |p| p.as_str())
    );
    println!("Attempts       {}", s.attempts);
    if let Some(e) = &s.execution {
        println!(
            "Execution now  {}",
            safe(e.status.as_deref().unwrap_or("unknown"))
        );
    }
    if let Some(r) = &s.request_id {
        println!("Stopped by     request {}", safe(r));
    }
    if let Some(t) = &s.next_attempt_time {
        println!("Next attempt   {}", t.0);
    }
    last_error(s.last_error.as_ref());
    conditions(&s.conditions);
}

fn describe_set(k: &Kube, o: &ExecutionStopSet) {
    let s = o.status.clone().unwrap_or_default();
    let c = &s.children;
    println!(
        "ExecutionStopSet  {}/{}",
        safe(&k.namespace),
        safe(&o.name_any())
    );
    println!("Flow              {}", safe(&o.spec.flow_name));
    println!("Dry run           {}", o.spec.dry_run);
    println!("Max count         {}", o.spec.max_count);
    println!(
        "Phase             {}",
        s.phase.map_or("Pending", SetPhase::as_str)
    );
    if let Some(m) = s.matched {
        println!("Matched           {m}");
    }
    if let Some(t) = &s.snapshot_time {
        println!("Snapshot          {}", t.0);
    }
    println!(
        "Children          {} total: {} stopped, {} already finished, {} failed, {} in progress",
        c.total,
        c.stopped,
        c.already_finished,
        c.failed,
        c.total - c.finals()
    );
    if !s.first_matches.is_empty() {
        println!("First matches     {}", safe(&s.first_matches.join(", ")));
    }
    last_error(s.last_error.as_ref());
    conditions(&s.conditions);
}

/// The object's last ten Events, oldest first. Events that cannot be read are said so,
/// not an error: the object itself was shown.
async fn events(k: &Kube, name: &str, kind: &str) {
    let events: Api<Event> = Api::namespaced(k.client.clone(), &k.namespace);
    let selector = format!("involvedObject.name={name},involvedObject.kind={kind}");
    match events.list(&ListParams::default().fields(&selector)).await {
        Ok(list) => {
            let mut items = list.items;
            items.sort_by_key(|e| {
                e.event_time
                    .as_ref()
                    .map(|t| t.0)
                    .or(e.last_timestamp.as_ref().map(|t| t.0))
            });
            println!("Events:");
            if items.is_empty() {
                println!("  <none>");
            }
            for e in items.iter().rev().take(10).rev() {
                println!(
                    "  {:<8} {:<20} {}",
                    safe(e.type_.as_deref().unwrap_or("")),
                    safe(e.reason.as_deref().unwrap_or("")),
                    safe(e.message.as_deref().unwrap_or(""))
                );
            }
        }
        Err(e) => println!("Events:  not readable ({})", safe(&e.to_string())),
    }
}

fn last_error(e: Option<&flowstop_api::LastError>) {
    if let Some(e) = e {
        let status = e
            .http_status
            .map(|h| format!(" HTTP {h}"))
            .unwrap_or_default();
        let request = e
            .request_id
            .as_deref()
            .map(|r| format!(" request {r}"))
            .unwrap_or_default();
        println!(
            "Last error     {}{status}{}: {}",
            safe(&e.code),
            safe(&request),
            safe(&e.message)
        );
    }
}

fn conditions(cs: &[Condition]) {
    println!("Conditions:");
    for c in cs {
        println!(
            "  {:<12} {:<6} {:<20} {}",
            safe(&c.type_),
            safe(&c.status),
            safe(&c.reason),
            safe(&c.message)
        );
    }
}
