//! Typed builders for the objects tests apply: an ExecutionStop and its Secret. They
//! serialize to JSON, which `kubectl apply -f -` reads as YAML.

use serde_json::{Map, Value, json};

/// An ExecutionStop, built field by field.
#[derive(Clone, Debug)]
pub struct ExecutionStop {
    namespace: String,
    name: String,
    spec: Map<String, Value>,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
}

impl ExecutionStop {
    pub fn new(namespace: &str, name: &str, flow: &str, execution: &str) -> Self {
        let mut spec = Map::new();
        spec.insert("flowName".into(), flow.into());
        spec.insert("executionName".into(), execution.into());
        Self {
            namespace: namespace.into(),
            name: name.into(),
            spec,
            labels: Map::new(),
            annotations: Map::new(),
        }
    }

    fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.spec.insert(field.into(), value.into());
        self
    }

    /// `credentialsSecretRef`: a Secret of the object's namespace.
    pub fn secret(self, name: &str) -> Self {
        self.with("credentialsSecretRef", json!({ "name": name }))
    }

    pub fn cause(self, cause: &str) -> Self {
        self.with("cause", cause)
    }

    pub fn error(self, error: &str) -> Self {
        self.with("error", error)
    }

    pub fn endpoint(self, url: &str) -> Self {
        self.with("endpoint", url)
    }

    pub fn region(self, region: &str) -> Self {
        self.with("regionId", region)
    }

    pub fn max_attempts(self, n: u32) -> Self {
        self.with("maxAttempts", n)
    }

    pub fn ttl(self, seconds: u32) -> Self {
        self.with("ttlSecondsAfterFinished", seconds)
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub fn yaml(&self) -> String {
        json!({
            "apiVersion": "flowstop.dev/v1alpha1",
            "kind": "ExecutionStop",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": self.labels,
                "annotations": self.annotations,
            },
            "spec": self.spec,
        })
        .to_string()
    }
}

/// A credentials Secret as users create it (`accessKeyId`, `accessKeySecret`).
pub fn secret(namespace: &str, name: &str, access_key_id: &str, access_key_secret: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name, "namespace": namespace },
        "stringData": { "accessKeyId": access_key_id, "accessKeySecret": access_key_secret },
    })
    .to_string()
}

/// Several objects in one `kubectl apply`.
pub fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| serde_json::from_str(&i).expect("a fixture is JSON"))
        .collect();
    json!({ "apiVersion": "v1", "kind": "List", "items": items }).to_string()
}
