//! Retention: when a final object deletes itself (`spec.ttlSecondsAfterFinished`, as Jobs
//! have it), and which objects never do — those a GitOps tool manages, which it would only
//! create again (and which would then stop or report again). Pure.

use super::{plus, until};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use std::collections::BTreeMap;
use std::time::Duration;

/// Labels and annotations by which Argo CD and Flux track what they apply: Argo CD's
/// annotation tracking (the default from 3.0) and label tracking (`app.kubernetes.io/instance`,
/// the default before; Helm sets it too, and a Helm release is no place to delete from
/// either), and the labels of Flux's kustomize- and helm-controller.
const GITOPS_ANNOTATIONS: &[&str] = &["argocd.argoproj.io/tracking-id"];
const GITOPS_LABELS: &[&str] = &[
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
];

/// Whether a GitOps tool (or Helm) manages the object: then no TTL ever deletes it.
pub fn managed_by_gitops(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> bool {
    GITOPS_LABELS.iter().any(|l| labels.contains_key(*l))
        || GITOPS_ANNOTATIONS
            .iter()
            .any(|a| annotations.contains_key(*a))
}

/// What a final object's TTL calls for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Retention {
    /// Keep it: no TTL, or a GitOps tool manages it.
    Keep,
    /// Delete it now.
    Delete,
    /// Delete it after this long.
    After(Duration),
}

/// `ttl` after the object became final. It became final when its `Reconciling` condition
/// turned False (no new field: the condition's transition time is that moment, kept across
/// restarts); without one, now.
pub fn retention(
    ttl_seconds: Option<u32>,
    managed: bool,
    conditions: &[Condition],
    now: Timestamp,
) -> Retention {
    let Some(ttl) = ttl_seconds else {
        return Retention::Keep;
    };
    if managed {
        return Retention::Keep;
    }
    let finished = conditions
        .iter()
        .find(|c| c.type_ == super::condition::RECONCILING && c.status == "False")
        .map_or(now, |c| c.last_transition_time.0);
    let due = plus(finished, Duration::from_secs(ttl.into()));
    if due <= now {
        Retention::Delete
    } else {
        Retention::After(until(now, due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: &str) -> Timestamp {
        format!("2024-01-01T00:{s}Z").parse().unwrap()
    }

    fn reconciling(status: &str, at: &str) -> Vec<Condition> {
        vec![Condition {
            type_: "Reconciling".into(),
            status: status.into(),
            reason: "Stopped".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(t(at)),
        }]
    }

    #[test]
    fn a_final_object_is_deleted_its_ttl_after_it_became_final() {
        let done = reconciling("False", "01:00");
        assert_eq!(retention(None, false, &done, t("59:00")), Retention::Keep);
        assert_eq!(
            retention(Some(60), false, &done, t("01:30")),
            Retention::After(Duration::from_secs(30))
        );
        assert_eq!(
            retention(Some(60), false, &done, t("02:00")),
            Retention::Delete
        );
        assert_eq!(
            retention(Some(0), false, &done, t("01:00")),
            Retention::Delete
        );
        // Managed by a GitOps tool: never.
        assert_eq!(retention(Some(0), true, &done, t("59:00")), Retention::Keep);
        // No transition recorded: counted from now.
        assert_eq!(
            retention(Some(60), false, &[], t("05:00")),
            Retention::After(Duration::from_secs(60))
        );
    }

    #[test]
    fn argo_cd_flux_and_helm_tracking_marks_an_object_as_managed() {
        let map = |k: &str| BTreeMap::from([(k.to_string(), "x".to_string())]);
        let none = BTreeMap::new();
        for label in GITOPS_LABELS {
            assert!(managed_by_gitops(&map(label), &none), "{label}");
        }
        assert!(managed_by_gitops(
            &none,
            &map("argocd.argoproj.io/tracking-id")
        ));
        assert!(!managed_by_gitops(&map("team"), &map("note")));
    }
}
