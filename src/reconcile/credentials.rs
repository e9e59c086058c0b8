//! Where an ExecutionStop's keys come from: its own Secret (same namespace, `get` only),
//! or the operator's chain (environment or RRSA).

use crate::crd::ExecutionStop;
use crate::fnf::{Credentials, Provider};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

pub enum Found {
    /// The keys, and the Secret's resourceVersion when they came from one.
    Keys(Credentials, Option<String>),
    /// Why there are none (no secret material in the message).
    Missing(String),
}

fn key(secret: &Secret, name: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(name)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub async fn find(
    client: &kube::Client,
    operator: &Result<Provider, String>,
    obj: &ExecutionStop,
) -> Result<Found, kube::Error> {
    let Some(reference) = &obj.spec.credentials_secret_ref else {
        return Ok(match operator {
            Ok(p) => match p.credentials().await {
                Ok(c) => Found::Keys(c, None),
                Err(e) => Found::Missing(format!("operator credentials: {e}")),
            },
            Err(e) => Found::Missing(format!("no credentialsSecretRef and {e}")),
        });
    };
    let ns = obj.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(Found::Missing(format!(
            "Secret {} not found in namespace {ns}",
            reference.name
        )));
    };
    let (Some(id), Some(sk)) = (key(&secret, "accessKeyId"), key(&secret, "accessKeySecret"))
    else {
        return Ok(Found::Missing(format!(
            "Secret {} must have non-empty keys accessKeyId and accessKeySecret",
            reference.name
        )));
    };
    Ok(Found::Keys(
        Credentials::new(id, sk, key(&secret, "securityToken")),
        secret.resource_version(),
    ))
}
