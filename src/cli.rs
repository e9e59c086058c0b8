//! One-off commands on the fnf client: `flowstop stop` and `flowstop describe`.

use clap::Args;
use fnf::{self, Account, Endpoint, FnfError, Provider, StopRequest, Unsigned};
use std::time::Duration;

/// Exit code for an error that may go away by itself (throttling, 5xx, timeouts).
pub const EXIT_RETRYABLE: i32 = 75;
/// Exit code for an error that will not (bad input, not found, auth, no credentials).
pub const EXIT_TERMINAL: i32 = 1;

/// Where calls go by default, shared by the one-off commands and the operator.
#[derive(Args, Clone, Debug)]
pub struct EndpointArgs {
    /// Region id, e.g. cn-hangzhou: calls go to https://<region>.fnf.aliyuncs.com
    #[arg(long, env = "ALIBABA_CLOUD_REGION_ID", conflicts_with = "endpoint")]
    pub region: Option<String>,
    /// Use the region's VPC endpoint (<region>-internal.fnf.aliyuncs.com)
    #[arg(long, env = "FLOWSTOP_INTERNAL_ENDPOINT", requires = "region")]
    pub internal: bool,
    /// Explicit endpoint URL (an emulator, a proxy); plain http only to loopback
    #[arg(long, env = "FLOWSTOP_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Allow a plain-http endpoint that is not on loopback
    #[arg(long, env = "FLOWSTOP_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
}

impl EndpointArgs {
    /// The endpoint these flags name, if any.
    pub fn endpoint(&self) -> Result<Option<Endpoint>, FnfError> {
        match (&self.endpoint, &self.region) {
            (Some(url), _) => Endpoint::url(url, self.allow_insecure_http).map(Some),
            (None, Some(region)) => Endpoint::region(region, self.internal).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// Where a one-off call goes, and how long it may take.
#[derive(Args, Clone, Debug)]
pub struct TargetArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Total time for one call, in seconds (a long-poll wait is added to it)
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Flow name
    #[arg(long)]
    pub flow: String,
    /// Execution name
    #[arg(long)]
    pub execution: String,
    /// Why it is stopped (1–4096 characters)
    #[arg(long)]
    pub cause: Option<String>,
    /// Error code recorded on the execution (1–128 characters)
    #[arg(long)]
    pub error: Option<String>,
    /// Request id to send (the service then answers with it)
    #[arg(long)]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// Flow name
    #[arg(long)]
    pub flow: String,
    /// Execution name
    #[arg(long)]
    pub execution: String,
    /// Long-poll up to this many seconds (0–60) for the execution to end
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=60))]
    pub wait: Option<u32>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs one call and prints the API's JSON; returns the process exit code.
async fn run_call(target: &TargetArgs, unsigned: Unsigned, extra: Duration) -> i32 {
    let result = async {
        let endpoint = target.endpoint.endpoint()?.ok_or_else(|| {
            FnfError::Invalid(
                "no endpoint: pass --region (or ALIBABA_CLOUD_REGION_ID) or --endpoint".into(),
            )
        })?;
        let http = fnf::http_client(Duration::from_secs(5), Duration::from_secs(target.timeout));
        let provider = Provider::from_env(|k| std::env::var(k).ok(), http.clone())?;
        let account = Account {
            endpoint,
            credentials: provider.credentials().await?,
        };
        let client = fnf::Client::new(http, Duration::from_secs(target.timeout));
        let value: serde_json::Value = client.call(&account, &unsigned, extra).await?;
        // Check it is an execution at all before calling it a success.
        serde_json::from_value::<fnf::Execution>(value.clone()).map_err(|e| {
            FnfError::BadResponse {
                status: 200,
                detail: format!("not an execution: {e}"),
            }
        })?;
        Ok::<_, FnfError>(value)
    }
    .await;
    match result {
        Ok(value) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).expect("a JSON value serializes")
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.retryable() {
                EXIT_RETRYABLE
            } else {
                EXIT_TERMINAL
            }
        }
    }
}

pub async fn stop(args: StopArgs) -> i32 {
    let req = StopRequest {
        flow_name: args.flow,
        execution_name: args.execution,
        cause: args.cause,
        error: args.error,
        request_id: args.request_id,
    };
    run_call(&args.target, req.unsigned(), Duration::ZERO).await
}

pub async fn describe(args: DescribeArgs) -> i32 {
    let unsigned = Unsigned::describe(&args.flow, &args.execution, args.wait);
    run_call(&args.target, unsigned, fnf::long_poll(args.wait)).await
}
