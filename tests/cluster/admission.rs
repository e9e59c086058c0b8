//! Invalid ExecutionStops are refused by `kubectl apply`, with the field named.

use testkit::operator::installed;

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
        ("flowName a number", "  flowName: 123\n  executionName: e\n".into(), "spec.flowName"),
        ("executionName a list", "  flowName: f\n  executionName: [a, b]\n".into(), "spec.executionName"),
        ("cause an object", "  flowName: f\n  executionName: e\n  cause: {why: x}\n".into(), "spec.cause"),
        ("empty executionName", "  flowName: f\n  executionName: \"\"\n".into(), "spec.executionName"),
        ("empty error", "  flowName: f\n  executionName: e\n  error: \"\"\n".into(), "spec.error"),
        ("secret ref a string", "  flowName: f\n  executionName: e\n  credentialsSecretRef: creds\n".into(), "spec.credentialsSecretRef"),
        ("secret ref without name", "  flowName: f\n  executionName: e\n  credentialsSecretRef: {}\n".into(), "spec.credentialsSecretRef.name"),
        ("secret name too long", format!("  flowName: f\n  executionName: e\n  credentialsSecretRef: {{name: {}}}\n", "s".repeat(254)), "spec.credentialsSecretRef.name"),
        ("endpoint not a URL", "  flowName: f\n  executionName: e\n  endpoint: fnf.example.com\n".into(), "spec.endpoint"),
        ("endpoint ftp", "  flowName: f\n  executionName: e\n  endpoint: ftp://fnf.example.com\n".into(), "spec.endpoint"),
        // Only scheme, host and port: anything else could make the same host a new quota
        // bucket, or smuggle a host past a reader (user@host).
        ("endpoint with a fragment", "  flowName: f\n  executionName: e\n  endpoint: \"https://cn-hangzhou.fnf.aliyuncs.com#1\"\n".into(), "spec.endpoint"),
        ("endpoint with a query", "  flowName: f\n  executionName: e\n  endpoint: \"https://cn-hangzhou.fnf.aliyuncs.com/?a=1\"\n".into(), "spec.endpoint"),
        ("endpoint with a path", "  flowName: f\n  executionName: e\n  endpoint: https://cn-hangzhou.fnf.aliyuncs.com/x\n".into(), "spec.endpoint"),
        ("endpoint with user information", "  flowName: f\n  executionName: e\n  endpoint: https://cn-hangzhou.fnf.aliyuncs.com@evil.test/\n".into(), "spec.endpoint"),
        ("maxAttempts too many", "  flowName: f\n  executionName: e\n  maxAttempts: 101\n".into(), "spec.maxAttempts"),
        ("maxAttempts negative", "  flowName: f\n  executionName: e\n  maxAttempts: -1\n".into(), "spec.maxAttempts"),
        ("maxAttempts fractional", "  flowName: f\n  executionName: e\n  maxAttempts: 1.5\n".into(), "spec.maxAttempts"),
        ("huge cause (256 KiB)", format!("  flowName: f\n  executionName: e\n  cause: {}\n", "c".repeat(256 * 1024)), "spec.cause"),
        ("no spec", "".into(), "spec"),
        ("unicode cause over 4096 characters", format!("  flowName: f\n  executionName: e\n  cause: {}\n", "停".repeat(4097)), "spec.cause"),
    ];
    assert!(cases.len() >= 25, "the catalogue has {} cases", cases.len());
    for (i, (what, spec, field)) in cases.iter().enumerate() {
        let (ok, out) = c.try_apply(&manifest(&ns, &format!("bad-{i}"), spec));
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
    let (ok, out) = c.try_apply(&manifest(&ns, "s", "  flowName: f\n  executionName: e\n"));
    assert!(ok, "{out}");
    let (ok, out) = c.try_apply(&manifest(
        &ns,
        "s",
        "  flowName: f\n  executionName: other\n",
    ));
    assert!(
        !ok && out.contains("spec is immutable") && out.contains("create a new ExecutionStop"),
        "{out}"
    );
}
