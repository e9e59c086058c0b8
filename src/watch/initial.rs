//! How a watch reads what exists when it starts: in pages, or streamed.
//!
//! Why it matters: at a restart every object is read once before the operator is ready. In
//! pages that is a list request per 500 objects, each answered, then decoded, then the next
//! asked for — 200 round trips for 100,000 objects. Kubernetes' streaming lists (the
//! `WatchList` feature: `sendInitialEvents` on a watch, on by default from 1.34, off in
//! 1.33, beta in 1.32) send them all on one watch from the API server's cache, then a
//! bookmark that marks the end, while the operator decodes as they come.
//!
//! A streamed list starts from "any" resourceVersion (kube-runtime's choice), so in a
//! control plane of several API servers it may come from a cache a moment behind the
//! others; the watch then brings it up to date. That cannot make a call: every status write
//! is conditional on the resourceVersion read, and an attempt is on record before its call.

use futures::StreamExt;
use futures::stream::BoxStream;
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

type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// A watcher of `api` whose initial lists (at start, and after the watch is lost) are
/// streamed for `Stream` — until the API server refuses one, then in pages for good — and
/// in pages otherwise. Why the fallback: the probe asked once, but the servers can change
/// under a running operator (an upgrade to 1.33, where WatchList is off; an HA control
/// plane whose servers differ), and a refused streamed list is retried for ever.
pub fn events<K>(api: Api<K>, initial: InitialList) -> Events<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    if initial != InitialList::Stream {
        return watcher::watcher(api, InitialList::Pages.config()).boxed();
    }
    let streamed = watcher::watcher(api.clone(), InitialList::Stream.config()).boxed();
    futures::stream::unfold((streamed, Some(api)), |(mut events, api)| async move {
        let event = events.next().await?;
        match (&event, api) {
            (Err(e), Some(api)) if refused(e) => {
                tracing::warn!(error = %e, "the API server refused a streamed initial list; listing in pages from now on");
                let paged = watcher::watcher(api, InitialList::Pages.config()).boxed();
                Some((event, (paged, None)))
            }
            (_, api) => Some((event, (events, api))),
        }
    })
    .boxed()
}

/// Whether a watcher error is the API server refusing `sendInitialEvents` (422 Invalid
/// with the WatchList gate off; 400 from a server that rejects the parameters).
fn refused(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 422 || s.code == 400)
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

    /// An API server that answers each request as `answer` says from its URI, and keeps
    /// the URIs.
    #[derive(Clone)]
    struct Server {
        answer: fn(&str) -> (u16, &'static str),
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
            let uri = req.uri().to_string();
            self.asked.lock().unwrap().push(uri.clone());
            let (status, body) = (self.answer)(&uri);
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

    fn api(answer: fn(&str) -> (u16, &'static str)) -> (Api<ExecutionStop>, Server) {
        let server = Server {
            answer,
            asked: Default::default(),
        };
        let client = kube::Client::new(server.clone(), "ns");
        (Api::namespaced(client, "ns"), server)
    }

    async fn resolve(
        choice: InitialList,
        answer: fn(&str) -> (u16, &'static str),
    ) -> (InitialList, Vec<String>) {
        let (api, server) = api(answer);
        let resolved = choice.resolve(&api).await;
        let asked = server.asked.lock().unwrap().clone();
        (resolved, asked)
    }

    const END: &str = r#"{"type":"BOOKMARK","object":{"apiVersion":"flowstop.dev/v1alpha1","kind":"ExecutionStop","metadata":{"resourceVersion":"7","annotations":{"k8s.io/initial-events-end":"true"}}}}
"#;

    /// What kube-apiserver answers a streamed watch with the WatchList gate off (1.33).
    const REFUSED: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Invalid","code":422,
        "message":"ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"}"#;

    #[tokio::test]
    async fn a_server_that_ends_the_streamed_list_with_the_bookmark_streams() {
        let (resolved, asked) = resolve(InitialList::Auto, |_| (200, END)).await;
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
        let (resolved, asked) = resolve(InitialList::Auto, |_| (422, REFUSED)).await;
        assert_eq!(resolved, InitialList::Pages);
        assert_eq!(asked.len(), 1, "{asked:?}");
    }

    #[tokio::test]
    async fn a_watch_that_ends_without_the_end_bookmark_gets_pages() {
        // A server that ignores sendInitialEvents: an ordinary watch, bookmarks without the
        // annotation, then the end of the watch.
        let plain = |_: &str| {
            (
                200,
                r#"{"type":"BOOKMARK","object":{"apiVersion":"flowstop.dev/v1alpha1","kind":"ExecutionStop","metadata":{"resourceVersion":"7"}}}
"#,
            )
        };
        let (resolved, _) = resolve(InitialList::Auto, plain).await;
        assert_eq!(resolved, InitialList::Pages);
    }

    #[tokio::test]
    async fn a_choice_made_by_flag_asks_nothing() {
        for choice in [InitialList::Stream, InitialList::Pages] {
            let (resolved, asked) = resolve(choice, |_| (500, "{}")).await;
            assert_eq!(resolved, choice);
            assert!(asked.is_empty(), "{asked:?}");
        }
    }

    /// The servers changed under the operator (WatchList turned off): the refused streamed
    /// list is followed by a list in pages, not by the same refusal for ever.
    #[tokio::test]
    async fn a_refused_streamed_list_falls_back_to_pages_for_good() {
        let (api, server) = api(|uri| {
            if uri.contains("sendInitialEvents=true") {
                (422, REFUSED)
            } else if uri.contains("watch=true") {
                (200, "")
            } else {
                (
                    200,
                    r#"{"apiVersion":"flowstop.dev/v1alpha1","kind":"ExecutionStopList","metadata":{"resourceVersion":"5"},"items":[]}"#,
                )
            }
        });
        let got: Vec<_> = events(api, InitialList::Stream).take(3).collect().await;
        assert!(
            matches!(&got[0], Err(e) if refused(e)),
            "{:?}",
            got[0].as_ref().err()
        );
        assert!(matches!(got[1], Ok(watcher::Event::Init)));
        assert!(matches!(got[2], Ok(watcher::Event::InitDone)));
        let asked = server.asked.lock().unwrap().clone();
        assert!(asked[0].contains("sendInitialEvents=true"), "{asked:?}");
        assert!(
            asked[1..].iter().all(|u| !u.contains("sendInitialEvents")),
            "{asked:?}"
        );
        assert!(!asked[1].contains("watch=true"), "a list: {asked:?}");
    }

    /// A watch that keeps failing is counted (`flowstop_watch_errors_total`, which
    /// FlowstopWatchFailing alerts on) as it is retried with backoff.
    #[tokio::test(start_paused = true)]
    async fn a_failing_watch_is_counted_at_each_retry() {
        let (api, server) = api(|_| {
            (
                500,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"InternalError","code":500,"message":"etcd is away"}"#,
            )
        });
        let metrics = std::sync::Arc::new(crate::telemetry::Metrics::default());
        let events =
            super::super::stripped(api, InitialList::Pages, metrics.clone(), "ExecutionStop");
        let mut events = std::pin::pin!(events);
        // Only each try's Init comes out (errors are counted, not passed on); the clock is
        // paused, so the backoff's sleeps pass at once.
        let mut got = vec![];
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(event) = events.next().await {
                got.push(event);
            }
        })
        .await;
        assert!(
            got.iter().all(|e| matches!(e, watcher::Event::Init)),
            "no object from a failing watch"
        );
        let text = metrics.encode();
        let failures: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("flowstop_watch_errors_total{kind=\"ExecutionStop\"} "))
            .unwrap_or_else(|| panic!("{text}"))
            .parse()
            .unwrap();
        let asked = server.asked.lock().unwrap().len() as f64;
        assert_eq!(failures, asked, "one count per failed request");
        // The backoff's pace (0.8 s doubling, with jitter): a handful of tries in a minute,
        // not one a second (the paged watcher's Init before each try must not reset it).
        assert!(
            (3.0..=10.0).contains(&failures),
            "{failures} failures in 60 s: {text}"
        );
        assert!(
            text.contains("flowstop_watch_errors_total{kind=\"ExecutionStopSet\"} 0"),
            "{text}"
        );
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
