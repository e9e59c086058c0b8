//! How a watch reads what exists when it starts: in pages, or streamed.
//!
//! Why it matters: at a restart every object is read once before the operator is ready. In
//! pages that is a list request per 500 objects, each answered, then decoded, then the next
//! asked for — 200 round trips for 100,000 objects. Kubernetes' streaming lists (the
//! `WatchList` feature: `sendInitialEvents` on a watch, on by default from 1.34, off in
//! 1.33, beta in 1.32) send them all on one watch from the API server's cache, then a
//! bookmark that marks the end, while the operator decodes as they come.

use futures::StreamExt;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use std::time::Duration;

/// The `--initial-list` choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialList {
    /// Streamed when the API server supports it (asked once at start), else in pages.
    #[default]
    Auto,
    /// Streamed: one watch sends every object, then a bookmark marks the end.
    Stream,
    /// In pages of 500, a list request each, then a watch.
    Pages,
}

/// The bookmark annotation that ends a streamed initial list.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// How long the probe waits for its end bookmark: a server that ignores
/// `sendInitialEvents` (older than 1.27) never sends one.
const PROBE_WAIT: Duration = Duration::from_secs(3);

impl InitialList {
    /// `Stream` or `Pages`: `Auto` asks the API server, with a streamed watch of `api`
    /// that selects nothing, whether it ends an initial list with the bookmark.
    pub async fn resolve<K>(self, api: &Api<K>) -> InitialList
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        if self != InitialList::Auto {
            return self;
        }
        match tokio::time::timeout(PROBE_WAIT, streams(api)).await {
            Ok(Ok(())) => {
                tracing::info!("initial lists are streamed (the API server supports WatchList)");
                InitialList::Stream
            }
            Ok(Err(why)) => {
                tracing::info!(%why, "initial lists go in pages: the API server does not stream them");
                InitialList::Pages
            }
            Err(_) => {
                tracing::info!(
                    "initial lists go in pages: the API server did not end a streamed list within {PROBE_WAIT:?}"
                );
                InitialList::Pages
            }
        }
    }

    /// The watcher configuration for a resolved choice (`Auto` counts as pages).
    pub fn config(self) -> watcher::Config {
        match self {
            InitialList::Stream => watcher::Config::default().streaming_lists(),
            InitialList::Auto | InitialList::Pages => watcher::Config::default(),
        }
    }
}

/// Whether a streamed watch that selects nothing ends with the initial-events bookmark.
async fn streams<K>(api: &Api<K>) -> Result<(), String>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // A label no object carries: the probe reads no object, only the bookmark.
    let params = WatchParams::streaming_lists()
        .labels("flowstop.dev/initial-list-probe")
        .timeout(PROBE_WAIT.as_secs() as u32);
    let stream = api.watch(&params, "0").await.map_err(|e| e.to_string())?;
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event.map_err(|e| e.to_string())? {
            WatchEvent::Bookmark(b) if b.metadata.annotations.contains_key(INITIAL_EVENTS_END) => {
                return Ok(());
            }
            WatchEvent::Error(e) => return Err(e.message),
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                // The selector matches nothing a user would set; an object that carries it
                // anyway says nothing about streaming.
                tracing::debug!(name = o.name_any(), "initial-list probe saw an object");
            }
            WatchEvent::Bookmark(_) => {}
        }
    }
    Err("the watch ended without the initial-events bookmark".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ExecutionStop;
    use futures::FutureExt;
    use futures::future::BoxFuture;
    use kube::client::Body;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    /// An API server that answers every request with `status` and `body`, and keeps the
    /// requests' URIs.
    #[derive(Clone)]
    struct Server {
        status: u16,
        body: &'static str,
        asked: Arc<Mutex<Vec<String>>>,
    }

    impl tower_service::Service<http::Request<Body>> for Server {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            self.asked.lock().unwrap().push(req.uri().to_string());
            let (status, body) = (self.status, self.body);
            async move {
                Ok(http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(body.as_bytes().to_vec()))
                    .unwrap())
            }
            .boxed()
        }
    }

    async fn resolve(
        choice: InitialList,
        status: u16,
        body: &'static str,
    ) -> (InitialList, Vec<String>) {
        let server = Server {
            status,
            body,
            asked: Default::default(),
        };
        let client = kube::Client::new(server.clone(), "ns");
        let api: Api<ExecutionStop> = Api::namespaced(client, "ns");
        let resolved = choice.resolve(&api).await;
        let asked = server.asked.lock().unwrap().clone();
        (resolved, asked)
    }

    const END: &str = r#"{"type":"BOOKMARK","object":{"apiVersion":"flowstop.dev/v1alpha1","kind":"ExecutionStop","metadata":{"resourceVersion":"7","annotations":{"k8s.io/initial-events-end":"true"}}}}
"#;

    #[tokio::test]
    async fn a_server_that_ends_the_streamed_list_with_the_bookmark_streams() {
        let (resolved, asked) = resolve(InitialList::Auto, 200, END).await;
        assert_eq!(resolved, InitialList::Stream);
        assert_eq!(asked.len(), 1);
        let uri = &asked[0];
        assert!(
            uri.contains("watch=true")
                && uri.contains("sendInitialEvents=true")
                && uri.contains("resourceVersionMatch=NotOlderThan")
                && uri.contains("labelSelector=flowstop.dev%2Finitial-list-probe"),
            "{uri}"
        );
    }

    #[tokio::test]
    async fn a_server_that_refuses_send_initial_events_gets_pages() {
        // What kube-apiserver answers with the WatchList feature gate off (1.33's default).
        let refused = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Invalid","code":422,
            "message":"ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"}"#;
        let (resolved, _) = resolve(InitialList::Auto, 422, refused).await;
        assert_eq!(resolved, InitialList::Pages);
    }

    #[tokio::test]
    async fn a_watch_that_ends_without_the_end_bookmark_gets_pages() {
        // A server that ignores sendInitialEvents: an ordinary watch, bookmarks without the
        // annotation, then the end of the watch.
        let plain = r#"{"type":"BOOKMARK","object":{"apiVersion":"flowstop.dev/v1alpha1","kind":"ExecutionStop","metadata":{"resourceVersion":"7"}}}
"#;
        let (resolved, _) = resolve(InitialList::Auto, 200, plain).await;
        assert_eq!(resolved, InitialList::Pages);
    }

    #[tokio::test]
    async fn a_choice_made_by_flag_asks_nothing() {
        for choice in [InitialList::Stream, InitialList::Pages] {
            let (resolved, asked) = resolve(choice, 500, "{}").await;
            assert_eq!(resolved, choice);
            assert!(asked.is_empty(), "{asked:?}");
        }
    }

    #[test]
    fn only_stream_configures_a_streamed_watch() {
        use watcher::InitialListStrategy::{ListWatch, StreamingList};
        assert_eq!(
            InitialList::Stream.config().initial_list_strategy,
            StreamingList
        );
        assert_eq!(InitialList::Pages.config().initial_list_strategy, ListWatch);
        assert_eq!(InitialList::Auto.config().initial_list_strategy, ListWatch);
    }
}
