//! Floors: what an object costs at the very least on this machine, measured in the same
//! run against the same kube-apiserver and emulator by a bare client with no operator.
//! The operator's figures are reported as ratios to these, so they hold on any CPU.

use crate::env::{AK, Emulator, Env, SK, Watch, estop};
use flowstop::crd::ExecutionStop;
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MANAGER: &str = "flowstop-floor";

/// The bare client: the same apiserver (admin) and the same emulator as the operator.
pub struct Bare {
    api: Api<ExecutionStop>,
    events: Api<Event>,
    fnf: fnf::Client,
    account: fnf::Account,
}

impl Bare {
    pub fn new(env: &Env, emu: &Emulator, ns: &str) -> anyhow::Result<Bare> {
        Ok(Bare {
            api: Api::namespaced(env.client.clone(), ns),
            events: Api::namespaced(env.client.clone(), ns),
            fnf: fnf::Client::new(
                fnf::http_client(Duration::from_secs(2), Duration::from_secs(10)),
                Duration::from_secs(10),
            ),
            account: fnf::Account {
                endpoint: fnf::Endpoint::url(&emu.url, false)?,
                credentials: fnf::Credentials::new(AK, SK, None),
            },
        })
    }

    /// Server-side apply of a status, conditional on `resource_version`, as the operator
    /// writes it; returns the new resourceVersion.
    async fn status(
        &self,
        name: &str,
        resource_version: &str,
        status: Value,
    ) -> anyhow::Result<String> {
        let patch = json!({
            "apiVersion": "flowstop.dev/v1alpha1",
            "kind": "ExecutionStop",
            "metadata": {"resourceVersion": resource_version},
            "status": status,
        });
        let o = self
            .api
            .patch_status(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(o.resource_version().unwrap_or_default())
    }

    /// The operator's minimum for an object that exists: record the attempt, stop the
    /// execution, record the outcome, and (when `event`) publish one Event.
    async fn stop(&self, created: &ExecutionStop, event: bool) -> anyhow::Result<()> {
        let name = created.name_any();
        let uid = created.uid().unwrap_or_default();
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let rv = self
            .status(
                &name,
                &created.resource_version().unwrap_or_default(),
                status("Stopping", "Stopping", "calling StopExecution (attempt 1)", &now, json!({
                    "attempts": 1, "lastAttemptTime": now, "pendingRequestId": format!("{uid}-1"),
                })),
            )
            .await?;
        let e = self
            .fnf
            .stop_execution(
                &self.account,
                &fnf::StopRequest {
                    flow_name: created.spec.flow_name.clone(),
                    execution_name: created.spec.execution_name.clone(),
                    request_id: Some(format!("{uid}-1")),
                    ..Default::default()
                },
            )
            .await?;
        self.status(
            &name,
            &rv,
            status("Stopped", "Stopped", "execution stopped", &now, json!({
                "attempts": 1, "lastAttemptTime": now, "requestId": e.request_id,
                "execution": {"status": e.status.as_str(), "startedTime": e.started_time, "stoppedTime": e.stopped_time},
            })),
        )
        .await?;
        if event {
            self.events
                .create(&PostParams::default(), &stopped_event(created, &now)?)
                .await?;
        }
        Ok(())
    }
}

/// A status of the operator's shape and size: phase, the three conditions, and `extra`.
fn status(phase: &str, reason: &str, message: &str, now: &str, extra: Value) -> Value {
    let final_ = phase == "Stopped";
    let cond = |type_: &str, on: bool| {
        json!({"type": type_, "status": if on { "True" } else { "False" }, "reason": reason,
               "message": message, "observedGeneration": 1, "lastTransitionTime": now})
    };
    let mut s = json!({
        "phase": phase,
        "observedGeneration": 1,
        "conditions": [cond("Ready", final_), cond("Reconciling", !final_), cond("Stalled", false)],
    });
    // Absent fields stay absent, as the operator's status omits them (the schema has no nulls).
    fn without_nulls(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k, without_nulls(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    if let (Some(s), Value::Object(extra)) = (s.as_object_mut(), without_nulls(extra)) {
        s.extend(extra);
    }
    s
}

fn stopped_event(o: &ExecutionStop, now: &str) -> anyhow::Result<Event> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("{}.floor", o.name_any())},
        "eventTime": now.replace('Z', ".000000Z"),
        "reportingController": "flowstop-floor",
        "reportingInstance": "floor",
        "action": "StopExecution",
        "reason": "Stopped",
        "type": "Normal",
        "note": "execution stopped",
        "regarding": {"apiVersion": "flowstop.dev/v1alpha1", "kind": "ExecutionStop",
                      "namespace": o.namespace(), "name": o.name_any(), "uid": o.uid()},
    }))?)
}

impl Bare {
    /// One object's create → final status seen on `watch` (of this client's namespace).
    pub async fn latency_one(
        &self,
        watch: &Watch,
        name: &str,
        execution: &str,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let created = self
            .api
            .create(&PostParams::default(), &estop(name, execution))
            .await?;
        self.stop(&created, false).await?;
        let done = watch
            .all_done(&[name.to_string()], Duration::from_secs(30))
            .await?;
        Ok(done - t0)
    }
}

/// `n` objects created with 64 requests in flight while `concurrency` workers make each
/// one's writes and call, as the operator's burst does: objects per second.
pub async fn burst(env: &Env, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    let emu = Emulator::start(&["--no-quota"]).await?;
    emu.executions("burstfloor", n).await?;
    let ns = env.namespace("burstfloor").await?;
    let bare = Arc::new(Bare::new(env, &emu, &ns)?);
    let watch = Watch::start(&env.client, &ns).await;
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ExecutionStop>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (bare, rx) = (bare.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let Some(created) = rx.lock().await.recv().await else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    bare.stop(&created, true).await?;
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    let creates: Vec<anyhow::Result<()>> = futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let (bare, tx) = (bare.clone(), tx.clone());
            async move {
                let o = bare
                    .api
                    .create(
                        &PostParams::default(),
                        &estop(name, &format!("burstfloor-{i}")),
                    )
                    .await?;
                tx.send(o).map_err(|_| anyhow::anyhow!("workers gone"))?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    drop(tx);
    creates.into_iter().collect::<anyhow::Result<()>>()?;
    for w in workers {
        w.await??;
    }
    let done = watch.all_done(&names, Duration::from_secs(600)).await?;
    Ok(n as f64 / (done - t0).as_secs_f64())
}
