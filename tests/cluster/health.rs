//! GitOps health of real objects, as the tools judge it: kstatus (`status.Compute`, what Flux
//! and kpt use) and Argo CD's resource-customization health.lua run by gopher-lua (the
//! interpreter Argo CD embeds), both in `crates/testkit/tools/health`. Every object here is
//! read back from the API server after the operator wrote it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use testkit::fixtures::ExecutionStop;
use testkit::operator::{installed, repo, setup, wait_for};

fn health() -> PathBuf {
    testkit::tools::tool("health")
}

fn customization(kind: &str) -> PathBuf {
    repo(&format!(
        "deploy/argocd/resource_customizations/flowstop.dev/{kind}"
    ))
}

/// (status, message) from `health ARGS < object`.
fn judge(tool: &Path, args: &[&str], object: &str) -> (String, String) {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "health {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["status"].as_str().unwrap().to_string(),
        v["message"].as_str().unwrap().to_string(),
    )
}

fn get(kind: &str, ns: &str, name: &str) -> String {
    installed().must(&["get", kind, "-n", ns, name, "-o", "yaml"], None)
}

fn set(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStopSet\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  flowName: f\n  credentialsSecretRef: {{name: creds}}\n{spec}"
    )
}

fn wait_set(ns: &str, name: &str, what: &str) {
    installed().must(
        &[
            "wait",
            "-n",
            ns,
            &format!("executionstopset/{name}"),
            &format!("--for={what}"),
            "--timeout=60s",
        ],
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_and_argo_cd_judge_each_phase_as_intended() {
    let c = installed();
    let tool = health();
    let (ns, cloud, op) = setup("health", |_| {}, &[]).await;
    for e in ["e1", "e2", "s1", "s2", "x1", "x2", "x3"] {
        cloud.start("f", e, None).await;
    }
    cloud.stop_out_of_band("f", "e2").await;
    let stop = |name: &str, flow: &str, exec: &str, secret: &str| {
        ExecutionStop::new(&ns, name, flow, exec)
            .secret(secret)
            .yaml()
    };
    c.apply(&stop("stopped", "f", "e1", "creds"));
    c.apply(&stop("already", "f", "e2", "creds"));
    c.apply(&stop("failed", "nope", "x", "creds"));
    c.apply(&stop("pending", "f", "e1", "missing"));
    c.apply(&set(&ns, "preview", "  maxCount: 5\n  dryRun: true\n"));
    c.apply(&set(
        &ns,
        "done",
        "  maxCount: 5\n  selector: {executionNamePrefix: s}\n",
    ));
    c.apply(&set(
        &ns,
        "toomany",
        "  maxCount: 1\n  selector: {executionNamePrefix: x}\n",
    ));
    wait_for(c, &ns, "stopped", "jsonpath={.status.phase}=Stopped");
    wait_for(
        c,
        &ns,
        "already",
        "jsonpath={.status.phase}=AlreadyFinished",
    );
    wait_for(c, &ns, "failed", "jsonpath={.status.phase}=Failed");
    wait_for(
        c,
        &ns,
        "pending",
        "jsonpath={.status.lastError.code}=CredentialsNotFound",
    );
    wait_set(&ns, "preview", "jsonpath={.status.phase}=Previewing");
    wait_set(&ns, "done", "jsonpath={.status.phase}=Completed");
    wait_set(&ns, "toomany", "jsonpath={.status.phase}=Failed");
    op.stop().await;
    // An object no operator has looked at yet: applied in a namespace none watches.
    let idle = c.namespace("health-idle");
    c.apply(&ExecutionStop::new(&idle, "fresh", "f", "e1").yaml());
    c.apply(&set(&idle, "fresh", "  maxCount: 5\n"));

    let stop_lua = customization("ExecutionStop").join("health.lua");
    let set_lua = customization("ExecutionStopSet").join("health.lua");
    let cases = [
        (
            "executionstop",
            &ns,
            "stopped",
            &stop_lua,
            "Current",
            "Healthy",
        ),
        (
            "executionstop",
            &ns,
            "already",
            &stop_lua,
            "Current",
            "Healthy",
        ),
        (
            "executionstop",
            &ns,
            "failed",
            &stop_lua,
            "Failed",
            "Degraded",
        ),
        (
            "executionstop",
            &ns,
            "pending",
            &stop_lua,
            "InProgress",
            "Progressing",
        ),
        (
            "executionstop",
            &idle,
            "fresh",
            &stop_lua,
            "InProgress",
            "Progressing",
        ),
        (
            "executionstopset",
            &ns,
            "preview",
            &set_lua,
            "Current",
            "Healthy",
        ),
        (
            "executionstopset",
            &ns,
            "done",
            &set_lua,
            "Current",
            "Healthy",
        ),
        (
            "executionstopset",
            &ns,
            "toomany",
            &set_lua,
            "Failed",
            "Degraded",
        ),
        (
            "executionstopset",
            &idle,
            "fresh",
            &set_lua,
            "InProgress",
            "Progressing",
        ),
    ];
    for (kind, ns, name, lua, kstatus, argo) in cases {
        let object = get(kind, ns, name);
        if std::env::var_os("FLOWSTOP_UPDATE_TESTDATA").is_some() {
            write_testdata(kind, name, &object);
        }
        let (k, kmsg) = judge(&tool, &["kstatus"], &object);
        assert_eq!(k, kstatus, "kstatus of {kind}/{name}: {kmsg}\n{object}");
        let (a, amsg) = judge(&tool, &["lua", lua.to_str().unwrap()], &object);
        assert_eq!(a, argo, "Argo CD health of {kind}/{name}: {amsg}\n{object}");
        assert!(!amsg.is_empty());
    }
}

/// `FLOWSTOP_UPDATE_TESTDATA=1 cargo test --test cluster kstatus_and_argo`: the objects of
/// this run become the Argo CD testdata (without managedFields and kubectl's annotation).
fn write_testdata(kind: &str, name: &str, object: &str) {
    let mut v: serde_json::Value = serde_yaml_ng::from_str(object).unwrap();
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.remove("managedFields");
    meta.remove("annotations");
    let dir = customization(if kind == "executionstop" {
        "ExecutionStop"
    } else {
        "ExecutionStopSet"
    })
    .join("testdata");
    std::fs::write(
        dir.join(format!("{name}.yaml")),
        serde_yaml_ng::to_string(&v).unwrap(),
    )
    .unwrap();
}

/// Argo CD's own layout: each kind's health_test.yaml, over its testdata (objects read from
/// this API server in each phase), passes under gopher-lua.
#[test]
fn argo_cd_health_tests_pass_under_gopher_lua() {
    let tool = health();
    for kind in ["ExecutionStop", "ExecutionStopSet"] {
        let out = Command::new(&tool)
            .arg("lua-tests")
            .arg(customization(kind))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kind}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok "));
    }
}

/// The README's argocd-cm snippet is the checked-in health.lua, line for line.
#[test]
fn the_readme_snippet_is_the_health_script() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    for kind in ["ExecutionStop", "ExecutionStopSet"] {
        let script = std::fs::read_to_string(customization(kind).join("health.lua")).unwrap();
        let key = format!("resource.customizations.health.flowstop.dev_{kind}: |\n");
        let start = readme
            .find(&key)
            .unwrap_or_else(|| panic!("README lacks {key}"))
            + key.len();
        let indented: String = script.lines().map(|l| format!("  {l}\n")).collect();
        assert!(
            readme[start..].starts_with(&indented),
            "README's {kind} snippet differs from its health.lua"
        );
    }
}
