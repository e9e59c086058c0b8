//! Invalid ExecutionStops are refused by `kubectl apply`, with the field named.

use crate::operator_support::installed;

fn manifest(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: flowstop.dev/v1alpha1\nkind: ExecutionStop\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"
    )
}

#[tokio::test]
async fn invalid_manifests_are_rejected_naming_the_field() {
    let c = installed();
    let ns = c.namespace("admission");
    let long_cause = "x".repeat(4097);
    let long_error = "e".repeat(129);
    let long_name = format!("a{}", "b".repeat(128));
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad flow name", "  flowName: 1flow\n  executionName: e\n".into(), "spec.flowName"),
        ("flow name with a dot", "  flowName: my.flow\n  executionName: e\n".into(), "spec.flowName"),
        ("bad execution name", "  flowName: f\n  executionName: \"exec name\"\n".into(), "spec.executionName"),
        ("unicode name", "  flowName: f\n  executionName: \"执行\"\n".into(), "spec.executionName"),
        ("name too long", format!("  flowName: f\n  executionName: {long_name}\n"), "spec.executionName"),
        ("missing flowName", "  executionName: e\n".into(), "spec.flowName"),
        ("missing executionName", "  flowName: f\n".into(), "spec.executionName"),
        ("empty cause", "  flowName: f\n  executionName: e\n  cause: \"\"\n".into(), "spec.cause"),
        ("cause too long", format!("  flowName: f\n  executionName: e\n  cause: {long_cause}\n"), "spec.cause"),
        ("error too long", format!("  flowName: f\n  executionName: e\n  error: {long_error}\n"), "spec.error"),
        ("maxAttempts zero", "  flowName: f\n  executionName: e\n  maxAttempts: 0\n".into(), "spec.maxAttempts"),
        ("maxAttempts a string", "  flowName: f\n  executionName: e\n  maxAttempts: many\n".into(), "spec.maxAttempts"),
        ("region and endpoint", "  flowName: f\n  executionName: e\n  regionId: cn-hangzhou\n  endpoint: https://x\n".into(), "spec.regionId or spec.endpoint"),
        ("bad region", "  flowName: f\n  executionName: e\n  regionId: CN_Hangzhou\n".into(), "spec.regionId"),
        ("unknown field", "  flowName: f\n  executionName: e\n  namespace: other\n".into(), "spec.namespace"),
        ("secret ref namespace", "  flowName: f\n  executionName: e\n  credentialsSecretRef: {name: s, namespace: other}\n".into(), "credentialsSecretRef.namespace"),
    ];
    for (i, (what, spec, field)) in cases.iter().enumerate() {
        let (ok, out) = c.apply(&manifest(&ns, &format!("bad-{i}"), spec));
        assert!(!ok, "{what}: accepted:\n{out}");
        assert!(
            out.contains(field),
            "{what}: the message does not name {field}:\n{out}"
        );
    }
}

#[tokio::test]
async fn spec_is_immutable_after_creation() {
    let c = installed();
    let ns = c.namespace("immutable");
    let (ok, out) = c.apply(&manifest(&ns, "s", "  flowName: f\n  executionName: e\n"));
    assert!(ok, "{out}");
    let (ok, out) = c.apply(&manifest(
        &ns,
        "s",
        "  flowName: f\n  executionName: other\n",
    ));
    assert!(
        !ok && out.contains("spec is immutable") && out.contains("create a new ExecutionStop"),
        "{out}"
    );
}
