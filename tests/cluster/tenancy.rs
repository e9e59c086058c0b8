//! Tenancy end to end: ExecutionStopPolicies decide which namespaces may stop which flows,
//! with users impersonated through `kubectl --as` so that RBAC is Kubernetes' own, and the
//! aggregated roles filled by kube-controller-manager.

use testkit::cloud::{AK, Cloud, SK};
use testkit::cluster::Cluster;
use testkit::fixtures::{ExecutionStop, secret};
use testkit::operator::{Operator, eventually, installed, status, wait_event, wait_for};

/// The operator's own keys (environment, as RRSA would give it keys).
const OPERATOR_KEY_ID: &str = "operatorKeyId";
const OPERATOR_SECRET: &str = "operatorSecret";

/// A namespace labelled for one team of this test (labels unique to the test, so the
/// policies here select no other test's namespaces).
fn team_namespace(c: &Cluster, team: &str, test: &str) -> String {
    let ns = c.namespace(team);
    c.must(
        &[
            "label",
            "namespace",
            &ns,
            &format!("tenancy-test-{test}={team}"),
        ],
        None,
    );
    ns
}

fn policy(name: &str, test: &str, team: &str, rest: &str) -> String {
    format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStopPolicy\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {{matchLabels: {{tenancy-test-{test}: {team}}}}}\n{rest}"
    )
}

/// `kubectl --as USER apply -f -`: (success, output).
fn apply_as(c: &Cluster, user: &str, yaml: &str) -> (bool, String) {
    let out = c.kubectl(&["--as", user, "apply", "-f", "-"], Some(yaml));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Gives `user` a built-in role (edit, view) in `ns`, as a namespace owner would.
fn grant(c: &Cluster, ns: &str, role: &str, user: &str) {
    c.must(
        &[
            "create",
            "rolebinding",
            &format!("{user}-{role}"),
            "-n",
            ns,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ],
        None,
    );
}

/// kube-controller-manager fills the aggregated roles shortly after they are created.
async fn wait_aggregated(c: &Cluster, user: &str, ns: &str) {
    eventually("edit aggregates flowstop-edit", || async {
        can_i(c, user, "create", "executionstops.flowstop.dev", Some(ns))
    })
    .await;
}

/// Can `user` do `verb` on `resource` (in `ns`, if given)? `kubectl auth can-i`, as a person asks.
fn can_i(c: &Cluster, user: &str, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = c.kubectl(&args, None);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

async fn cloud_with(flows: &[&str], executions: &[(&str, &str)]) -> Cloud {
    let cloud = Cloud::new(|c| {
        c.access_keys
            .push((OPERATOR_KEY_ID.into(), OPERATOR_SECRET.into()));
    })
    .await;
    for f in flows {
        cloud.flow(f).await;
    }
    for (f, e) in executions {
        cloud.start(f, e, None).await;
    }
    cloud
}

async fn operator(namespaces: &[&str], cloud: &Cloud, extra: &[&str]) -> Operator {
    Operator::start_with(
        &namespaces.join(","),
        &cloud.emu.url(),
        extra,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", OPERATOR_KEY_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", OPERATOR_SECRET),
        ],
        None,
    )
    .await
}

fn stop(ns: &str, name: &str, flow: &str, execution: &str) -> ExecutionStop {
    ExecutionStop::new(ns, name, flow, execution)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_teams_each_stop_only_their_own_flows() {
    let c = installed();
    let (data, web) = (
        team_namespace(c, "data", "two"),
        team_namespace(c, "web", "two"),
    );
    c.apply(&policy(
        "two-data",
        "two",
        "data",
        "  flows: [\"etl-*\"]\n  operatorCredentials: Allow\n",
    ));
    c.apply(&policy(
        "two-web",
        "two",
        "web",
        "  flows: [\"frontend\"]\n  operatorCredentials: Allow\n",
    ));
    for (ns, user) in [(&data, "alice"), (&web, "bob")] {
        grant(c, ns, "edit", user);
        wait_aggregated(c, user, ns).await;
    }
    let cloud = cloud_with(
        &["etl-nightly", "frontend"],
        &[
            ("etl-nightly", "e1"),
            ("frontend", "w1"),
            ("frontend", "w2"),
        ],
    )
    .await;
    let op = operator(&[&data, &web], &cloud, &["--policy-mode", "enforce"]).await;

    // Each team's editor applies, as themselves; the operator's credentials do the rest.
    let (ok, out) = apply_as(c, "alice", &stop(&data, "own", "etl-nightly", "e1").yaml());
    assert!(ok, "{out}");
    let (ok, out) = apply_as(c, "alice", &stop(&data, "theirs", "frontend", "w1").yaml());
    assert!(ok, "{out}");
    let (ok, out) = apply_as(c, "bob", &stop(&web, "own", "frontend", "w2").yaml());
    assert!(ok, "{out}");

    wait_for(c, &data, "own", "jsonpath={.status.phase}=Stopped");
    wait_for(c, &web, "own", "jsonpath={.status.phase}=Stopped");
    wait_for(
        c,
        &data,
        "theirs",
        "jsonpath={.status.lastError.code}=Forbidden",
    );
    let s = status(c, &data, "theirs");
    assert_eq!(s["lastError"]["code"], "Forbidden", "{s:#}");
    let message = s["lastError"]["message"].as_str().unwrap();
    assert!(
        message.contains("two-data"),
        "names the policy that selects it: {message}"
    );
    assert!(
        message.contains("\"frontend\""),
        "says which flow: {message}"
    );
    assert!(
        !message.contains("two-web"),
        "another team's policy is not named: {message}"
    );
    assert_eq!(s["attempts"], 0, "{s:#}");
    assert_eq!(s["conditions"][0]["reason"], "Forbidden", "{s:#}");
    wait_event(c, &data, "Warning", "Forbidden").await;
    // Two stops made, and none for the refused one: the execution is still running.
    assert_eq!(cloud.count("StopExecution", "OK"), 2);
    assert_eq!(cloud.calls("StopExecution"), 2);
    let metrics = op.metrics_text().await;
    assert!(
        metrics.contains("flowstop_policy_denials_total{kind=\"ExecutionStop\"} 1"),
        "{metrics}"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_only_sets_and_later_policy_changes() {
    let c = installed();
    let ns = team_namespace(c, "data", "secrets");
    c.apply(&secret(&ns, "creds", AK, SK));
    c.apply(&policy(
        "secrets-data",
        "secrets",
        "data",
        "  flows: [\"etl-*\"]\n",
    ));
    let cloud = cloud_with(
        &["etl-nightly", "billing"],
        &[
            ("etl-nightly", "e1"),
            ("etl-nightly", "e2"),
            ("billing", "b1"),
            ("billing", "b2"),
        ],
    )
    .await;
    let op = operator(
        &[&ns],
        &cloud,
        &["--policy-mode", "enforce", "--policy-recheck-seconds", "1"],
    )
    .await;

    // The operator's credentials, where the policy allows only Secrets: refused.
    c.apply(&stop(&ns, "operator-keys", "etl-nightly", "e1").yaml());
    // The same flow with the namespace's own Secret: allowed.
    c.apply(
        &stop(&ns, "own-keys", "etl-nightly", "e2")
            .secret("creds")
            .yaml(),
    );
    // A set over a flow no policy allows: refused before it lists anything.
    c.apply(&format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStopSet\nmetadata: {{name: billing, namespace: {ns}}}\nspec:\n  flowName: billing\n  maxCount: 5\n  credentialsSecretRef: {{name: creds}}\n"
    ));
    wait_for(c, &ns, "own-keys", "jsonpath={.status.phase}=Stopped");
    wait_for(
        c,
        &ns,
        "operator-keys",
        "jsonpath={.status.lastError.code}=Forbidden",
    );
    let s = status(c, &ns, "operator-keys");
    assert!(
        s["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("credentialsSecretRef"),
        "{s:#}"
    );
    let out = c.kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "executionstopset/billing",
            "--for=jsonpath={.status.lastError.code}=Forbidden",
            "--timeout=60s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cloud.calls("ListExecutions"),
        0,
        "a refused set lists nothing"
    );
    assert_eq!(cloud.calls("StopExecution"), 1, "only the allowed stop");

    // What happens later: the platform team allows billing. A refused object is looked at
    // again (every second here) and goes ahead; the refused set lists and stops.
    c.apply(&policy(
        "secrets-billing",
        "secrets",
        "data",
        "  flows: [\"billing\"]\n",
    ));
    let out = c.kubectl(
        &[
            "wait",
            "-n",
            &ns,
            "executionstopset/billing",
            "--for=condition=Ready",
            "--timeout=60s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cloud.count("StopExecution", "OK"), 3, "e2, b1 and b2");
    // Still refused, and waiting: the operator's credentials are allowed by no policy.
    let s = status(c, &ns, "operator-keys");
    assert_eq!(
        (s["phase"].as_str(), s["attempts"].as_u64()),
        (Some("Pending"), Some(0)),
        "{s:#}"
    );
    // A policy removed while an object retries refuses its next attempt; final objects
    // stay final.
    cloud.fault("StopExecution=500,500,500,500,500,500,500,500");
    c.apply(
        &stop(&ns, "retrying", "etl-nightly", "e1")
            .secret("creds")
            .yaml(),
    );
    wait_for(c, &ns, "retrying", "jsonpath={.status.phase}=Retrying");
    c.must(&["delete", "executionstoppolicy", "secrets-data"], None);
    wait_for(
        c,
        &ns,
        "retrying",
        "jsonpath={.status.lastError.code}=Forbidden",
    );
    let s = status(c, &ns, "retrying");
    assert_eq!(s["phase"], "Pending", "{s:#}");
    let calls = cloud.calls("StopExecution");
    assert!(
        s["attempts"].as_u64().unwrap() < 8,
        "refused before its attempts ran out: {s:#}"
    );
    // Looked at every second, refused each time: no further call.
    let reconciles = op.metric("flowstop_reconciles_total").await;
    eventually("three more rechecks", || async {
        op.metric("flowstop_reconciles_total").await >= reconciles + 3.0
    })
    .await;
    assert_eq!(cloud.calls("StopExecution"), calls, "no call once refused");
    assert_eq!(status(c, &ns, "own-keys")["phase"], "Stopped");
    assert_eq!(cloud.count("StopExecution", "OK"), 3);
    c.must(&["delete", "executionstoppolicy", "secrets-billing"], None);
    op.stop().await;
}

/// Open mode (the default): a namespace that no policy selects behaves as before any
/// policy existed, and a selected one only as its policies say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_restricts_only_selected_namespaces() {
    let c = installed();
    let free = c.namespace("free");
    let held = team_namespace(c, "data", "open");
    c.apply(&policy(
        "open-data",
        "open",
        "data",
        "  flows: [\"etl-*\"]\n",
    ));
    for ns in [&free, &held] {
        c.apply(&secret(ns, "creds", AK, SK));
    }
    let cloud = cloud_with(&["billing"], &[("billing", "b1"), ("billing", "b2")]).await;
    let op = operator(&[&free, &held], &cloud, &[]).await;
    c.apply(&stop(&free, "s", "billing", "b1").secret("creds").yaml());
    c.apply(&stop(&held, "s", "billing", "b2").secret("creds").yaml());
    wait_for(c, &free, "s", "jsonpath={.status.phase}=Stopped");
    wait_for(c, &held, "s", "jsonpath={.status.lastError.code}=Forbidden");
    assert_eq!(status(c, &held, "s")["lastError"]["code"], "Forbidden");
    assert_eq!(cloud.calls("StopExecution"), 1);
    c.must(&["delete", "executionstoppolicy", "open-data"], None);
    op.stop().await;
}

/// The roles aggregate into Kubernetes' own: a namespace editor may create ExecutionStops,
/// a viewer may only read them, and neither may touch policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_editors_stop_viewers_read_and_only_admins_write_policies() {
    let c = installed();
    let ns = c.namespace("roles");
    grant(c, &ns, "edit", "erin");
    grant(c, &ns, "view", "victor");
    grant(c, &ns, "admin", "ada");
    wait_aggregated(c, "erin", &ns).await;
    for resource in [
        "executionstops.flowstop.dev",
        "executionstopsets.flowstop.dev",
    ] {
        for verb in ["create", "delete", "patch"] {
            assert!(
                can_i(c, "erin", verb, resource, Some(&ns)),
                "edit {verb} {resource}"
            );
            assert!(
                can_i(c, "ada", verb, resource, Some(&ns)),
                "admin {verb} {resource}"
            );
            assert!(
                !can_i(c, "victor", verb, resource, Some(&ns)),
                "view {verb} {resource}"
            );
        }
        for verb in ["get", "list", "watch"] {
            assert!(
                can_i(c, "victor", verb, resource, Some(&ns)),
                "view {verb} {resource}"
            );
        }
        assert!(
            !can_i(c, "erin", "create", resource, Some("default")),
            "only in their namespace"
        );
    }
    for user in ["erin", "victor", "ada"] {
        for verb in ["create", "update", "delete"] {
            assert!(
                !can_i(c, user, verb, "executionstoppolicies.flowstop.dev", None),
                "{user} {verb} policies"
            );
        }
    }
    assert!(can_i(
        c,
        "victor",
        "get",
        "executionstops.flowstop.dev/status",
        Some(&ns)
    ));
    // And as kubectl users meet it: the editor applies, the viewer is refused by RBAC.
    let (ok, out) = apply_as(c, "erin", &stop(&ns, "by-editor", "f", "e").yaml());
    assert!(ok, "{out}");
    let (ok, out) = apply_as(c, "victor", &stop(&ns, "by-viewer", "f", "e").yaml());
    assert!(!ok && out.contains("forbidden"), "{out}");
    let (ok, out) = apply_as(
        c,
        "ada",
        &policy("roles-nope", "roles", "x", "  flows: [\"*\"]\n"),
    );
    assert!(!ok && out.contains("forbidden"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_are_rejected_naming_the_field() {
    let c = installed();
    let doc = |spec: &str| {
        format!(
            "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStopPolicy\nmetadata: {{name: bad-policy}}\nspec:\n{spec}"
        )
    };
    for (spec, says) in [
        (
            "  namespaceSelector: {}\n  flows: [\"*\"]\n",
            "spec.allNamespaces: true instead",
        ),
        (
            "  namespaceSelector: {matchLabels: {}}\n  flows: [\"*\"]\n",
            "spec.namespaceSelector is empty",
        ),
        ("  flows: [\"*\"]\n", "spec.namespaceSelector"),
        (
            "  allNamespaces: true\n  namespaceSelector: {matchLabels: {a: b}}\n  flows: [\"*\"]\n",
            "not both",
        ),
        (
            "  allNamespaces: true\n  flows: [\"etl-?\"]\n",
            "spec.flows[0]",
        ),
        (
            "  allNamespaces: true\n  flows: [\"etl/x\"]\n",
            "spec.flows[0]",
        ),
        ("  allNamespaces: true\n  flows: []\n", "spec.flows"),
        ("  allNamespaces: true\n", "spec.flows"),
        (
            "  allNamespaces: true\n  flows: [\"*\"]\n  regions: [\"CN HANGZHOU\"]\n",
            "spec.regions[0]",
        ),
        (
            "  allNamespaces: true\n  flows: [\"*\"]\n  operatorCredentials: Maybe\n",
            "spec.operatorCredentials",
        ),
    ] {
        let (ok, out) = c.try_apply(&doc(spec));
        assert!(!ok, "accepted:\n{spec}");
        assert!(out.contains(says), "{spec}: {out}");
    }
    // A valid one (selecting no namespace of the other tests running meanwhile).
    let (ok, out) = c.try_apply(&doc(
        "  namespaceSelector: {matchLabels: {tenancy-test-bad: nobody}}\n  flows: [\"etl-*\", \"*-report\"]\n  regions: [cn-hangzhou]\n  operatorCredentials: Allow\n",
    ));
    assert!(ok, "{out}");
    c.must(&["delete", "executionstoppolicy", "bad-policy"], None);
}
