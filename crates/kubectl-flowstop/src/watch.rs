//! Following one object through a watch that starts before the object is created, so every
//! change the operator writes is seen, in order.

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use std::fmt::Debug;
use tokio::time::Instant;

pub struct Follow<K: 'static> {
    events: BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
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
    K::DynamicType: Default,
{
    /// Starts watching the namespace and returns once the watch has listed it.
    pub async fn start(api: Api<K>) -> Result<Self, String> {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        loop {
            match events.next().await {
                Some(Ok(watcher::Event::InitDone)) => return Ok(Self { events }),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the watch ended".into()),
            }
        }
    }

    /// The next version of the object with this uid.
    pub async fn next(&mut self, uid: &str, deadline: Instant) -> Result<K, Stopped> {
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .map_err(|_| Stopped::Deadline)?;
            match event {
                Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)))
                    if o.uid().as_deref() == Some(uid) =>
                {
                    return Ok(o);
                }
                Some(Ok(watcher::Event::Delete(o))) if o.uid().as_deref() == Some(uid) => {
                    return Err(Stopped::Deleted);
                }
                Some(Ok(_)) => {}
                // The watch retries by itself (with backoff); only its end is final.
                Some(Err(_)) => {}
                None => return Err(Stopped::Watch("the watch ended".into())),
            }
        }
    }
}
