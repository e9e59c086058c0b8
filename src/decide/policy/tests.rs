//! Table tests of the policy verdict.

use super::*;
use crate::crd::ExecutionStopSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

fn team(t: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some([("team".to_string(), t.to_string())].into()),
        match_expressions: None,
    })
}

fn policy(selector: Option<LabelSelector>, flows: &[&str]) -> ExecutionStopPolicySpec {
    ExecutionStopPolicySpec {
        namespace_selector: selector,
        all_namespaces: false,
        flows: flows.iter().map(|f| f.to_string()).collect(),
        regions: vec![],
        operator_credentials: OperatorCredentials::Allow,
    }
}

fn labels(t: &str) -> BTreeMap<String, String> {
    [("team".to_string(), t.to_string())].into()
}

struct Case {
    name: &'static str,
    mode: Mode,
    policies: Vec<(&'static str, ExecutionStopPolicySpec)>,
    team: &'static str,
    flow: &'static str,
    region: Option<&'static str>,
    operator_credentials: bool,
    /// Allowed, or a piece of the denial's message.
    want: Result<(), &'static str>,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            mode: Mode::Enforce,
            policies: vec![
                ("data", policy(team("data"), &["etl-*", "billing-report"])),
                ("web", policy(team("web"), &["frontend-*"])),
            ],
            team: "data",
            flow: "etl-nightly",
            region: Some("cn-hangzhou"),
            operator_credentials: true,
            want: Ok(()),
        }
    }
}

#[test]
fn verdicts() {
    let mut secrets_only = policy(team("data"), &["etl-*"]);
    secrets_only.operator_credentials = OperatorCredentials::Deny;
    let mut hangzhou = policy(team("data"), &["*"]);
    hangzhou.regions = vec!["cn-hangzhou".into()];
    let mut everyone = policy(None, &["shared-*"]);
    everyone.all_namespaces = true;
    let broken = Some(LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "team".into(),
            operator: "Equals".into(),
            values: Some(vec!["data".into()]),
        }]),
    });
    let not_web = Some(LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "team".into(),
            operator: "NotIn".into(),
            values: Some(vec!["web".into()]),
        }]),
    });
    let cases = [
        Case {
            name: "own flow by glob",
            ..Default::default()
        },
        Case {
            name: "own flow by name",
            flow: "billing-report",
            ..Default::default()
        },
        Case {
            name: "another team's flow",
            flow: "frontend-deploy",
            want: Err("data: flow \"frontend-deploy\" is not among its flows"),
            ..Default::default()
        },
        Case {
            name: "the denial names only the policies selecting the namespace",
            flow: "frontend-deploy",
            want: Err("select namespace ns: data: flow"),
            ..Default::default()
        },
        Case {
            name: "a namespace no policy selects, enforced",
            team: "ops",
            want: Err("no ExecutionStopPolicy selects namespace ns"),
            ..Default::default()
        },
        Case {
            name: "a namespace no policy selects, open",
            team: "ops",
            mode: Mode::Open,
            ..Default::default()
        },
        Case {
            name: "a selected namespace is restricted in open mode too",
            mode: Mode::Open,
            flow: "frontend-deploy",
            want: Err("not among its flows"),
            ..Default::default()
        },
        Case {
            name: "no policies at all, open",
            mode: Mode::Open,
            policies: vec![],
            ..Default::default()
        },
        Case {
            name: "no policies at all, enforced",
            policies: vec![],
            want: Err("no ExecutionStopPolicy selects"),
            ..Default::default()
        },
        Case {
            name: "operator credentials where only Secrets are allowed",
            policies: vec![("data", secrets_only.clone())],
            want: Err("only objects with their own spec.credentialsSecretRef"),
            ..Default::default()
        },
        Case {
            name: "own Secret where only Secrets are allowed",
            policies: vec![("data", secrets_only.clone())],
            operator_credentials: false,
            ..Default::default()
        },
        Case {
            name: "some policy allows: the union of policies",
            policies: vec![
                ("strict", secrets_only),
                ("data", policy(team("data"), &["etl-*"])),
            ],
            ..Default::default()
        },
        Case {
            name: "a listed region",
            policies: vec![("hz", hangzhou.clone())],
            ..Default::default()
        },
        Case {
            name: "another region",
            policies: vec![("hz", hangzhou.clone())],
            region: Some("cn-shanghai"),
            want: Err("region cn-shanghai is not among its regions"),
            ..Default::default()
        },
        Case {
            name: "an endpoint whose region cannot be told",
            policies: vec![("hz", hangzhou)],
            region: None,
            want: Err("cannot be told"),
            ..Default::default()
        },
        Case {
            name: "allNamespaces",
            policies: vec![("everyone", everyone)],
            team: "anyone",
            flow: "shared-cleanup",
            ..Default::default()
        },
        Case {
            name: "matchExpressions",
            policies: vec![("not-web", policy(not_web, &["*"]))],
            team: "ops",
            ..Default::default()
        },
        Case {
            name: "an empty selector, refused at admission, fails closed",
            policies: vec![("empty", policy(Some(LabelSelector::default()), &["*"]))],
            mode: Mode::Open,
            want: Err("cannot be read"),
            ..Default::default()
        },
        Case {
            name: "an unreadable selector fails closed in open mode, for every namespace",
            policies: vec![("broken", policy(broken.clone(), &["*"]))],
            mode: Mode::Open,
            team: "ops",
            want: Err("refuses everything until it is fixed"),
            ..Default::default()
        },
        Case {
            name: "another policy still allows beside an unreadable one",
            policies: vec![
                ("broken", policy(broken, &["*"])),
                ("data", policy(team("data"), &["etl-*"])),
            ],
            ..Default::default()
        },
    ];
    for c in cases {
        let policies: Vec<(String, &ExecutionStopPolicySpec)> =
            c.policies.iter().map(|(n, p)| (n.to_string(), p)).collect();
        let ns_labels = labels(c.team);
        let r = Request {
            namespace: "ns",
            namespace_labels: &ns_labels,
            flow: c.flow,
            region: c.region.map(String::from),
            operator_credentials: c.operator_credentials,
        };
        let got = evaluate(c.mode, &policies, &r);
        match (c.want, &got) {
            (Ok(()), Verdict::Allowed) => {}
            (Err(piece), Verdict::Denied(m)) if m.contains(piece) => {
                assert!(
                    !m.contains("frontend-*") && !m.contains("web"),
                    "{}: names another team's policy or flows: {m}",
                    c.name
                );
            }
            (want, got) => panic!("{}: want {want:?}, got {got:?}", c.name),
        }
    }
}

#[test]
fn globs() {
    for (pattern, name, want) in [
        ("etl-*", "etl-nightly", true),
        ("etl-*", "etl-", true),
        ("etl-*", "xetl-a", false),
        ("*", "anything", true),
        ("*-report", "billing-report", true),
        ("*-report", "billing-reports", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "acb", false),
        ("a*a", "a", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        assert_eq!(glob(pattern, name), want, "{pattern} ~ {name}");
    }
}

#[test]
fn regions_of_objects() {
    let default = Endpoint::region("cn-beijing", false).unwrap();
    let spec = |region: Option<&str>, endpoint: Option<&str>| ExecutionStopSpec {
        flow_name: "f".into(),
        execution_name: "e".into(),
        options: crate::crd::StopOptions {
            region_id: region.map(String::from),
            endpoint: endpoint.map(String::from),
            ..Default::default()
        },
        ttl_seconds_after_finished: None,
    };
    for (s, want) in [
        (spec(Some("cn-hangzhou"), None), Some("cn-hangzhou")),
        (spec(None, None), Some("cn-beijing")),
        (
            spec(None, Some("https://cn-shanghai.fnf.aliyuncs.com")),
            Some("cn-shanghai"),
        ),
        (
            spec(None, Some("https://cn-shanghai-internal.fnf.aliyuncs.com/")),
            Some("cn-shanghai"),
        ),
        (
            spec(None, Some("https://1234.ap-southeast-1.fnf.aliyuncs.com")),
            Some("ap-southeast-1"),
        ),
        (spec(None, Some("https://fnf.example.com")), None),
        (spec(None, Some("http://127.0.0.1:8080")), None),
    ] {
        assert_eq!(region_of(&s, Some(&default)).as_deref(), want, "{s:?}");
    }
    assert_eq!(
        region_of(&spec(None, None), None),
        None,
        "no default endpoint"
    );
}
