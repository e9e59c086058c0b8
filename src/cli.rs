//! One-off commands on the fnf client: `flowstop stop` and `flowstop describe`.

use crate::exit;
use clap::Args;
use fnf::{
    self, Account, Endpoint, ErrorKind, Execution, FnfError, Provider, StopRequest, Unsigned,
};
use std::time::{Duration, Instant};

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
    /// After an accepted stop, wait (DescribeExecution long-polls) until the execution is
    /// final, and print it
    #[arg(long)]
    pub wait: bool,
    /// How long --wait may take in all, in seconds
    #[arg(long, default_value_t = 300, requires = "wait")]
    pub wait_timeout: u64,
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

/// A client and an account from the flags and the environment.
async fn account(target: &TargetArgs) -> Result<(fnf::Client, Account), FnfError> {
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
    Ok((
        fnf::Client::new(http, Duration::from_secs(target.timeout)),
        account,
    ))
}

/// One call; the API's JSON, checked to be an execution.
async fn call(
    client: &fnf::Client,
    account: &Account,
    unsigned: &Unsigned,
    extra: Duration,
) -> Result<(serde_json::Value, Execution), FnfError> {
    let value: serde_json::Value = client.call(account, unsigned, extra).await?;
    // Check it is an execution at all before calling it a success.
    let execution =
        serde_json::from_value::<Execution>(value.clone()).map_err(|e| FnfError::BadResponse {
            status: 200,
            detail: format!("not an execution: {e}"),
        })?;
    Ok((value, execution))
}

fn print(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a JSON value serializes")
    );
}

/// Prints the error; the exit code for it (README "Exit codes").
fn failed(e: &FnfError) -> i32 {
    eprintln!("error: {e}");
    match e {
        _ if e.kind() == ErrorKind::AlreadyCompleted => exit::ALREADY_FINISHED,
        _ if e.retryable() => exit::RETRYABLE,
        // Nothing was asked of the service: the command or its environment is wrong.
        FnfError::Invalid(_) | FnfError::Credentials(_) => exit::ERROR,
        _ => exit::FAILED,
    }
}

pub async fn stop(args: StopArgs) -> i32 {
    let (client, account) = match account(&args.target).await {
        Ok(a) => a,
        Err(e) => return failed(&e),
    };
    let req = StopRequest {
        flow_name: args.flow.clone(),
        execution_name: args.execution.clone(),
        cause: args.cause,
        error: args.error,
        request_id: args.request_id,
    };
    let (value, execution) = match call(&client, &account, &req.unsigned(), Duration::ZERO).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    print(&value);
    if !args.wait || execution.status.is_final() {
        return exit::STOPPED;
    }
    // Accepted, not yet final: long-poll until it is, or until --wait-timeout.
    let deadline = Instant::now() + Duration::from_secs(args.wait_timeout);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "error: timed out after {} s waiting for execution {} of flow {} to be final",
                args.wait_timeout, args.execution, args.flow
            );
            return exit::TIMEOUT;
        }
        let wait = Some(left.as_secs().clamp(1, 60) as u32);
        let unsigned = Unsigned::describe(&args.flow, &args.execution, wait);
        match call(&client, &account, &unsigned, fnf::long_poll(wait)).await {
            Ok((value, e)) if e.status.is_final() => {
                print(&value);
                if e.status == fnf::ExecutionStatus::Stopped {
                    return exit::STOPPED;
                }
                eprintln!(
                    "execution {} of flow {} ended {} before the stop took effect",
                    args.execution,
                    args.flow,
                    e.status.as_str()
                );
                return exit::ALREADY_FINISHED;
            }
            Ok(_) => {}
            // A retryable error while waiting is waited out; another ends the wait.
            Err(e) if e.retryable() => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => return failed(&e),
        }
    }
}

pub async fn describe(args: DescribeArgs) -> i32 {
    let unsigned = Unsigned::describe(&args.flow, &args.execution, args.wait);
    let result = async {
        let (client, account) = account(&args.target).await?;
        call(&client, &account, &unsigned, fnf::long_poll(args.wait)).await
    }
    .await;
    match result {
        Ok((value, _)) => {
            print(&value);
            exit::STOPPED
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.retryable() {
                exit::RETRYABLE
            } else {
                exit::ERROR
            }
        }
    }
}
