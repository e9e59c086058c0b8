//! The control plane itself: CRD schema and CEL admission, the status subresource with
//! server-side apply, watches, RBAC with ServiceAccount tokens, and clean teardown.

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use std::time::Duration;
use testkit::cluster::{self as support, cluster};

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.flowstop.dev}
spec:
  group: test.flowstop.dev
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
            x-kubernetes-validations:
            - rule: "self.size <= 10"
              message: "spec.size must be at most 10"
          status:
            type: object
            properties:
              phase: {type: string}
"#;

fn widgets(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "test.flowstop.dev".into(),
        version: "v1".into(),
        api_version: "test.flowstop.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    Api::namespaced_with(client, ns, &ar)
}

#[tokio::test]
async fn crd_cel_status_ssa_and_watch() {
    let c = cluster();
    let (ok, out) = c.try_apply(WIDGET_CRD);
    assert!(ok, "{out}");
    c.must(
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.test.flowstop.dev",
            "--timeout=60s",
        ],
        None,
    );
    let ns = c.namespace("cel");

    let invalid = format!(
        "apiVersion: test.flowstop.dev/v1\nkind: Widget\nmetadata: {{name: big, namespace: {ns}}}\nspec: {{size: 11}}\n"
    );
    let (ok, out) = c.try_apply(&invalid);
    assert!(!ok && out.contains("spec.size must be at most 10"), "{out}");

    let valid = format!(
        "apiVersion: test.flowstop.dev/v1\nkind: Widget\nmetadata: {{name: w, namespace: {ns}}}\nspec: {{size: 3}}\n"
    );
    let (ok, out) = c.try_apply(&valid);
    assert!(ok, "{out}");

    let api = widgets(c.client().await, &ns);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let patch = serde_json::json!({"apiVersion": "test.flowstop.dev/v1", "kind": "Widget", "status": {"phase": "Ready"}});
    api.patch_status(
        "w",
        &PatchParams::apply("flowstop-test").force(),
        &Patch::Apply(&patch),
    )
    .await
    .unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = events.next().await {
            if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev {
                if o.data["status"]["phase"] == "Ready" {
                    return o;
                }
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the status change arrives through the watch");
    let managers = seen.metadata.managed_fields.unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m.manager.as_deref() == Some("flowstop-test")
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref() == Some("status")),
        "status owned by the apply manager: {managers:?}"
    );
    // The spec is untouched by the status write.
    assert_eq!(seen.data["spec"]["size"], 3);
}

#[tokio::test]
async fn service_account_token_is_bound_to_its_namespace() {
    let c = cluster();
    let (home, other) = (c.namespace("rbac-home"), c.namespace("rbac-other"));
    let rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: {home}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: read-cm, namespace: {home}}}\n\
         rules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get, list]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: read-cm, namespace: {home}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-cm}}\n\
         subjects: [{{kind: ServiceAccount, name: reader, namespace: {home}}}]\n"
    );
    let (ok, out) = c.try_apply(&rbac);
    assert!(ok, "{out}");
    let sa = c.service_account_client(&home, "reader").await;
    let inside: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(sa.clone(), &home);
    assert!(
        inside.list(&ListParams::default()).await.is_ok(),
        "allowed in its namespace"
    );
    let outside: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(sa, &other);
    match outside.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403 outside the namespace, got {other:?}"),
    }
}

fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Waits (bounded) until none of `pids` runs.
async fn gone(pids: &[&str]) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pids.iter().any(|p| alive(p)) {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

#[tokio::test]
async fn interrupting_leaves_no_process_behind() {
    // SIGINT to the launcher, as Ctrl-C would.
    let (mut child, _stdin, info) = support::launch(&[]);
    let pids: Vec<String> = support::get(&info, "pids")
        .split(' ')
        .map(String::from)
        .collect();
    assert!(pids.iter().all(|p| alive(p)), "{pids:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "launcher exit: {status:?}");
    assert!(
        gone(&pids.iter().map(String::as_str).collect::<Vec<_>>()).await,
        "etcd/apiserver/controller-manager left after SIGINT: {pids:?}"
    );

    // The test run itself is killed hard: the pipe it held closes, and the plane follows.
    let mut run = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep 600 | exec '{}' control-plane --bin-dir '{}' --follow-stdin",
            env!("CARGO_BIN_EXE_testkit"),
            support::bin_dir().display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let info = support::read_announcement(run.stdout.take().unwrap());
    let pids: Vec<String> = support::get(&info, "pids")
        .split(' ')
        .map(String::from)
        .collect();
    let sleeper = std::process::Command::new("pgrep")
        .args(["-P", &run.id().to_string(), "sleep"])
        .output()
        .unwrap();
    let sleeper = String::from_utf8(sleeper.stdout).unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", sleeper.trim()])
        .status()
        .unwrap();
    run.wait().unwrap();
    assert!(
        gone(&pids.iter().map(String::as_str).collect::<Vec<_>>()).await,
        "etcd/apiserver/controller-manager left after the run was killed: {pids:?}"
    );
}
