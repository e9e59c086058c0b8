//! `flowstop run`: the operator. Flags are parsed once here and passed down as values;
//! `run` is a composition of the named steps below.

use crate::cli::EndpointArgs;
use crate::decide::Tuning;
use crate::decide::endpoint::{DEFAULT_ALLOWED_HOSTS, Endpoints, HostPattern, parse_allowlist};
use crate::decide::policy::Mode;
use crate::lease::{self, LeaseConfig};
use crate::ratelimit::{Lane, Limit, RateLimiter};
use crate::reconcile::{self, Context};
use crate::telemetry::{self, LogFormat, Metrics};
use crate::watch::{self, InitialList};
use anyhow::Context as _;
use fnf::Provider;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, controller};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Namespaces to watch (repeat or comma-separate); all namespaces when empty
    #[arg(long = "namespace", env = "FLOWSTOP_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// The default endpoint, for objects that set neither regionId nor endpoint
    #[command(flatten)]
    pub default_endpoint: EndpointArgs,
    /// Hosts that objects using the operator's own credentials may name in spec.endpoint
    /// (comma-separated; `*` stands for one DNS label). Objects with their own Secret may
    /// name any endpoint; regionId and the operator's default are always allowed.
    #[arg(long, env = "FLOWSTOP_ALLOWED_ENDPOINT_HOSTS", default_value = DEFAULT_ALLOWED_HOSTS, value_parser = parse_allowlist)]
    pub allowed_endpoint_hosts: std::vec::Vec<HostPattern>,
    /// PEM file of extra CA certificates to trust for fnf and STS calls (a private
    /// endpoint, a TLS-inspecting proxy), on top of the built-in roots
    #[arg(long, env = "FLOWSTOP_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<std::path::PathBuf>,
    /// Objects reconciled at the same time, in each of the two lanes (single
    /// ExecutionStops, and those created by ExecutionStopSets)
    #[arg(long, env = "FLOWSTOP_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
    /// StopExecution and ListExecutions calls per second per AccessKeyId and region: both
    /// draw on the service's "other operations" bucket (it allows 2)
    #[arg(long, env = "FLOWSTOP_STOP_RATE", default_value_t = 2.0)]
    pub stop_rate: f64,
    /// StopExecution and ListExecutions burst per AccessKeyId and region (the service
    /// allows 10)
    #[arg(long, env = "FLOWSTOP_STOP_BURST", default_value_t = 10.0)]
    pub stop_burst: f64,
    /// DescribeExecution calls per second (the service allows 5, burst 50)
    #[arg(long, env = "FLOWSTOP_DESCRIBE_RATE", default_value_t = 5.0)]
    pub describe_rate: f64,
    #[arg(long, env = "FLOWSTOP_DESCRIBE_BURST", default_value_t = 50.0)]
    pub describe_burst: f64,
    /// How often a dry-run ExecutionStopSet counts its matches again, in seconds
    #[arg(long, env = "FLOWSTOP_PREVIEW_REFRESH_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub preview_refresh_seconds: u64,
    /// Attempts for objects that do not set maxAttempts
    #[arg(long, env = "FLOWSTOP_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: u32,
    /// First retry delay, in milliseconds (doubles per attempt, with full jitter)
    #[arg(long, env = "FLOWSTOP_BACKOFF_BASE_MS", default_value_t = 1000)]
    pub backoff_base_ms: u64,
    /// Longest retry delay, in milliseconds
    #[arg(long, env = "FLOWSTOP_BACKOFF_MAX_MS", default_value_t = 60_000)]
    pub backoff_max_ms: u64,
    /// Total time for one fnf call, in seconds
    #[arg(long, env = "FLOWSTOP_CALL_TIMEOUT", default_value_t = 10)]
    pub call_timeout: u64,
    /// Long-poll of DescribeExecution when confirming a stop, in seconds (0–60)
    #[arg(long, env = "FLOWSTOP_DESCRIBE_WAIT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=60))]
    pub describe_wait: u32,
    /// How often an object whose credentials were rejected (403) checks whether its
    /// Secret changed (one get), in seconds
    #[arg(long, env = "FLOWSTOP_CREDENTIALS_RECHECK_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub credentials_recheck_seconds: u64,
    /// After this long, an object whose credentials were rejected tries once more even
    /// if nothing changed, in seconds
    #[arg(long, env = "FLOWSTOP_CREDENTIALS_RETRY_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub credentials_retry_seconds: u64,
    /// Address of /metrics, /healthz and /readyz
    #[arg(long, env = "FLOWSTOP_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader with a Lease, so several replicas can run
    #[arg(long, env = "FLOWSTOP_LEADER_ELECTION")]
    pub leader_election: bool,
    #[arg(long, env = "FLOWSTOP_LEASE_NAME", default_value = "flowstop")]
    pub lease_name: String,
    /// Namespace of the Lease (in a cluster: the operator's own)
    #[arg(long, env = "POD_NAMESPACE", default_value = "flowstop-system")]
    pub lease_namespace: String,
    /// This replica's name in the Lease and in Events
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[arg(long, env = "FLOWSTOP_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..))]
    pub lease_seconds: u64,
    /// Tenancy: `open` restricts only namespaces that some ExecutionStopPolicy selects;
    /// `enforce` allows an object only if some policy selects its namespace and allows it
    #[arg(long, env = "FLOWSTOP_POLICY_MODE", value_enum, default_value_t = Mode::Open)]
    pub policy_mode: Mode,
    /// How often an object refused by the policies is looked at again, in seconds
    #[arg(long, env = "FLOWSTOP_POLICY_RECHECK_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub policy_recheck_seconds: u64,
    /// How long StopExecution may be throttled (429) in a row before an ExecutionStop gives
    /// up (Failed, RetriesExhausted), in seconds. A 429 never counts against maxAttempts
    #[arg(long, env = "FLOWSTOP_THROTTLE_LIMIT_SECONDS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub throttle_limit_seconds: u64,
    /// How many pages of ListExecutions (99 executions each) one ExecutionStopSet listing
    /// may read; past it the set fails (EndlessListing): an endpoint that keeps answering
    /// with a NextToken cannot keep a set listing for ever
    #[arg(long, env = "FLOWSTOP_LIST_PAGE_LIMIT", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub list_page_limit: u32,
    /// After SIGTERM, how long the reconciles under way may take to finish before the
    /// operator exits without them, in seconds (keep it under the Pod's
    /// terminationGracePeriodSeconds, 30 by default)
    #[arg(long, env = "FLOWSTOP_SHUTDOWN_GRACE_SECONDS", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..))]
    pub shutdown_grace_seconds: u64,
    /// How the watches read what exists when the operator starts: `stream` (one watch
    /// request; Kubernetes' WatchList, on by default from 1.34), `pages` (a list request per
    /// 500 objects), or `auto`: stream if the API server does, asked once at start
    #[arg(long, env = "FLOWSTOP_INITIAL_LIST", value_enum, default_value_t = InitialList::Auto)]
    pub initial_list: InitialList,
    /// Log format
    #[arg(long, env = "FLOWSTOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Why the operator stopped working.
#[derive(Clone, Copy, Debug)]
enum Exit {
    /// SIGTERM or SIGINT: a clean shutdown.
    Signal,
    /// Another replica took the Lease: exit so a fresh replica can stand by.
    LostLeadership,
}

/// Resolves once the operator must stop, telling why; cloned by everything that stops.
type ExitSignal = Shared<BoxFuture<'static, Exit>>;

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("flowstop-{:08x}", rand::random::<u32>()));
    let metrics = Arc::new(Metrics::default());
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let (ctx, policy_watch) = context(&args, client.clone(), metrics.clone(), &identity, stopping)?;
    let admin = admin_server(args.metrics_addr, metrics.clone()).await?;
    let lease = lease_config(&args, identity);
    // The Lease is renewed until the controllers have stopped — also while they finish the
    // reconciles under way after a signal; losing it at any moment stops everything at once.
    let holder = if args.leader_election {
        Some(lead(&client, &lease, &metrics).await)
    } else {
        None
    };
    tokio::spawn(policy_watch);
    let stop_renewing = holder.as_ref().map(|h| h.abort_handle());
    let lost = lost_lease(holder);
    let exit = exit_signal(lost.clone());
    tokio::spawn({
        let exit = exit.clone();
        async move {
            exit.await;
            let _ = stopping_tx.send(true);
        }
    });
    let policy_stores = ctx.policies.stores();
    let first = args.namespaces.first().map(String::as_str);
    let initial = (args.initial_list)
        .resolve(&scoped::<crate::crd::ExecutionStop>(&client, first))
        .await;
    let (controllers, scopes) = controllers(&args, ctx, initial, exit.clone());
    metrics.count_objects_in(scopes.clone());
    tokio::spawn(ready_when_synced(scopes, policy_stores, metrics));
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    until_stopped(controllers, lost, exit.clone(), grace, admin).await?;
    match exit.await {
        Exit::Signal => {
            // The controllers have stopped: hand the Lease over now rather than make the
            // standby wait for it to expire (a rolling restart, a drain).
            if let Some(renewing) = stop_renewing {
                renewing.abort();
                lease::release(&client, &lease).await;
            }
            Ok(())
        }
        Exit::LostLeadership => {
            anyhow::bail!("lost leadership; exiting so a fresh replica can stand by")
        }
    }
}

fn lease_config(args: &RunArgs, identity: String) -> LeaseConfig {
    LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity,
        duration: Duration::from_secs(args.lease_seconds),
        renew_every: Duration::from_secs((args.lease_seconds / 3).max(1)),
    }
}

/// Waits to hold the Lease, then renews it in a task that ends once leadership is lost.
async fn lead(
    client: &kube::Client,
    lease: &LeaseConfig,
    metrics: &Metrics,
) -> tokio::task::JoinHandle<()> {
    // A healthy standby is ready; the leader is ready again once its watches sync.
    metrics.ready.store(true, Ordering::Relaxed);
    let renewed = lease::acquire(client, lease).await;
    metrics.ready.store(false, Ordering::Relaxed);
    let (client, lease) = (client.clone(), lease.clone());
    tokio::spawn(async move { lease::hold(&client, &lease, renewed).await })
}

/// Resolves once the renewing task ends; never without leader election.
fn lost_lease(holder: Option<tokio::task::JoinHandle<()>>) -> Shared<BoxFuture<'static, ()>> {
    async move {
        match holder {
            Some(h) => {
                let _ = h.await;
            }
            None => std::future::pending().await,
        }
    }
    .boxed()
    .shared()
}

/// Waits for the controllers to stop (after `exit`, once the reconciles under way are
/// done); an error if leadership is lost, the grace period runs out or the health
/// endpoints fail.
async fn until_stopped(
    controllers: BoxFuture<'static, ()>,
    lost: Shared<BoxFuture<'static, ()>>,
    exit: ExitSignal,
    grace: Duration,
    admin: BoxFuture<'static, anyhow::Error>,
) -> anyhow::Result<()> {
    // Told to stop, the controllers finish the reconciles under way — within the grace
    // period: a call that never answers must not keep the process (and its leadership)
    // alive. Leaving one unfinished is safe: its attempt is on record, as after a crash.
    let overdue = async move {
        exit.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = controllers => {}
        () = lost => {
            anyhow::bail!("lost leadership; exiting so a fresh replica can stand by")
        }
        () = overdue => anyhow::bail!(
            "the reconciles under way did not finish within {grace:?} of the signal to stop; \
             exiting without them"
        ),
        // The health endpoints are how Kubernetes knows we are alive: without them, stop.
        failed = admin => return Err(failed),
    }
    Ok(())
}

/// Everything a reconcile needs, from the flags.
fn context(
    args: &RunArgs,
    client: kube::Client,
    metrics: Arc<Metrics>,
    identity: &str,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Arc<Context>, BoxFuture<'static, ()>)> {
    let timeout = Duration::from_secs(args.call_timeout);
    let extra_ca = match &args.extra_ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let http = fnf::http_client_trusting(
        Duration::from_secs(5).min(timeout),
        timeout,
        extra_ca.as_deref(),
    )?;
    let operator_credentials =
        Provider::from_env(|k| std::env::var(k).ok(), http.clone()).map_err(|e| e.to_string());
    let (policies, policy_watch) =
        reconcile::policy::Policies::watch(&client, args.policy_mode, metrics.clone());
    let ctx = Arc::new(Context {
        fnf: Arc::new(fnf::Client::new(http, timeout)),
        endpoints: Endpoints {
            default: args.default_endpoint.endpoint()?,
            allow_insecure_http: args.default_endpoint.allow_insecure_http,
            allowed_hosts: args.allowed_endpoint_hosts.clone(),
        },
        operator_credentials,
        tuning: Tuning {
            max_attempts: args.max_attempts,
            backoff_base: Duration::from_millis(args.backoff_base_ms),
            backoff_max: Duration::from_millis(args.backoff_max_ms),
            describe_wait: args.describe_wait,
            credentials_recheck: Duration::from_secs(args.credentials_recheck_seconds),
            credentials_retry: Duration::from_secs(args.credentials_retry_seconds),
            preview_refresh: Duration::from_secs(args.preview_refresh_seconds),
            policy_recheck: Duration::from_secs(args.policy_recheck_seconds),
            throttle_limit: Duration::from_secs(args.throttle_limit_seconds),
            list_page_limit: args.list_page_limit,
            ..Tuning::default()
        },
        policies,
        stop_limiter: RateLimiter::new(Limit {
            burst: args.stop_burst,
            per_second: args.stop_rate,
        }),
        describe_limiter: RateLimiter::new(Limit {
            burst: args.describe_burst,
            per_second: args.describe_rate,
        }),
        sets: std::sync::OnceLock::new(),
        stopping,
        metrics,
        secrets: reconcile::SecretCache::default(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "flowstop".into(),
                instance: Some(identity.to_string()),
            },
        ),
        client,
    });
    Ok((ctx, policy_watch))
}

/// Serves /metrics, /healthz and /readyz; the future ends only if the server fails.
async fn admin_server(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> anyhow::Result<BoxFuture<'static, anyhow::Error>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .context("binding the metrics address")?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(axum::serve(listener, telemetry::router(metrics)).into_future());
    Ok(async move {
        match server.await {
            Ok(Ok(())) => anyhow::anyhow!("the metrics server stopped"),
            Ok(Err(e)) => anyhow::Error::new(e).context("the metrics server failed"),
            Err(e) => anyhow::Error::new(e).context("the metrics server panicked"),
        }
    }
    .boxed())
}

/// Resolves once the operator must stop: a signal, or (with leader election) a lost Lease.
fn exit_signal(lost: Shared<BoxFuture<'static, ()>>) -> ExitSignal {
    async move {
        tokio::select! {
            () = lost => Exit::LostLeadership,
            () = shutdown_signal() => Exit::Signal,
        }
    }
    .boxed()
    .shared()
}

/// Per watched namespace (or for all): one watch per kind (`watch::scope`) shared by two
/// controllers for ExecutionStops (single ones, and those of sets: see the lanes below) and
/// one for ExecutionStopSets, stopping gracefully on `exit`; and what the watches hold.
fn controllers(
    args: &RunArgs,
    ctx: Arc<Context>,
    initial: InitialList,
    exit: ExitSignal,
) -> (BoxFuture<'static, ()>, Vec<watch::Scope>) {
    let scopes: Vec<Option<&str>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut runs: Vec<BoxFuture<'static, ()>> = vec![];
    let mut held = vec![];
    for ns in scopes {
        let (scope, wakes, watching) = watch::scope(
            scoped(&ctx.client, ns),
            scoped(&ctx.client, ns),
            initial,
            ctx.metrics.clone(),
        );
        tokio::spawn(watching);
        // Two lanes, each with its own workers: single ExecutionStops, and those created by
        // sets. A set of thousands waiting for the quota never holds the workers a single
        // stop needs (and the limiter lets singles book ahead of it).
        for (lane, woken) in [(Lane::Interactive, wakes.singles), (Lane::Bulk, wakes.bulk)] {
            let exit = exit.clone();
            runs.push(
                Controller::for_stream(futures::stream::pending(), scope.stops.clone())
                    .reconcile_on(woken)
                    .with_config(controller::Config::default().concurrency(args.concurrency))
                    .graceful_shutdown_on(async move {
                        exit.await;
                    })
                    .run(
                        move |o, c| reconcile::stop::reconcile(o, c, lane),
                        reconcile::stop::error_policy,
                        ctx.clone(),
                    )
                    .for_each(log_error)
                    .boxed(),
            );
        }
        let set_ctx = Arc::new(reconcile::set::SetContext::new(ctx.clone(), &scope));
        let exit = exit.clone();
        runs.push(
            // Children's progress wakes the set (its writes are paced by `decide::set::pace`).
            Controller::for_stream(futures::stream::pending(), scope.sets.clone())
                .reconcile_on(wakes.sets)
                .with_config(controller::Config::default().concurrency(4))
                .graceful_shutdown_on(async move {
                    exit.await;
                })
                .run(
                    reconcile::set::reconcile,
                    reconcile::set::error_policy,
                    set_ctx,
                )
                .for_each(log_error)
                .boxed(),
        );
        held.push(scope);
    }
    let _ = ctx.sets.set(held.iter().map(|s| s.sets.clone()).collect());
    let all = futures::future::join_all(runs).map(|_| ()).boxed();
    (all, held)
}

fn scoped<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn log_error<T, E: std::fmt::Display>(r: Result<T, E>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "controller");
    }
}

/// /readyz turns ready once every watch has listed its objects, the ExecutionStopPolicies
/// and namespaces included: until then no object can be judged.
async fn ready_when_synced(
    scopes: Vec<watch::Scope>,
    (policies, namespaces): (
        Store<crate::crd::policy::ExecutionStopPolicy>,
        Store<kube::api::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>,
    ),
    metrics: Arc<Metrics>,
) {
    for s in scopes {
        reconcile::policy::wait_ready(&s.stops).await;
        reconcile::policy::wait_ready(&s.sets).await;
    }
    reconcile::policy::wait_ready(&policies).await;
    reconcile::policy::wait_ready(&namespaces).await;
    metrics.ready.store(true, Ordering::Relaxed);
    tracing::info!("watches synced; ready");
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
