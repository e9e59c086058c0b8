//! GitOps with the real controllers (issue 27): Argo CD v3.6.2 and Flux v1.9.6, built from
//! their Go modules (crates/testkit/gitops), reconcile flowstop's objects from a git
//! repository that each test pushes to over smart HTTP, as a user does, on a control
//! plane of their own that runs the garbage collector (`testkit::gitops`). The layouts of
//! examples/gitops/ are applied as they are, with only the repository URL, the namespace
//! and the Application's name put in.
//!
//! Orders ("before", "after") are read from the API server itself: a watch sees every
//! write with its resourceVersion, etcd's revision, one counter for the whole store.
//! creationTimestamp has a one-second grain, so it can confirm an order but not prove it.

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::cloud::Cloud;
use testkit::gitops::{
    ArgoCd, Repo, argocd, argocd_without_health_checks, flux, git_server, plane,
};
use testkit::operator::repo as repo_path;

/// The repository URL the examples name; tests put their git server's in its place.
const EXAMPLE_URL: &str = "https://git.example.com/platform/flows.git";

/// (kind, group, version, plural)
type Kind = (&'static str, &'static str, &'static str, &'static str);
const ESTOP: Kind = (
    "ExecutionStop",
    "flowstop.dev",
    "v1alpha1",
    "executionstops",
);
const ESTOPSET: Kind = (
    "ExecutionStopSet",
    "flowstop.dev",
    "v1alpha1",
    "executionstopsets",
);
const CONFIGMAP: Kind = ("ConfigMap", "", "v1", "configmaps");
const KUSTOMIZATION: Kind = (
    "Kustomization",
    "kustomize.toolkit.fluxcd.io",
    "v1",
    "kustomizations",
);

/// One write to an object, as a watch saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// resourceVersion: etcd's revision of this write.
    rv: u64,
    kind: &'static str,
    name: String,
    deleted: bool,
    obj: Value,
}

/// The drain came first: the set was seen Completed, and each of `running` stopped once
/// and seen Stopped, before the definition was created — by the API server's order of
/// writes and by the emulator's clock (to creationTimestamp's one-second grain) — and
/// the other flow's execution runs on, with three StopExecution calls in all.
async fn drained_before_the_definition(rec: &Recorder, cloud: &Cloud, running: &[&str]) {
    let created = rec
        .first("ConfigMap", |s| s.name == "etl-pipeline-definition")
        .expect("the definition was seen");
    let completed = rec
        .first("ExecutionStopSet", |s| {
            s.obj["status"]["phase"] == "Completed"
        })
        .expect("the set was seen Completed");
    assert!(
        completed.rv < created.rv,
        "the definition (rv {}) was applied before the set Completed (rv {})",
        created.rv,
        completed.rv
    );
    let stops = rec.all("ExecutionStop");
    for &e in running {
        assert_eq!(
            execution(cloud, "etl-pipeline", e).await,
            ("Stopped".into(), 1),
            "{e}"
        );
        let stopped = stops
            .iter()
            .find(|s| s.obj["spec"]["executionName"] == e && s.obj["status"]["phase"] == "Stopped")
            .unwrap_or_else(|| panic!("no ExecutionStop of {e} seen Stopped: {stops:#?}"));
        assert!(
            stopped.rv < created.rv,
            "{e} was recorded Stopped after the definition was applied"
        );
        let at = stopped_at(cloud, "etl-pipeline", e);
        assert!(
            at.as_second() <= creation(&created.obj).as_second(),
            "{e} stopped at {at}, the definition was created at {}",
            creation(&created.obj)
        );
    }
    assert_eq!(
        execution(cloud, "other", "keeps-running").await,
        ("Running".into(), 0)
    );
    assert_eq!(stop_calls(cloud), 3);
}

/// Every write to objects of some kinds in one namespace, in the API server's order.
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Recorder {
    /// Watches each kind in `ns`; returns once every watch has listed what exists.
    async fn start(ns: &str, kinds: &[Kind]) -> Recorder {
        let client = plane().cluster.client().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = vec![];
        for &(kind, group, version, plural) in kinds {
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind),
                plural,
            );
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let (ready, listed) = tokio::sync::oneshot::channel();
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                let mut ready = Some(ready);
                let mut events = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = events.next().await {
                    let (obj, deleted) = match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                        Ok(watcher::Event::Delete(o)) => (o, true),
                        Ok(watcher::Event::InitDone) => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(());
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    let rv = obj
                        .metadata
                        .resource_version
                        .as_deref()
                        .unwrap_or("0")
                        .parse()
                        .unwrap_or(0);
                    seen.lock().unwrap().push(Seen {
                        rv,
                        kind,
                        name: obj.metadata.name.clone().unwrap_or_default(),
                        deleted,
                        obj: serde_json::to_value(&obj).unwrap(),
                    });
                }
            }));
            tokio::time::timeout(Duration::from_secs(30), listed)
                .await
                .expect("a watch lists within 30 s")
                .expect("the watch runs");
        }
        Recorder { seen, tasks }
    }

    /// The first write seen of `kind` for which `pred` holds (lowest resourceVersion).
    fn first(&self, kind: &str, pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.kind == kind && !s.deleted && pred(s))
            .min_by_key(|s| s.rv)
            .cloned()
    }

    fn all(&self, kind: &str) -> Vec<Seen> {
        let mut v: Vec<Seen> = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.kind == kind)
            .cloned()
            .collect();
        v.sort_by_key(|s| s.rv);
        v
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is_true(obj: &Value, type_: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == "True")
}

/// `kubectl get RESOURCE NAME -o json`, None when it does not exist.
fn get(ns: &str, resource: &str, name: &str) -> Option<Value> {
    let out = plane()
        .cluster
        .kubectl(&["get", "-n", ns, resource, name, "-o", "json"], None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn must_get(ns: &str, resource: &str, name: &str) -> Value {
    get(ns, resource, name).unwrap_or_else(|| panic!("no {resource} {ns}/{name}"))
}

/// Polls `probe` (bounded) until it returns something; `context` explains a timeout.
async fn until<T>(
    what: &str,
    seconds: u64,
    mut probe: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "never, within {seconds} s: {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A file of examples/gitops with the test's repository, namespace and Argo CD instance
/// put in place of the example's.
fn example(path: &str, ns: &str, repo_url: &str, argo: Option<&ArgoCd>) -> String {
    let text = std::fs::read_to_string(repo_path(&format!("examples/gitops/{path}"))).unwrap();
    let mut text = text
        .replace(EXAMPLE_URL, repo_url)
        .replace("namespace: data", &format!("namespace: {ns}"))
        .replace("targetNamespace: data", &format!("targetNamespace: {ns}"));
    if let Some(argo) = argo {
        // The Application: named after the test's namespace, in the instance's namespace.
        text = text.replace(
            "  name: etl-pipeline\n  namespace: argocd\n",
            &format!("  name: {ns}\n  namespace: {}\n", argo.namespace),
        );
    }
    text
}

/// Writes examples/gitops/ into the repository at the same path (`edit` may change a
/// file on the way) and pushes it; the commit's id.
fn push_examples(repo: &Repo, message: &str, edit: impl Fn(&str, String) -> String) -> String {
    let root = repo_path("examples/gitops");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let text = edit(&rel, std::fs::read_to_string(&path).unwrap());
                repo.write(&format!("examples/gitops/{rel}"), &text);
            }
        }
    }
    repo.commit(message)
}

fn stop_calls(cloud: &Cloud) -> u64 {
    cloud.calls("StopExecution")
}

/// (status, stopCalls) of an execution, from the emulator.
async fn execution(cloud: &Cloud, flow: &str, name: &str) -> (String, u64) {
    let all = cloud.executions().await;
    let e = all
        .iter()
        .find(|e| e["flow"] == flow && e["name"] == name)
        .unwrap_or_else(|| panic!("no execution {flow}/{name}"));
    (
        e["status"].as_str().unwrap().to_string(),
        e["stopCalls"].as_u64().unwrap(),
    )
}

/// When the emulator stopped an execution.
fn stopped_at(cloud: &Cloud, flow: &str, name: &str) -> jiff::Timestamp {
    let emu = cloud.emu.emulator.lock();
    emu.state.executions[&(flow.to_string(), name.to_string())]
        .stopped
        .unwrap_or_else(|| panic!("{flow}/{name} was not stopped"))
}

fn creation(obj: &Value) -> jiff::Timestamp {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Flux

fn flux_source(ns: &str, url: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: flows, namespace: {ns}}}\n\
         spec: {{interval: 1m, url: '{url}', ref: {{branch: main}}}}\n"
    )
}

fn kustomization(ns: &str, name: &str, path: &str, extra: &str) -> String {
    format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  interval: 10m\n  path: {path}\n  targetNamespace: {ns}\n  prune: true\n  sourceRef: {{kind: GitRepository, name: flows}}\n{extra}"
    )
}

fn ready_is(obj: &Value, status: &str) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == status)
}

/// The Ready condition is False with this reason.
fn reason_is(obj: &Value, reason: &str) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == "False" && c["reason"] == reason)
}

fn flux_context(ns: &str) -> impl Fn() -> String {
    let ns = ns.to_string();
    move || {
        let objects = plane().cluster.kubectl(
            &[
                "get",
                "-n",
                &ns,
                "gitrepository,kustomization,estop,estopset,cm",
                "-o",
                "yaml",
            ],
            None,
        );
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&objects.stdout),
            flux().logs()
        )
    }
}

/// Issue 27, scenarios 4 and 7: a Kustomization with `wait: true` over a brand-new
/// ExecutionStop. Until the operator writes status, kstatus calls the object InProgress
/// (never Current: the CRD defaults observedGeneration to 0, below generation 1), so the
/// health check times out naming it; once the operator made it Ready, the Kustomization is
/// Ready, and only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_wait_is_ready_only_after_the_stop_is_and_kstatus_never_calls_a_new_one_current() {
    let p = plane();
    let c = &p.cluster;
    flux();
    let (ns, cloud) = p.setup("flux-wait", &["f"]).await;
    cloud.start("f", "e1", None).await;
    let repo = git_server().repo(&ns);
    repo.write(
        "stop/stop.yaml",
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStop\nmetadata: {name: stop-e1}\n\
         spec: {flowName: f, executionName: e1, credentialsSecretRef: {name: fnf-credentials}}\n",
    );
    repo.commit("stop e1 of f");
    let rec = Recorder::start(&ns, &[ESTOP, KUSTOMIZATION]).await;
    c.apply(&flux_source(&ns, &repo.url));
    c.apply(&kustomization(
        &ns,
        "stops",
        "./stop",
        "  wait: true\n  timeout: 10s\n  retryInterval: 2s\n",
    ));

    // No operator watches this namespace yet: the health check runs out, naming the stop
    // as InProgress.
    let ks = until(
        "the Kustomization's health check times out",
        90,
        || get(&ns, "kustomization", "stops").filter(|k| reason_is(k, "HealthCheckFailed")),
        flux_context(&ns),
    )
    .await;
    let ready = condition(&ks, "Ready").unwrap();
    assert_eq!(ready["reason"], "HealthCheckFailed", "{ks:#}");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "timeout waiting for: [ExecutionStop/{ns}/stop-e1 status: 'InProgress']"
        )),
        "{message}"
    );
    let stop = must_get(&ns, "estop", "stop-e1");
    assert_eq!(stop["status"]["observedGeneration"], 0, "{stop:#}");
    assert!(
        stop["status"]["phase"].is_null(),
        "the operator wrote already: {stop:#}"
    );
    assert!(
        rec.first("Kustomization", |s| is_true(&s.obj, "Ready"))
            .is_none(),
        "Ready before anything stopped: {:#?}",
        rec.all("Kustomization")
    );
    assert_eq!(stop_calls(&cloud), 0);

    let _op = p.operator(&ns, &cloud).await;
    let ks = until(
        "the Kustomization is Ready",
        90,
        || get(&ns, "kustomization", "stops").filter(|k| ready_is(k, "True")),
        flux_context(&ns),
    )
    .await;
    let ready = condition(&ks, "Ready").unwrap();
    assert_eq!(ready["reason"], "ReconciliationSucceeded", "{ks:#}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("Applied revision: main@sha1:"),
        "{ks:#}"
    );
    let stop_ready = rec
        .first("ExecutionStop", |s| is_true(&s.obj, "Ready"))
        .expect("the stop became Ready");
    let ks_ready = rec
        .first("Kustomization", |s| is_true(&s.obj, "Ready"))
        .expect("the Kustomization became Ready");
    assert!(
        stop_ready.rv < ks_ready.rv,
        "the Kustomization was Ready (rv {}) before the stop (rv {})",
        ks_ready.rv,
        stop_ready.rv
    );
    assert_eq!(stop_ready.obj["status"]["phase"], "Stopped");
    assert_eq!(execution(&cloud, "f", "e1").await, ("Stopped".into(), 1));
}

/// Issue 27, scenario 4, with examples/gitops/flux as it is: the definition's
/// Kustomization `dependsOn` the drain's, so the definition is applied only after the
/// set Completed, every matching execution stopped before it existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_drain_applies_the_definition_only_after_the_set_completed() {
    let p = plane();
    let c = &p.cluster;
    flux();
    let (ns, cloud) = p.setup("flux-drain", &["etl-pipeline", "other"]).await;
    let running = ["nightly-1", "nightly-2", "nightly-3"];
    for e in running {
        cloud.start("etl-pipeline", e, None).await;
    }
    cloud.start("other", "keeps-running", None).await;
    let _op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    push_examples(&repo, "etl-pipeline v2, drained first", |_, t| t);
    let rec = Recorder::start(&ns, &[ESTOPSET, ESTOP, CONFIGMAP]).await;
    c.apply(&example("flux/sync.yaml", &ns, &repo.url, None));

    let definition = until(
        "both Kustomizations are Ready and the definition is applied",
        120,
        || {
            let drain = get(&ns, "kustomization", "etl-pipeline-drain")?;
            let app = get(&ns, "kustomization", "etl-pipeline")?;
            (ready_is(&drain, "True") && ready_is(&app, "True")).then_some(())?;
            get(&ns, "configmap", "etl-pipeline-definition")
        },
        flux_context(&ns),
    )
    .await;
    assert_eq!(definition["data"]["version"], "2");
    let set = must_get(&ns, "estopset", "etl-pipeline-drain-v2");
    assert_eq!(set["status"]["phase"], "Completed", "{set:#}");
    assert_eq!(set["status"]["matched"], 3, "{set:#}");

    drained_before_the_definition(&rec, &cloud, &running).await;
}

/// Issue 27, scenario 4: a drain that cannot complete (more executions match than
/// `maxCount`: the set fails, TooManyMatches, and stops nothing) fails its Kustomization
/// at once with HealthCheckFailed naming the set, and the definition is never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_a_stalled_drain_fails_its_health_check_naming_the_set_and_holds_the_definition_back()
{
    let p = plane();
    let c = &p.cluster;
    flux();
    let (ns, cloud) = p.setup("flux-stalled", &["etl-pipeline"]).await;
    for e in ["nightly-1", "nightly-2", "nightly-3"] {
        cloud.start("etl-pipeline", e, None).await;
    }
    let _op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    // A user's mistake: a cap below what is running.
    push_examples(&repo, "drain with too small a cap", |rel, t| {
        if rel == "flux/drain/drain.yaml" {
            t.replace("maxCount: 100", "maxCount: 2")
        } else {
            t
        }
    });
    c.apply(&example("flux/sync.yaml", &ns, &repo.url, None));

    let drain = until(
        "the drain's Kustomization fails",
        120,
        || {
            get(&ns, "kustomization", "etl-pipeline-drain")
                .filter(|k| reason_is(k, "HealthCheckFailed"))
        },
        flux_context(&ns),
    )
    .await;
    let ready = condition(&drain, "Ready").unwrap();
    assert_eq!(ready["reason"], "HealthCheckFailed", "{drain:#}");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "ExecutionStopSet/{ns}/etl-pipeline-drain-v2 status: 'Failed'"
        )),
        "{message}"
    );
    let set = must_get(&ns, "estopset", "etl-pipeline-drain-v2");
    assert_eq!(set["status"]["phase"], "Failed", "{set:#}");
    assert_eq!(
        condition(&set, "Ready").unwrap()["reason"],
        "TooManyMatches",
        "{set:#}"
    );

    let app = until(
        "the definition's Kustomization reports its dependency",
        60,
        || get(&ns, "kustomization", "etl-pipeline").filter(|k| reason_is(k, "DependencyNotReady")),
        flux_context(&ns),
    )
    .await;
    let ready = condition(&app, "Ready").unwrap();
    assert_eq!(ready["reason"], "DependencyNotReady", "{app:#}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("etl-pipeline-drain"),
        "{app:#}"
    );
    assert!(app["status"]["lastAppliedRevision"].is_null(), "{app:#}");
    assert!(get(&ns, "configmap", "etl-pipeline-definition").is_none());
    assert_eq!(stop_calls(&cloud), 0);
}

// ---------------------------------------------------------------------------------------
// Argo CD

fn application(argo: &ArgoCd, name: &str) -> Option<Value> {
    get(argo.namespace, "application", name)
}

fn argo_context(argo: &'static ArgoCd, ns: &str) -> impl Fn() -> String {
    let ns = ns.to_string();
    move || {
        let app = application(argo, &ns)
            .map(|a| format!("{:#}", a["status"]))
            .unwrap_or_default();
        let objects = plane()
            .cluster
            .kubectl(&["get", "-n", &ns, "estop,estopset,cm", "-o", "wide"], None);
        format!(
            "{app}\n{}\n{}",
            String::from_utf8_lossy(&objects.stdout),
            argo.logs()
        )
    }
}

/// The health Argo CD shows for one resource of an Application: (status, message).
fn resource_health(app: &Value, kind: &str, name: &str) -> Option<(String, String)> {
    let r = app["status"]["resources"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)?;
    Some((
        r["health"]["status"].as_str()?.to_string(),
        r["health"]["message"].as_str().unwrap_or("").to_string(),
    ))
}

fn app_health(app: &Value) -> &str {
    app["status"]["health"]["status"].as_str().unwrap_or("")
}

/// `reason: message` of an object's Ready condition, as flowstop's health checks show it.
fn ready_text(obj: &Value) -> String {
    let c = condition(obj, "Ready").unwrap_or_else(|| panic!("no Ready condition: {obj:#}"));
    format!(
        "{}: {}",
        c["reason"].as_str().unwrap(),
        c["message"].as_str().unwrap()
    )
}

/// The Application of a test: `path` of its repository, automated sync with prune.
fn application_yaml(argo: &ArgoCd, ns: &str, url: &str, path: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {ns}, namespace: {}}}\n\
         spec:\n  project: default\n  source: {{repoURL: '{url}', targetRevision: main, path: {path}}}\n\
         \x20 destination: {{server: 'https://kubernetes.default.svc', namespace: {ns}}}\n\
         \x20 syncPolicy: {{automated: {{prune: true}}}}\n",
        argo.namespace
    )
}

fn stop_yaml(name: &str, flow: &str, execution: &str) -> String {
    format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStop\nmetadata: {{name: {name}}}\n\
         spec: {{flowName: {flow}, executionName: {execution}, maxAttempts: 100, credentialsSecretRef: {{name: fnf-credentials}}}}\n"
    )
}

/// Issue 27, scenario 1: an Application over one ExecutionStop is Progressing while the
/// stop is not final (before the operator writes, and while it retries), Healthy once it
/// is, and Degraded when a stop ends Failed; each resource's health message is its Ready
/// condition's reason and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_shows_a_stop_progressing_until_final_then_healthy_and_a_failed_one_degraded() {
    let p = plane();
    let c = &p.cluster;
    let argo = argocd();
    let (ns, cloud) = p.setup("argo-health", &["f"]).await;
    cloud.start("f", "e1", None).await;
    let repo = git_server().repo(&ns);
    repo.write("stops/e1.yaml", &stop_yaml("stop-e1", "f", "e1"));
    repo.commit("stop e1");
    c.apply(&application_yaml(argo, &ns, &repo.url, "stops"));
    let ctx = argo_context(argo, &ns);

    // Synced, and no operator yet: Progressing, waiting for it.
    let app = until(
        "the Application is synced and Progressing",
        90,
        || {
            application(argo, &ns).filter(|a| {
                a["status"]["sync"]["status"] == "Synced"
                    && resource_health(a, "ExecutionStop", "stop-e1").is_some()
            })
        },
        &ctx,
    )
    .await;
    assert_eq!(app_health(&app), "Progressing", "{:#}", app["status"]);
    assert_eq!(
        resource_health(&app, "ExecutionStop", "stop-e1").unwrap(),
        (
            "Progressing".into(),
            "Waiting for the flowstop operator".into()
        )
    );

    // The service fails every StopExecution for now: Retrying, still Progressing. Argo CD
    // refreshes an Application on a resource's status change only when its health status
    // changes (ignoreResourceUpdates, on by default), so the message shown is as of the
    // last change of health until a refresh (periodic, or asked for as here).
    cloud.fault("StopExecution=500@1");
    let _op = p.operator(&ns, &cloud).await;
    until(
        "the stop is retrying",
        60,
        || get(&ns, "estop", "stop-e1").filter(|s| s["status"]["phase"] == "Retrying"),
        &ctx,
    )
    .await;
    p.poke(argo.namespace, &format!("application/{ns}"));
    let app = until(
        "Argo CD shows the stop retrying",
        60,
        || {
            application(argo, &ns).filter(|a| {
                resource_health(a, "ExecutionStop", "stop-e1")
                    .is_some_and(|(_, m)| m.starts_with("Retrying: "))
            })
        },
        &ctx,
    )
    .await;
    assert_eq!(app_health(&app), "Progressing", "{:#}", app["status"]);
    assert_eq!(
        resource_health(&app, "ExecutionStop", "stop-e1").unwrap().0,
        "Progressing"
    );
    // Between attempts it is Stopping (calling) or Retrying (waiting): not final either way.
    let stop = must_get(&ns, "estop", "stop-e1");
    assert!(
        stop["status"]["phase"] == "Retrying" || stop["status"]["phase"] == "Stopping",
        "{stop:#}"
    );
    assert_eq!(
        stop["status"]["lastError"]["code"], "InternalServerError",
        "{stop:#}"
    );

    // The service recovers: Stopped, Healthy, with the Ready condition's words.
    cloud.emu.emulator.lock().faults.rules.clear();
    let app = until(
        "the Application is Healthy",
        60,
        || application(argo, &ns).filter(|a| app_health(a) == "Healthy"),
        &ctx,
    )
    .await;
    let stop = must_get(&ns, "estop", "stop-e1");
    assert_eq!(stop["status"]["phase"], "Stopped", "{stop:#}");
    assert_eq!(
        resource_health(&app, "ExecutionStop", "stop-e1").unwrap(),
        ("Healthy".into(), ready_text(&stop))
    );
    assert!(ready_text(&stop).starts_with("Stopped: "), "{stop:#}");

    // A stop that ends Failed (its flow does not exist) makes the Application Degraded.
    repo.write(
        "stops/missing.yaml",
        &stop_yaml("stop-missing", "no-such-flow", "e1"),
    );
    repo.commit("stop an execution of a flow that does not exist");
    p.poke(argo.namespace, &format!("application/{ns}"));
    let app = until(
        "the Application is Degraded",
        90,
        || application(argo, &ns).filter(|a| app_health(a) == "Degraded"),
        &ctx,
    )
    .await;
    let missing = must_get(&ns, "estop", "stop-missing");
    assert_eq!(missing["status"]["phase"], "Failed", "{missing:#}");
    assert_eq!(
        resource_health(&app, "ExecutionStop", "stop-missing").unwrap(),
        ("Degraded".into(), ready_text(&missing))
    );
    assert!(
        ready_text(&missing).starts_with("NotFound: "),
        "{missing:#}"
    );
    assert_eq!(
        resource_health(&app, "ExecutionStop", "stop-e1").unwrap().0,
        "Healthy"
    );
}

/// The result of the last sync for one resource (hooks included): (hookPhase, message).
fn sync_result(app: &Value, kind: &str, name: &str) -> Option<(String, String)> {
    let r = app["status"]["operationState"]["syncResult"]["resources"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)?;
    Some((
        r["hookPhase"].as_str().unwrap_or("").to_string(),
        r["message"].as_str().unwrap_or("").to_string(),
    ))
}

/// The Application once a sync of `revision` Succeeded.
fn synced(argo: &ArgoCd, name: &str, revision: &str) -> Option<Value> {
    application(argo, name).filter(|a| {
        let op = &a["status"]["operationState"];
        op["phase"] == "Succeeded" && op["syncResult"]["revision"] == revision
    })
}

/// Issue 27, scenario 2, with examples/gitops/argocd as it is: the ExecutionStopSet is a
/// PreSync hook, so every running execution of the flow is stopped before the new
/// definition is applied; a second sync runs the hook again and stops nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_presync_drain_stops_every_execution_before_the_definition_and_a_resync_stops_nothing_twice()
 {
    let p = plane();
    let c = &p.cluster;
    let argo = argocd();
    let (ns, cloud) = p.setup("argo-drain", &["etl-pipeline", "other"]).await;
    let running = ["nightly-1", "nightly-2", "nightly-3"];
    for e in running {
        cloud.start("etl-pipeline", e, None).await;
    }
    cloud.start("other", "keeps-running", None).await;
    let _op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    let first = push_examples(&repo, "etl-pipeline v2", |_, t| t);
    let rec = Recorder::start(&ns, &[ESTOPSET, ESTOP, CONFIGMAP]).await;
    c.apply(&example(
        "argocd/application.yaml",
        &ns,
        &repo.url,
        Some(argo),
    ));
    let ctx = argo_context(argo, &ns);

    // Argo CD may show the app Missing for a moment after the sync that created its
    // resources, until it assesses their health: Healthy is waited for, not read once.
    let app = until(
        "the first sync succeeds and the app is Healthy",
        120,
        || synced(argo, &ns, &first).filter(|a| app_health(a) == "Healthy"),
        &ctx,
    )
    .await;
    assert_eq!(app_health(&app), "Healthy", "{:#}", app["status"]);
    let (phase, message) =
        sync_result(&app, "ExecutionStopSet", "etl-pipeline-drain").expect("the hook ran");
    assert_eq!(phase, "Succeeded", "{:#}", app["status"]);
    assert!(message.starts_with("Completed: "), "{message}");
    let definition = must_get(&ns, "configmap", "etl-pipeline-definition");
    assert_eq!(definition["data"]["version"], "2");

    drained_before_the_definition(&rec, &cloud, &running).await;

    // The next definition: the hook runs again (the old set deleted first), finds nothing
    // running, and makes no StopExecution call.
    let second = push_examples(&repo, "etl-pipeline v3", |rel, t| {
        if rel == "argocd/etl-pipeline/definition.yaml" {
            t.replace("version: \"2\"", "version: \"3\"")
        } else {
            t
        }
    });
    p.poke(argo.namespace, &format!("application/{ns}"));
    let app = until(
        "the second sync succeeds",
        120,
        || synced(argo, &ns, &second),
        &ctx,
    )
    .await;
    let (phase, message) =
        sync_result(&app, "ExecutionStopSet", "etl-pipeline-drain").expect("the hook ran again");
    assert_eq!(phase, "Succeeded", "{:#}", app["status"]);
    assert!(message.starts_with("NoMatches: "), "{message}");
    assert_eq!(
        must_get(&ns, "configmap", "etl-pipeline-definition")["data"]["version"],
        "3"
    );
    let sets = rec.all("ExecutionStopSet");
    let uids: std::collections::BTreeSet<&str> = sets
        .iter()
        .filter_map(|s| s.obj["metadata"]["uid"].as_str())
        .collect();
    assert_eq!(uids.len(), 2, "the hook was not created anew: {sets:#?}");
    assert_eq!(
        stop_calls(&cloud),
        3,
        "a second sync stopped something again"
    );
    for e in running {
        assert_eq!(execution(&cloud, "etl-pipeline", e).await.1, 1, "{e}");
    }
}

/// Issue 27, scenario 2, the warning: without flowstop's health checks in argocd-cm, Argo
/// CD cannot tell whether the set is done, calls the hook Succeeded at once, and applies
/// the definition while the executions still run (no operator runs here, which makes it
/// plain: nothing was stopped at all when the definition went out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_without_the_health_checks_calls_the_drain_hook_succeeded_at_once() {
    let p = plane();
    let c = &p.cluster;
    let argo = argocd_without_health_checks();
    let (ns, cloud) = p.setup("argo-nohealth", &["etl-pipeline"]).await;
    for e in ["nightly-1", "nightly-2"] {
        cloud.start("etl-pipeline", e, None).await;
    }
    let repo = git_server().repo(&ns);
    let first = push_examples(&repo, "etl-pipeline v2", |_, t| t);
    c.apply(&example(
        "argocd/application.yaml",
        &ns,
        &repo.url,
        Some(argo),
    ));
    let ctx = argo_context(argo, &ns);

    let app = until("the sync succeeds", 120, || synced(argo, &ns, &first), &ctx).await;
    let (phase, _) =
        sync_result(&app, "ExecutionStopSet", "etl-pipeline-drain").expect("the hook ran");
    assert_eq!(phase, "Succeeded", "{:#}", app["status"]);
    assert!(get(&ns, "configmap", "etl-pipeline-definition").is_some());
    let set = must_get(&ns, "estopset", "etl-pipeline-drain");
    assert!(set["status"]["phase"].is_null(), "{set:#}");
    for e in ["nightly-1", "nightly-2"] {
        assert_eq!(
            execution(&cloud, "etl-pipeline", e).await,
            ("Running".into(), 0),
            "{e}"
        );
    }
    assert_eq!(stop_calls(&cloud), 0);
}

/// Issue 27, scenario 2, a drain that cannot complete: more executions run than the
/// set's `maxCount`, so it fails (TooManyMatches) and stops nothing; the hook is Degraded,
/// the sync fails, and the definition is not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_a_failed_drain_hook_fails_the_sync_and_holds_the_definition_back() {
    let p = plane();
    let c = &p.cluster;
    let argo = argocd();
    let (ns, cloud) = p.setup("argo-drain-fails", &["etl-pipeline"]).await;
    for e in ["nightly-1", "nightly-2", "nightly-3"] {
        cloud.start("etl-pipeline", e, None).await;
    }
    let _op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    push_examples(&repo, "drain with too small a cap", |rel, t| {
        if rel == "argocd/etl-pipeline/drain.yaml" {
            t.replace("maxCount: 100", "maxCount: 2")
        } else {
            t
        }
    });
    c.apply(&example(
        "argocd/application.yaml",
        &ns,
        &repo.url,
        Some(argo),
    ));
    let ctx = argo_context(argo, &ns);
    let app = until(
        "the drain hook fails",
        120,
        || {
            application(argo, &ns).filter(|a| {
                sync_result(a, "ExecutionStopSet", "etl-pipeline-drain")
                    .is_some_and(|(phase, _)| phase == "Failed")
            })
        },
        &ctx,
    )
    .await;
    let (_, message) = sync_result(&app, "ExecutionStopSet", "etl-pipeline-drain").unwrap();
    assert!(message.starts_with("TooManyMatches: "), "{message}");
    assert_ne!(app["status"]["operationState"]["phase"], "Succeeded");
    assert!(get(&ns, "configmap", "etl-pipeline-definition").is_none());
    assert_eq!(stop_calls(&cloud), 0);
}

// ---------------------------------------------------------------------------------------
// The guide

/// Every YAML block of docs/gitops.md is a file of examples/gitops/ (named on the line
/// before it), word for word, so the guide shows only what the tests apply.
#[test]
fn every_yaml_block_of_the_guide_is_an_applied_example() {
    let guide = std::fs::read_to_string(repo_path("docs/gitops.md")).unwrap();
    let lines: Vec<&str> = guide.lines().collect();
    let mut blocks = 0;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```yaml") {
            let source = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| l.split("<!-- example: ").nth(1))
                .and_then(|l| l.split(" -->").next())
                .unwrap_or_else(|| panic!("docs/gitops.md line {}: a YAML block without `<!-- example: PATH -->` before it", i + 1));
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.trim_start().starts_with("```"))
                .unwrap()
                + i
                + 1;
            let block: String = lines[i + 1..end].iter().map(|l| format!("{l}\n")).collect();
            let file = std::fs::read_to_string(repo_path(source))
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(
                block, file,
                "docs/gitops.md's copy of {source} differs from the file"
            );
            assert!(
                source.starts_with("examples/gitops/"),
                "{source} is not an applied example"
            );
            blocks += 1;
            i = end;
        }
        i += 1;
    }
    assert!(blocks >= 5, "docs/gitops.md shows {blocks} YAML blocks");
}

// ---------------------------------------------------------------------------------------
// Pruning, preview then flip, the immutable spec: both tools

const KEEP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {stays: \"yes\"}\n";

fn set_yaml(name: &str, prefix: &str, extra: &str) -> String {
    format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStopSet\nmetadata: {{name: {name}}}\n\
         spec:\n  flowName: f\n  selector: {{executionNamePrefix: {prefix}}}\n  maxCount: 10\n  maxAttempts: 100\n\
         \x20 credentialsSecretRef: {{name: fnf-credentials}}\n{extra}"
    )
}

/// The operator's objects in `ns` (ExecutionStops and sets), as `kubectl get` lists them.
fn flowstop_objects(ns: &str) -> Vec<String> {
    plane()
        .cluster
        .must(&["get", "-n", ns, "estop,estopset", "-o", "name"], None)
        .lines()
        .map(String::from)
        .collect()
}

/// After the objects are gone from the API server: the operator forgets them, and no
/// StopExecution follows, over a window in which each would have been retried several
/// times (the backoff is at most 1 s here; every call is refused, so they kept retrying).
async fn no_call_follows(
    cloud: &Cloud,
    op: &testkit::operator::Operator,
    ns: &str,
    context: &dyn Fn() -> String,
) {
    let calls = stop_calls(cloud);
    let deadline = Instant::now() + Duration::from_secs(30);
    while op.metric("flowstop_objects").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the operator still counts objects of {ns}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let window = Instant::now() + Duration::from_secs(3);
    while Instant::now() < window {
        assert_eq!(
            stop_calls(cloud),
            calls,
            "a StopExecution followed the deletion\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 27, scenario 5: what Argo CD prunes makes no further call. An ExecutionStop removed
/// from git is deleted; a set removed from git is deleted with foreground propagation, the
/// garbage collector deleting its ExecutionStops first. All of them were retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_prunes_a_stop_and_a_set_removed_from_git_and_no_call_follows() {
    let p = plane();
    let c = &p.cluster;
    let argo = argocd();
    let (ns, cloud) = p.setup("argo-prune", &["f"]).await;
    for e in ["single", "s-1", "s-2", "s-3"] {
        cloud.start("f", e, None).await;
    }
    cloud.fault("StopExecution=500@1");
    let op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    repo.write("stops/single.yaml", &stop_yaml("single", "f", "single"));
    repo.write("stops/set.yaml", &set_yaml("set", "s-", ""));
    // Something else stays: both tools refuse a path that no longer exists (Argo CD "app
    // path does not exist", Flux "kustomization path not found") and prune nothing then.
    repo.write("stops/keep.yaml", KEEP);
    repo.commit("a stop and a set");
    c.apply(&application_yaml(argo, &ns, &repo.url, "stops"));
    let ctx = argo_context(argo, &ns);
    until(
        "the set's three stops and the single one are retrying",
        90,
        || (flowstop_objects(&ns).len() == 5 && stop_calls(&cloud) >= 8).then_some(()),
        &ctx,
    )
    .await;

    repo.remove("stops/single.yaml").remove("stops/set.yaml");
    let removed = repo.commit("remove both");
    p.poke(argo.namespace, &format!("application/{ns}"));
    until(
        "Argo CD pruned everything",
        90,
        || synced(argo, &ns, &removed),
        &ctx,
    )
    .await;
    until(
        "the stops and the set are gone",
        60,
        || flowstop_objects(&ns).is_empty().then_some(()),
        &ctx,
    )
    .await;
    no_call_follows(&cloud, &op, &ns, &ctx).await;
    for e in ["single", "s-1", "s-2", "s-3"] {
        assert_eq!(execution(&cloud, "f", e).await.0, "Running", "{e}");
    }
}

/// Issue 27, scenario 5, Flux: prune deletes what left git (background propagation; the
/// garbage collector takes the set's ExecutionStops), and no call follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_prunes_a_stop_and_a_set_removed_from_git_and_no_call_follows() {
    let p = plane();
    let c = &p.cluster;
    flux();
    let (ns, cloud) = p.setup("flux-prune", &["f"]).await;
    for e in ["single", "s-1", "s-2", "s-3"] {
        cloud.start("f", e, None).await;
    }
    cloud.fault("StopExecution=500@1");
    let op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    repo.write("stops/single.yaml", &stop_yaml("single", "f", "single"));
    repo.write("stops/set.yaml", &set_yaml("set", "s-", ""));
    // Something else stays: both tools refuse a path that no longer exists (Argo CD "app
    // path does not exist", Flux "kustomization path not found") and prune nothing then.
    repo.write("stops/keep.yaml", KEEP);
    repo.commit("a stop and a set");
    c.apply(&flux_source(&ns, &repo.url));
    c.apply(&kustomization(
        &ns,
        "stops",
        "./stops",
        "  retryInterval: 2s\n",
    ));
    let ctx = flux_context(&ns);
    until(
        "the set's three stops and the single one are retrying",
        90,
        || (flowstop_objects(&ns).len() == 5 && stop_calls(&cloud) >= 8).then_some(()),
        &ctx,
    )
    .await;

    repo.remove("stops/single.yaml").remove("stops/set.yaml");
    let removed = repo.commit("remove both");
    p.poke(&ns, "gitrepository/flows");
    until(
        "Flux applied the commit that removes them",
        90,
        || {
            get(&ns, "kustomization", "stops").filter(|k| {
                k["status"]["lastAppliedRevision"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(&removed))
            })
        },
        &ctx,
    )
    .await;
    until(
        "the stops and the set are gone",
        60,
        || flowstop_objects(&ns).is_empty().then_some(()),
        &ctx,
    )
    .await;
    no_call_follows(&cloud, &op, &ns, &ctx).await;
    for e in ["single", "s-1", "s-2", "s-3"] {
        assert_eq!(execution(&cloud, "f", e).await.0, "Running", "{e}");
    }
}

/// Issue 27, scenario 3, Argo CD: a set committed with `dryRun: true` is Healthy with its
/// count in the resource's health message; the commit that flips it stops them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_shows_a_previews_count_then_the_flip_committed_stops_them() {
    let p = plane();
    let c = &p.cluster;
    let argo = argocd();
    let (ns, cloud) = p.setup("argo-preview", &["f"]).await;
    for e in ["p-1", "p-2", "other"] {
        cloud.start("f", e, None).await;
    }
    let _op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    repo.write(
        "sets/set.yaml",
        &set_yaml("bad-deploy", "p-", "  dryRun: true\n"),
    );
    repo.commit("preview");
    c.apply(&application_yaml(argo, &ns, &repo.url, "sets"));
    let ctx = argo_context(argo, &ns);
    let app = until(
        "Argo CD shows the preview",
        90,
        || {
            application(argo, &ns).filter(|a| {
                resource_health(a, "ExecutionStopSet", "bad-deploy")
                    .is_some_and(|(_, m)| m.starts_with("Previewed: "))
            })
        },
        &ctx,
    )
    .await;
    let set = must_get(&ns, "estopset", "bad-deploy");
    assert_eq!(set["status"]["matched"], 2, "{set:#}");
    let (health, message) = resource_health(&app, "ExecutionStopSet", "bad-deploy").unwrap();
    assert_eq!(
        (health.as_str(), message.as_str()),
        ("Healthy", ready_text(&set).as_str())
    );
    assert!(message.contains("2 executions match"), "{message}");
    assert_eq!(stop_calls(&cloud), 0);

    repo.write(
        "sets/set.yaml",
        &set_yaml("bad-deploy", "p-", "  dryRun: false\n"),
    );
    let flip = repo.commit("stop them");
    p.poke(argo.namespace, &format!("application/{ns}"));
    until("the flip is synced", 90, || synced(argo, &ns, &flip), &ctx).await;
    let app = until(
        "Argo CD shows the set completed",
        90,
        || {
            application(argo, &ns).filter(|a| {
                resource_health(a, "ExecutionStopSet", "bad-deploy")
                    .is_some_and(|(_, m)| m.starts_with("Completed: "))
            })
        },
        &ctx,
    )
    .await;
    assert_eq!(app_health(&app), "Healthy");
    for e in ["p-1", "p-2"] {
        assert_eq!(
            execution(&cloud, "f", e).await,
            ("Stopped".into(), 1),
            "{e}"
        );
    }
    assert_eq!(execution(&cloud, "f", "other").await, ("Running".into(), 0));
}

/// Issue 27, scenario 3, Flux: the preview passes the health check (Previewing is Ready);
/// Flux shows no count of its own, `kubectl get estopset` does (MATCHED); the flip
/// committed stops them, and the Kustomization is Ready again once the set Completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_preview_is_ready_with_the_count_on_the_set_then_the_flip_committed_stops_them() {
    let p = plane();
    let c = &p.cluster;
    flux();
    let (ns, cloud) = p.setup("flux-preview", &["f"]).await;
    for e in ["p-1", "p-2", "other"] {
        cloud.start("f", e, None).await;
    }
    let _op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    repo.write(
        "sets/set.yaml",
        &set_yaml("bad-deploy", "p-", "  dryRun: true\n"),
    );
    let preview = repo.commit("preview");
    c.apply(&flux_source(&ns, &repo.url));
    c.apply(&kustomization(
        &ns,
        "sets",
        "./sets",
        "  wait: true\n  timeout: 1m\n",
    ));
    let ctx = flux_context(&ns);
    let applied = |revision: &str| {
        let ns = ns.clone();
        let revision = revision.to_string();
        move || {
            get(&ns, "kustomization", "sets").filter(|k| {
                ready_is(k, "True")
                    && k["status"]["lastAppliedRevision"]
                        .as_str()
                        .is_some_and(|r| r.ends_with(&revision))
            })
        }
    };
    until(
        "the preview is applied and healthy",
        90,
        applied(&preview),
        &ctx,
    )
    .await;
    let table = c.must(&["get", "estopset", "-n", &ns], None);
    let (header, row) = (table.lines().next().unwrap(), table.lines().nth(1).unwrap());
    let column = header.find("MATCHED").expect("a MATCHED column");
    assert_eq!(
        row[column..].split_whitespace().next(),
        Some("2"),
        "{table}"
    );
    assert_eq!(stop_calls(&cloud), 0);

    repo.write(
        "sets/set.yaml",
        &set_yaml("bad-deploy", "p-", "  dryRun: false\n"),
    );
    let flip = repo.commit("stop them");
    p.poke(&ns, "gitrepository/flows");
    until("the flip is applied and healthy", 90, applied(&flip), &ctx).await;
    let set = must_get(&ns, "estopset", "bad-deploy");
    assert_eq!(set["status"]["phase"], "Completed", "{set:#}");
    for e in ["p-1", "p-2"] {
        assert_eq!(
            execution(&cloud, "f", e).await,
            ("Stopped".into(), 1),
            "{e}"
        );
    }
    assert_eq!(execution(&cloud, "f", "other").await, ("Running".into(), 0));
}

fn stop_yaml_labelled(name: &str, execution: &str, metadata: &str) -> String {
    format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStop\nmetadata:\n  name: {name}\n{metadata}\
         spec: {{flowName: f, executionName: {execution}, credentialsSecretRef: {{name: fnf-credentials}}}}\n"
    )
}

/// The last sync's outcome: (phase, message, the resource's sync message).
fn last_sync(app: &Value, kind: &str, name: &str) -> (String, String, String) {
    let op = &app["status"]["operationState"];
    (
        op["phase"].as_str().unwrap_or("").to_string(),
        op["message"].as_str().unwrap_or("").to_string(),
        sync_result(app, kind, name)
            .map(|r| r.1)
            .unwrap_or_default(),
    )
}

/// Issue 27, scenario 6, Argo CD: a changed spec is refused at admission and the sync
/// fails with the API server's message; `Replace=true` does not get past it (a replace is
/// an update, and the rule judges updates); `Force=true,Replace=true` deletes and creates
/// the object anew; so does a new name, with the old object pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_reports_the_immutable_spec_and_a_new_name_or_a_forced_replace_is_the_way_out() {
    let p = plane();
    let c = &p.cluster;
    let argo = argocd();
    let (ns, cloud) = p.setup("argo-immutable", &["f"]).await;
    for e in ["e1", "e2", "e3", "e4"] {
        cloud.start("f", e, None).await;
    }
    let _op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    repo.write("stops/stop.yaml", &stop_yaml_labelled("stop-a", "e1", ""));
    let first = repo.commit("stop e1");
    // A failed automated sync is retried (five times by default, backing off from 5 s);
    // a later commit waits for that to end. One quick retry keeps this test short.
    let app = application_yaml(argo, &ns, &repo.url, "stops").replace(
        "automated: {prune: true}}",
        "automated: {prune: true}, retry: {limit: 1, backoff: {duration: 1s}}}",
    );
    c.apply(&app);
    let ctx = argo_context(argo, &ns);
    until("the stop is synced", 90, || synced(argo, &ns, &first), &ctx).await;
    until(
        "e1 is stopped",
        60,
        || get(&ns, "estop", "stop-a").filter(|s| s["status"]["phase"] == "Stopped"),
        &ctx,
    )
    .await;
    let uid = |name: &str| {
        must_get(&ns, "estop", name)["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let original = uid("stop-a");

    // Another execution under the same name.
    repo.write("stops/stop.yaml", &stop_yaml_labelled("stop-a", "e2", ""));
    let changed = repo.commit("stop e2 instead");
    p.poke(argo.namespace, &format!("application/{ns}"));
    let failed = |revision: &str| {
        let ns = ns.clone();
        let revision = revision.to_string();
        move || {
            application(argo, &ns).filter(|a| {
                let op = &a["status"]["operationState"];
                op["syncResult"]["revision"] == revision.as_str()
                    && (op["phase"] == "Failed" || op["phase"] == "Error")
            })
        }
    };
    let app = until(
        "the sync of the changed spec fails",
        120,
        failed(&changed),
        &ctx,
    )
    .await;
    let (_, message, resource) = last_sync(&app, "ExecutionStop", "stop-a");
    let refusal = "spec is immutable: create a new ExecutionStop to stop another execution";
    assert!(
        message.contains(refusal) && resource.contains("error when patching"),
        "{:#}",
        app["status"]
    );
    assert_eq!(app["status"]["sync"]["status"], "OutOfSync");
    assert_eq!(uid("stop-a"), original);

    // Replace=true: kubectl replace, still an update.
    let replace = "  annotations: {argocd.argoproj.io/sync-options: Replace=true}\n";
    repo.write(
        "stops/stop.yaml",
        &stop_yaml_labelled("stop-a", "e2", replace),
    );
    let replaced = repo.commit("replace it");
    p.poke(argo.namespace, &format!("application/{ns}"));
    let app = until("the replace fails too", 120, failed(&replaced), &ctx).await;
    let (_, message, resource) = last_sync(&app, "ExecutionStop", "stop-a");
    assert!(
        message.contains(refusal) && resource.contains("error when replacing"),
        "{:#}",
        app["status"]
    );
    assert_eq!(uid("stop-a"), original);

    // Force=true,Replace=true: delete, then create.
    let force = "  annotations: {argocd.argoproj.io/sync-options: 'Force=true,Replace=true'}\n";
    repo.write(
        "stops/stop.yaml",
        &stop_yaml_labelled("stop-a", "e2", force),
    );
    let forced = repo.commit("force it");
    p.poke(argo.namespace, &format!("application/{ns}"));
    let app = until(
        "the forced replace syncs or fails",
        120,
        || synced(argo, &ns, &forced).or_else(failed(&forced)),
        &ctx,
    )
    .await;
    let (phase, _, resource) = last_sync(&app, "ExecutionStop", "stop-a");
    assert_eq!(phase, "Succeeded", "{:#}", app["status"]);
    assert!(resource.contains("deleted"), "{resource}");
    assert_ne!(uid("stop-a"), original);
    until(
        "e2 is stopped",
        60,
        || {
            get(&ns, "estop", "stop-a")
                .filter(|s| s["status"]["phase"] == "Stopped" && s["spec"]["executionName"] == "e2")
        },
        &ctx,
    )
    .await;

    // A new name: created, and the old one pruned.
    repo.write("stops/stop.yaml", &stop_yaml_labelled("stop-b", "e3", ""));
    let renamed = repo.commit("a new stop for e3");
    p.poke(argo.namespace, &format!("application/{ns}"));
    until(
        "the new name is synced",
        120,
        || synced(argo, &ns, &renamed),
        &ctx,
    )
    .await;
    until(
        "e3 is stopped and stop-a pruned",
        60,
        || {
            (get(&ns, "estop", "stop-a").is_none()
                && get(&ns, "estop", "stop-b").is_some_and(|s| s["status"]["phase"] == "Stopped"))
            .then_some(())
        },
        &ctx,
    )
    .await;
    for (e, calls) in [("e1", 1), ("e2", 1), ("e3", 1), ("e4", 0)] {
        assert_eq!(execution(&cloud, "f", e).await.1, calls, "{e}");
    }
}

/// Issue 27, scenario 6, Flux: the changed spec fails the Kustomization with the API
/// server's message; the object's `kustomize.toolkit.fluxcd.io/force: enabled` label has
/// Flux delete and create it anew (it takes a refusal of our rule for an immutable
/// field); a new name works too, the old object pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_reports_the_immutable_spec_and_a_new_name_or_force_is_the_way_out() {
    let p = plane();
    let c = &p.cluster;
    flux();
    let (ns, cloud) = p.setup("flux-immutable", &["f"]).await;
    for e in ["e1", "e2", "e3", "e4"] {
        cloud.start("f", e, None).await;
    }
    let _op = p.operator(&ns, &cloud).await;
    let repo = git_server().repo(&ns);
    repo.write("stops/stop.yaml", &stop_yaml_labelled("stop-a", "e1", ""));
    let first = repo.commit("stop e1");
    c.apply(&flux_source(&ns, &repo.url));
    c.apply(&kustomization(
        &ns,
        "stops",
        "./stops",
        "  wait: true\n  timeout: 1m\n  retryInterval: 2s\n",
    ));
    let ctx = flux_context(&ns);
    let applied = |revision: &str| {
        let ns = ns.clone();
        let revision = revision.to_string();
        move || {
            get(&ns, "kustomization", "stops").filter(|k| {
                ready_is(k, "True")
                    && k["status"]["lastAppliedRevision"]
                        .as_str()
                        .is_some_and(|r| r.ends_with(&revision))
            })
        }
    };
    until("the stop is applied and Ready", 90, applied(&first), &ctx).await;
    let uid = |name: &str| {
        must_get(&ns, "estop", name)["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let original = uid("stop-a");

    repo.write("stops/stop.yaml", &stop_yaml_labelled("stop-a", "e2", ""));
    repo.commit("stop e2 instead");
    p.poke(&ns, "gitrepository/flows");
    let ks = until(
        "the Kustomization fails",
        90,
        || get(&ns, "kustomization", "stops").filter(|k| reason_is(k, "ReconciliationFailed")),
        &ctx,
    )
    .await;
    let message = condition(&ks, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("spec is immutable"), "{message}");
    assert_eq!(uid("stop-a"), original);

    let force = "  labels: {kustomize.toolkit.fluxcd.io/force: enabled}\n";
    repo.write(
        "stops/stop.yaml",
        &stop_yaml_labelled("stop-a", "e2", force),
    );
    let forced = repo.commit("force it");
    p.poke(&ns, "gitrepository/flows");
    until(
        "the forced stop is applied and Ready",
        90,
        applied(&forced),
        &ctx,
    )
    .await;
    let stop = must_get(&ns, "estop", "stop-a");
    assert_ne!(uid("stop-a"), original);
    assert_eq!(stop["spec"]["executionName"], "e2");
    assert_eq!(stop["status"]["phase"], "Stopped", "{stop:#}");

    repo.write("stops/stop.yaml", &stop_yaml_labelled("stop-b", "e3", ""));
    let renamed = repo.commit("a new stop for e3");
    p.poke(&ns, "gitrepository/flows");
    until(
        "the new name is applied and Ready",
        90,
        applied(&renamed),
        &ctx,
    )
    .await;
    assert!(
        get(&ns, "estop", "stop-a").is_none(),
        "stop-a was not pruned"
    );
    assert_eq!(
        must_get(&ns, "estop", "stop-b")["status"]["phase"],
        "Stopped"
    );
    for (e, calls) in [("e1", 1), ("e2", 1), ("e3", 1), ("e4", 0)] {
        assert_eq!(execution(&cloud, "f", e).await.1, calls, "{e}");
    }
}
