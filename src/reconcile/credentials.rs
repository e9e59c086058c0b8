//! Where an ExecutionStop's keys come from: its own Secret (same namespace, `get` only),
//! or the operator's chain (environment or RRSA).

use crate::crd::Target;
use crate::decide::Cannot;
use crate::decide::endpoint;
use fnf::{Account, Credentials, Provider};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

enum Found {
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

/// Secrets read in the last few seconds, by (namespace, name). Without list/watch rights
/// the operator cannot be told of changes; a short lifetime bounds how long a rotated
/// Secret goes unnoticed, and spares the API server one read per object in a burst.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<SecretKey, (Instant, Option<Secret>)>>,
}

/// (namespace, name)
type SecretKey = (String, String);

const SECRET_TTL: Duration = Duration::from_secs(5);

impl SecretCache {
    async fn get(
        &self,
        client: &kube::Client,
        ns: &str,
        name: &str,
    ) -> Result<Option<Secret>, kube::Error> {
        let key = (ns.to_string(), name.to_string());
        if let Some((at, secret)) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if at.elapsed() < SECRET_TTL {
                return Ok(secret.clone());
            }
        }
        let secret = Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < SECRET_TTL);
        entries.insert(key, (Instant::now(), secret.clone()));
        Ok(secret)
    }
}

async fn find(
    client: &kube::Client,
    cache: &SecretCache,
    operator: &Result<Provider, String>,
    ns: &str,
    spec: &impl Target,
) -> Result<Found, kube::Error> {
    let Some(reference) = spec.credentials_secret_ref() else {
        return Ok(match operator {
            Ok(p) => match p.credentials().await {
                Ok(c) => Found::Keys(c, None),
                Err(e) => Found::Missing(format!("operator credentials: {e}")),
            },
            Err(e) => Found::Missing(format!("no credentialsSecretRef and {e}")),
        });
    };
    let Some(secret) = cache.get(client, ns, &reference.name).await? else {
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

/// The endpoint and keys of an object, and the Secret's resourceVersion when the keys came
/// from one. `decide` has judged the endpoint before asking for this read (a refused host
/// sees no lookup, no connection and no key read); here it only becomes the account's URL.
pub async fn account(
    ctx: &super::Context,
    ns: &str,
    spec: &impl Target,
) -> Result<Result<(Account, Option<String>), Cannot>, kube::Error> {
    let endpoint = match endpoint::resolve(spec, &ctx.endpoints) {
        Ok(e) => e,
        Err(cannot) => return Ok(Err(cannot)),
    };
    Ok(
        match find(
            &ctx.client,
            &ctx.secrets,
            &ctx.operator_credentials,
            ns,
            spec,
        )
        .await?
        {
            Found::Keys(credentials, version) => Ok((
                Account {
                    endpoint,
                    credentials,
                },
                version,
            )),
            Found::Missing(m) => Err(Cannot::NoCredentials(m)),
        },
    )
}
