//! Following one object from the moment it was created: a watch on its name from the
//! resourceVersion of the create, so every change the operator writes is seen, in order,
//! and nothing else in the namespace is streamed.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::Resource;
use kube::api::{Api, WatchEvent, WatchParams};
use std::fmt::Debug;
use tokio::time::Instant;

pub struct Follow<K: 'static> {
    api: Api<K>,
    name: String,
    resource_version: String,
    events: Option<BoxStream<'static, Result<WatchEvent<K>, kube::Error>>>,
}

/// Why following stopped before the object was final.
pub enum Stopped {
    Deadline,
    Deleted,
    Watch(String),
}

impl<K> Follow<K>
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned + Send + 'static,
{
    /// Follows `created` (as the create returned it) from there on.
    pub fn after(api: Api<K>, created: &K) -> Self {
        Self {
            api,
            name: created.meta().name.clone().unwrap_or_default(),
            resource_version: created.meta().resource_version.clone().unwrap_or_default(),
            events: None,
        }
    }

    /// The object's next version.
    pub async fn next(&mut self, deadline: Instant) -> Result<K, Stopped> {
        loop {
            if self.events.is_none() {
                let params = WatchParams::default()
                    .fields(&format!("metadata.name={}", self.name))
                    .timeout(290);
                let stream = tokio::time::timeout_at(
                    deadline,
                    self.api.watch(&params, &self.resource_version),
                )
                .await
                .map_err(|_| Stopped::Deadline)?
                .map_err(|e| Stopped::Watch(e.to_string()))?;
                self.events = Some(stream.boxed());
            }
            let events = self.events.as_mut().expect("opened above");
            let event = tokio::time::timeout_at(deadline, events.try_next())
                .await
                .map_err(|_| Stopped::Deadline)?;
            match event {
                Ok(Some(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                    self.resource_version = o.meta().resource_version.clone().unwrap_or_default();
                    return Ok(o);
                }
                Ok(Some(WatchEvent::Deleted(_))) => return Err(Stopped::Deleted),
                Ok(Some(WatchEvent::Bookmark(b))) => {
                    self.resource_version = b.metadata.resource_version;
                }
                // Too old a resourceVersion (410) or a broken stream: read the object as it
                // is now and watch again from there.
                Ok(Some(WatchEvent::Error(_))) | Err(_) => {
                    self.events = None;
                    let now = tokio::time::timeout_at(deadline, self.api.get_opt(&self.name))
                        .await
                        .map_err(|_| Stopped::Deadline)?
                        .map_err(|e| Stopped::Watch(e.to_string()))?;
                    let Some(o) = now else {
                        return Err(Stopped::Deleted);
                    };
                    self.resource_version = o.meta().resource_version.clone().unwrap_or_default();
                    return Ok(o);
                }
                // The server ended the watch (its timeout): open it again.
                Ok(None) => self.events = None,
            }
        }
    }
}
