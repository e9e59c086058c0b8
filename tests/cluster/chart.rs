//! The Helm chart (charts/flowstop), judged by helm itself (built from helm.sh/helm/v4):
//! its values schema, what it renders compared with what deploy/ and crds/ ship, a server
//! dry run of everything it can render (ServiceMonitor and PrometheusRule against the
//! Prometheus Operator's own CRDs), and a release's life: install, upgrade, rollback,
//! uninstall with the CRDs kept or not, on a control plane of its own (CRDs are
//! cluster-wide: the shared plane's tests must never see them go). And the operator's RBAC
//! with `watchNamespaces` (releases without CRDs, on the shared plane): asked of the API
//! server with `kubectl auth can-i`, and enough for the operator to work as its
//! ServiceAccount.

use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use testkit::cloud::{AK, Cloud, SK};
use testkit::cluster::{Cluster, bin_dir, get, launch, workspace_bin};
use testkit::fixtures::{ExecutionStop, secret};
use testkit::operator::{Launch, Operator, installed, repo, status, wait_event, wait_for};

/// The Prometheus Operator whose CRDs the ServiceMonitor and PrometheusRule are checked
/// against, from the Go module proxy (the module carries them under example/).
const PROMETHEUS_OPERATOR: &str = "github.com/prometheus-operator/prometheus-operator@v0.85.0";

/// helm, with its own config, cache and data directories (never the user's).
struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    fn new(kubeconfig: Option<&Path>) -> Helm {
        Helm {
            bin: testkit::tools::tool("helm"),
            home: tempfile::tempdir().unwrap(),
            kubeconfig: kubeconfig.map(Path::to_path_buf),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.bin);
        for var in ["HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"] {
            cmd.env(var, self.home.path().join(var));
        }
        match &self.kubeconfig {
            Some(k) => cmd.env("KUBECONFIG", k),
            None => cmd.env("KUBECONFIG", self.home.path().join("none")),
        };
        cmd.args(args).output().expect("helm runs")
    }

    /// stdout of a helm command that must succeed.
    fn must(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "helm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// stdout + stderr of a helm command that must fail.
    fn refuses(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "helm {args:?} succeeded: {text}");
        text
    }
}

fn chart() -> String {
    repo("charts/flowstop").to_str().unwrap().to_string()
}

/// Every document of a YAML stream (empty ones dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// As JSON with every number a float: Helm's fromYaml/toYaml writes `100` as `100.0`.
fn numbers_as_f64(v: &Value) -> serde_json::Value {
    fn walk(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match v {
            J::Number(n) => serde_json::json!(n.as_f64().unwrap()),
            J::Array(a) => J::Array(a.into_iter().map(walk).collect()),
            J::Object(o) => J::Object(o.into_iter().map(|(k, v)| (k, walk(v))).collect()),
            other => other,
        }
    }
    walk(serde_json::to_value(v).unwrap())
}

fn read_docs(path: &str) -> Vec<Value> {
    documents(&std::fs::read_to_string(repo(path)).unwrap())
}

/// `helm template flowstop` in flowstop-system, the names deploy/ uses.
fn template(helm: &Helm, set: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "flowstop",
        &chart,
        "--namespace",
        "flowstop-system",
    ];
    for s in set {
        args.extend(["--set", s]);
    }
    helm.must(&args)
}

#[test]
fn the_values_schema_refuses_typos_and_wrong_types_naming_the_key() {
    let helm = Helm::new(None);
    let chart = chart();
    let lint = helm.must(&["lint", "--strict", &chart]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");
    for (set, says) in [
        ("replicaCount=two", "replicaCount"),
        ("replicas=2", "replicas"),
        ("policy.mode=closed", "policy/mode"),
        ("fnf.endpoint=ftp://example.com", "fnf/endpoint"),
        ("image.pullPolicy=Sometimes", "image/pullPolicy"),
        ("metrics.prometheusRule.throttledRatio=2", "throttledRatio"),
        ("rateLimits.stop.rate=0", "rateLimits/stop/rate"),
        ("crds.enable=false", "enable"),
    ] {
        let lint = helm.refuses(&["lint", &chart, "--set", set]);
        assert!(lint.contains(says), "lint --set {set}: {lint}");
        let template = helm.refuses(&["template", "x", &chart, "--set", set]);
        assert!(template.contains(says), "template --set {set}: {template}");
    }
    // Required together: RRSA without its ARNs is refused at render time, by name.
    let rrsa = helm.refuses(&[
        "template",
        "x",
        &chart,
        "--set",
        "credentials.rrsa.enabled=true",
    ]);
    assert!(
        rrsa.contains("credentials.rrsa.roleArn is required"),
        "{rrsa}"
    );
}

/// The chart and `kubectl apply -k deploy/` + `kubectl apply -f crds/` install the same
/// permissions, CRDs and security settings (no drift between the two install paths).
#[test]
fn the_chart_renders_what_deploy_and_crds_ship() {
    let helm = Helm::new(None);
    let ours = documents(&template(&helm, &[]));
    let mut shipped = read_docs("deploy/rbac.yaml");
    shipped.extend(read_docs("deploy/tenant-roles.yaml"));
    for (kind, name) in [
        ("ClusterRole", "flowstop"),
        ("Role", "flowstop-leader-election"),
        ("ClusterRole", "flowstop-edit"),
        ("ClusterRole", "flowstop-view"),
    ] {
        assert_eq!(
            find(&ours, kind, name)["rules"],
            find(&shipped, kind, name)["rules"],
            "{kind} {name}: the chart's rules differ from deploy/"
        );
    }
    for (kind, name) in [
        ("ClusterRole", "flowstop-edit"),
        ("ClusterRole", "flowstop-view"),
    ] {
        for label in [
            "rbac.authorization.k8s.io/aggregate-to-edit",
            "rbac.authorization.k8s.io/aggregate-to-admin",
            "rbac.authorization.k8s.io/aggregate-to-view",
        ] {
            assert_eq!(
                find(&ours, kind, name)["metadata"]["labels"][label],
                find(&shipped, kind, name)["metadata"]["labels"][label],
                "{name} {label}"
            );
        }
    }
    // The CRDs: the chart's copies are crds/ exactly, plus Helm's labels and the keep
    // annotation.
    for file in ["executionstop", "executionstopset", "executionstoppolicy"] {
        let shipped = &read_docs(&format!("crds/{file}.yaml"))[0];
        let copy = &read_docs(&format!("charts/flowstop/files/crds/{file}.yaml"))[0];
        assert_eq!(
            copy, shipped,
            "charts/flowstop/files/crds/{file}.yaml is not crds/"
        );
        let name = shipped["metadata"]["name"].as_str().unwrap();
        let rendered = find(&ours, "CustomResourceDefinition", name);
        assert_eq!(
            numbers_as_f64(&rendered["spec"]),
            numbers_as_f64(&shipped["spec"]),
            "{name}"
        );
        assert_eq!(
            rendered["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    // The Deployment: the same hardening, probes and resources as deploy/.
    let deployment = &read_docs("deploy/deployment.yaml")[0];
    let rendered = find(&ours, "Deployment", "flowstop");
    let (spec, ours_spec) = (
        &deployment["spec"]["template"]["spec"],
        &rendered["spec"]["template"]["spec"],
    );
    assert_eq!(ours_spec["securityContext"], spec["securityContext"]);
    assert_eq!(rendered["spec"]["replicas"], deployment["spec"]["replicas"]);
    for key in [
        "securityContext",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "ports",
    ] {
        assert_eq!(
            ours_spec["containers"][0][key], spec["containers"][0][key],
            "container {key}"
        );
    }
    let args = |c: &Value| -> Vec<String> {
        c["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let ours_args = args(&ours_spec["containers"][0]);
    for arg in args(&spec["containers"][0]) {
        assert!(ours_args.contains(&arg), "{arg} missing from {ours_args:?}");
    }
    // Off by default: no monitoring objects that need the Prometheus Operator.
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!ours.iter().any(|d| d["kind"] == kind), "{kind} rendered");
    }
    // crds.enabled=false leaves them out; crds.keep=false drops the annotation.
    let without = documents(&template(&helm, &["crds.enabled=false"]));
    assert!(
        !without
            .iter()
            .any(|d| d["kind"] == "CustomResourceDefinition")
    );
    let unkept = documents(&template(&helm, &["crds.keep=false"]));
    let crd = find(
        &unkept,
        "CustomResourceDefinition",
        "executionstops.flowstop.dev",
    );
    assert!(crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null());
}

/// A control plane of this test's own, with kubectl on it.
struct OwnPlane {
    _launcher: (std::process::Child, std::process::ChildStdin),
    cluster: Cluster,
}

fn own_plane() -> OwnPlane {
    let (child, stdin, info) = launch(&[]);
    let cluster = Cluster::attach(
        get(&info, "kubeconfig").into(),
        get(&info, "server").into(),
        bin_dir(),
    );
    OwnPlane {
        _launcher: (child, stdin),
        cluster,
    }
}

/// The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, from its module.
fn install_prometheus_operator_crds(c: &Cluster) {
    let out = Command::new("go")
        .args(["mod", "download", "-json", PROMETHEUS_OPERATOR])
        .env("GOFLAGS", "-mod=mod")
        .output()
        .expect("go runs");
    assert!(
        out.status.success(),
        "go mod download {PROMETHEUS_OPERATOR}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dir = Path::new(info["Dir"].as_str().unwrap()).join("example/prometheus-operator-crd");
    for crd in ["servicemonitors", "prometheusrules"] {
        let file = dir.join(format!("monitoring.coreos.com_{crd}.yaml"));
        c.must(
            &["apply", "--server-side", "-f", file.to_str().unwrap()],
            None,
        );
    }
    c.must(
        &[
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
            "--timeout=60s",
        ],
        None,
    );
}

/// The values of the README's Argo CD Application and Flux HelmRelease, as YAML files.
fn readme_values() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let mut found = vec![];
    for (marker, path) in [
        (
            "# Argo CD Application\n",
            ["spec", "source", "helm", "valuesObject"].as_slice(),
        ),
        ("# Flux HelmRelease\n", ["spec", "values"].as_slice()),
    ] {
        let start = readme
            .find(marker)
            .unwrap_or_else(|| panic!("README has no {marker}"));
        let block = &readme[start..];
        let block = &block[..block.find("```").unwrap()];
        let mut v: Value = serde_yaml_ng::from_str(block).unwrap();
        for key in path {
            v = v[*key].clone();
        }
        assert!(v.is_mapping(), "{marker}: no values at {path:?}");
        found.push((
            marker.trim().to_string(),
            serde_yaml_ng::to_string(&v).unwrap(),
        ));
    }
    found
}

fn deployment_args(c: &Cluster, ns: &str) -> String {
    c.must(
        &[
            "get",
            "deployment/flowstop",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ],
        None,
    )
}

fn crds(c: &Cluster) -> String {
    c.must(&["get", "crd", "-o", "name"], None)
}

#[test]
fn a_release_installs_upgrades_rolls_back_and_uninstalls() {
    let plane = own_plane();
    let c = &plane.cluster;
    let helm = Helm::new(Some(&c.kubeconfig));
    let chart = chart();
    install_prometheus_operator_crds(c);

    // Everything the chart can render, defaults and every option, passes the API server's
    // own validation (CRD schemas included) without being created.
    // With watchNamespaces the operator's rules are Roles in those namespaces: they exist
    // before the release, as they must before any install.
    for ns in ["flowstop-system", "team-a", "team-b"] {
        c.must(&["create", "namespace", ns], None);
    }
    for set in [
        vec![],
        vec![
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "metrics.dashboard.enabled=true",
            "credentials.rrsa.enabled=true",
            "credentials.rrsa.roleArn=acs:ram::123:role/flowstop",
            "credentials.rrsa.oidcProviderArn=acs:ram::123:oidc-provider/ack",
            "credentials.secretName=fnf-keys",
            "fnf.extraCA.configMap=corp-ca",
            "fnf.allowedEndpointHosts={*.fnf.aliyuncs.com,fnf.internal.example}",
            "watchNamespaces={team-a,team-b}",
            "policy.mode=enforce",
            "tenantRoles.enabled=false",
        ],
    ] {
        let rendered = template(&helm, &set);
        let out = c.must(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered));
        assert!(
            out.contains("deployment.apps/flowstop created (server dry run)"),
            "{out}"
        );
        if !set.is_empty() {
            for what in [
                "servicemonitor.monitoring.coreos.com/flowstop created",
                "prometheusrule.monitoring.coreos.com/flowstop created",
                "configmap/flowstop-dashboard created",
            ] {
                assert!(out.contains(what), "{what}: {out}");
            }
        }
    }
    // The README's Argo CD and Flux values, the same way.
    for (snippet, values) in readme_values() {
        let file = helm.home.path().join("values.yaml");
        std::fs::write(&file, values).unwrap();
        let rendered = helm.must(&[
            "template",
            "flowstop",
            &chart,
            "--namespace",
            "flowstop-system",
            "-f",
            file.to_str().unwrap(),
        ]);
        assert!(rendered.contains("--policy-mode=enforce"), "{snippet}");
        let out = c.must(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered));
        assert!(
            out.contains("prometheusrule.monitoring.coreos.com/flowstop created"),
            "{snippet}: {out}"
        );
    }
    assert!(
        !crds(c).contains("flowstop.dev"),
        "a dry run created nothing"
    );

    // A typo or a wrong type is refused by install (and upgrade) too, installing nothing.
    let ns = "flowstop-system";
    for set in ["replicas=2", "replicaCount=two"] {
        let out = helm.refuses(&["install", "flowstop", &chart, "-n", ns, "--set", set]);
        assert!(
            out.contains("values don't meet the specifications of the schema"),
            "{out}"
        );
    }
    assert!(helm.must(&["list", "-n", ns, "-q"]).trim().is_empty());
    assert!(!crds(c).contains("flowstop.dev"));

    // Install: CRDs, RBAC, the Deployment; NOTES say what to run next.
    let notes = helm.must(&["install", "flowstop", &chart, "-n", ns]);
    assert!(
        notes.contains("kubectl -n flowstop-system rollout status deployment/flowstop"),
        "{notes}"
    );
    assert!(crds(c).contains("executionstopsets.flowstop.dev"));
    assert!(deployment_args(c, ns).contains("--policy-mode=open"));
    c.must(
        &[
            "get",
            "clusterrole/flowstop-edit",
            "serviceaccount/flowstop",
            "-n",
            ns,
        ],
        None,
    );

    // Upgrade changes a value; rollback restores it, as a new revision.
    helm.must(&[
        "upgrade",
        "flowstop",
        &chart,
        "-n",
        ns,
        "--reuse-values",
        "--set",
        "policy.mode=enforce",
    ]);
    assert!(deployment_args(c, ns).contains("--policy-mode=enforce"));
    let out = helm.refuses(&[
        "upgrade",
        "flowstop",
        &chart,
        "-n",
        ns,
        "--reuse-values",
        "--set",
        "policy.mode=closed",
    ]);
    assert!(out.contains("policy/mode"), "{out}");
    helm.must(&["rollback", "flowstop", "1", "-n", ns]);
    assert!(deployment_args(c, ns).contains("--policy-mode=open"));
    let history = helm.must(&["history", "flowstop", "-n", ns, "-o", "json"]);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 3, "{history}");

    // Uninstall keeps the CRDs (crds.keep, the default) and removes the rest.
    let out = helm.must(&["uninstall", "flowstop", "-n", ns]);
    assert!(
        out.contains("kept due to the resource policy") || out.contains("uninstalled"),
        "{out}"
    );
    assert!(
        crds(c).contains("executionstops.flowstop.dev"),
        "the CRDs were kept"
    );
    let gone = c.kubectl(&["get", "deployment/flowstop", "-n", ns], None);
    assert!(!gone.status.success(), "the Deployment was removed");
    assert!(
        !c.kubectl(&["get", "clusterrole/flowstop"], None)
            .status
            .success()
    );

    // Installed again, the kept CRDs are adopted; with crds.keep=false, uninstall deletes them.
    helm.must(&[
        "install",
        "flowstop",
        &chart,
        "-n",
        ns,
        "--set",
        "crds.keep=false",
    ]);
    helm.must(&["uninstall", "flowstop", "-n", ns, "--wait"]);
    c.must(
        &[
            "wait",
            "--for=delete",
            "crd/executionstops.flowstop.dev",
            "crd/executionstopsets.flowstop.dev",
            "crd/executionstoppolicies.flowstop.dev",
            "--timeout=60s",
        ],
        None,
    );
    assert!(!crds(c).contains("flowstop.dev"), "{}", crds(c));
}

/// A release of the chart on the shared plane, in a new namespace named like it (so its
/// ClusterRole and ClusterRoleBinding are its own too), without the CRDs (`installed()`
/// has them) or the tenants' roles (aggregated into the built-in roles all tests share): the
/// operator's RBAC only. Its ServiceAccount is named like the release.
fn release(c: &Cluster, helm: &Helm, set: &[&str]) -> String {
    let name = c.namespace("flowstop-rbac");
    let chart = chart();
    let mut args = vec![
        "install",
        name.as_str(),
        &chart,
        "-n",
        name.as_str(),
        "--set",
        "crds.enabled=false",
        "--set",
        "tenantRoles.enabled=false",
    ];
    for s in set {
        args.extend(["--set", s]);
    }
    helm.must(&args);
    name
}

/// `kubectl auth can-i <what>` as the ServiceAccount of `release`, in namespace `ns` or,
/// for None, cluster-wide (`--all-namespaces`).
fn can_i(c: &Cluster, release: &str, what: &[&str], ns: Option<&str>) -> bool {
    let user = format!("system:serviceaccount:{release}:{release}");
    let mut args = vec!["auth", "can-i"];
    args.extend(what);
    args.extend(["--as", &user]);
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let out = c.kubectl(&args, None);
    let answer = String::from_utf8_lossy(&out.stdout);
    if answer.trim() == "yes" {
        true
    } else if answer.starts_with("no") {
        false
    } else {
        panic!(
            "kubectl {args:?}: {answer}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// With `watchNamespaces`, the operator may read Secrets (get only) in those namespaces and
/// nowhere else — not in a namespace it does not watch, not in its own, not cluster-wide —
/// and the same holds for its objects and Events; only policies and namespaces (for tenancy)
/// are read cluster-wide. Without, it may everywhere. Asked of the API server, as users ask.
#[test]
fn with_watch_namespaces_secrets_are_readable_there_only() {
    let c = installed();
    let helm = Helm::new(Some(&c.kubeconfig));
    let (a, b) = (c.namespace("watched-a"), c.namespace("watched-b"));
    let unwatched = c.namespace("unwatched");
    let watching = release(c, &helm, &[&format!("watchNamespaces={{{a},{b}}}")]);
    let everywhere = release(c, &helm, &[]);
    let place = |ns: Option<&str>| ns.map_or("cluster-wide".to_string(), |n| format!("in {n}"));

    // The operator's namespaced rules, all of them: Secrets get, its objects, their
    // status, a set's children, Events.
    let namespaced: [&[&str]; 9] = [
        &["get", "secrets"],
        &["get", "executionstops.flowstop.dev"],
        &["watch", "executionstops.flowstop.dev"],
        &["create", "executionstops.flowstop.dev"],
        &["list", "executionstopsets.flowstop.dev"],
        &[
            "patch",
            "executionstops.flowstop.dev",
            "--subresource=status",
        ],
        &[
            "patch",
            "executionstopsets.flowstop.dev",
            "--subresource=status",
        ],
        &["create", "events.events.k8s.io"],
        &["patch", "events.events.k8s.io"],
    ];
    for what in namespaced {
        for ns in [&a, &b] {
            assert!(
                can_i(c, &watching, what, Some(ns)),
                "{what:?} in watched {ns}: refused"
            );
        }
        for ns in [Some(unwatched.as_str()), Some(watching.as_str()), None] {
            assert!(
                !can_i(c, &watching, what, ns),
                "{what:?} {}: allowed, though watchNamespaces is {a},{b}",
                place(ns)
            );
        }
        for ns in [Some(a.as_str()), Some(unwatched.as_str()), None] {
            assert!(
                can_i(c, &everywhere, what, ns),
                "{what:?} {} without watchNamespaces: refused",
                place(ns)
            );
        }
    }
    // Secrets are never listed or watched, watched namespace or not.
    for verb in ["list", "watch"] {
        for (release, ns) in [(&watching, Some(a.as_str())), (&everywhere, None)] {
            assert!(
                !can_i(c, release, &[verb, "secrets"], ns),
                "{verb} secrets {}",
                place(ns)
            );
        }
    }
    // Tenancy reads policies and namespaces' labels cluster-wide in both.
    for release in [&watching, &everywhere] {
        for what in [
            ["list", "executionstoppolicies.flowstop.dev"],
            ["watch", "namespaces"],
        ] {
            assert!(can_i(c, release, &what, None), "{what:?} cluster-wide");
        }
    }
    for release in [&watching, &everywhere] {
        helm.must(&["uninstall", release, "-n", release]);
    }
}

/// The operator as the chart's ServiceAccount with `watchNamespaces`: the rules the chart
/// gives it in each watched namespace are all it needs there — it becomes ready (its
/// watches and caches), reads an ExecutionStop's Secret, stops the execution, writes
/// status and Events, and a set creates its ExecutionStops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_needs_nothing_more_in_watched_namespaces() {
    let c = installed();
    let helm = Helm::new(Some(&c.kubeconfig));
    let (a, b) = (c.namespace("watched-a"), c.namespace("watched-b"));
    let release = release(c, &helm, &[&format!("watchNamespaces={{{a},{b}}}")]);
    let cloud = Cloud::new(|_| {}).await;
    cloud.flow("f").await;
    for e in ["single", "batch-1", "batch-2"] {
        cloud.start("f", e, None).await;
    }
    for ns in [&a, &b] {
        c.apply(&secret(ns, "creds", AK, SK));
    }
    let op = Operator::launch(Launch {
        binary: workspace_bin(repo(""), "flowstop"),
        kubeconfig: c.service_account_kubeconfig(&release, &release),
        namespace: &format!("{a},{b}"),
        endpoint: &cloud.emu.url(),
        args: &[],
        env: &[],
        log: None,
        ready_within: Duration::from_secs(30),
    })
    .await
    .expect("the operator becomes ready as the chart's ServiceAccount");

    c.apply(
        &ExecutionStop::new(&a, "s1", "f", "single")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &a, "s1", "condition=Ready");
    assert_eq!(status(c, &a, "s1")["phase"], "Stopped");
    wait_event(c, &a, "Normal", "Stopped").await;

    c.apply(&format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStopSet\nmetadata: {{name: s, namespace: {b}}}\n\
         spec:\n  flowName: f\n  credentialsSecretRef: {{name: creds}}\n  selector: {{executionNamePrefix: batch-}}\n  maxCount: 10\n"
    ));
    c.must(
        &[
            "wait",
            "-n",
            &b,
            "executionstopset/s",
            "--for=condition=Ready",
            "--timeout=60s",
        ],
        None,
    );
    let set = c.must(&["get", "-n", &b, "executionstopset/s", "-o", "json"], None);
    let set: serde_json::Value = serde_json::from_str(&set).unwrap();
    assert_eq!(set["status"]["phase"], "Completed", "{set:#}");
    assert_eq!(set["status"]["children"]["stopped"], 2, "{set:#}");
    assert_eq!(cloud.count("StopExecution", "OK"), 3);
    op.stop().await;
    helm.must(&["uninstall", &release, "-n", &release]);
}
