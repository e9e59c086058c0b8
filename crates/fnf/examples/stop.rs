//! Stops one execution with keys from the environment:
//! `cargo run -p fnf --example stop -- cn-hangzhou FLOW EXECUTION`.

use fnf::{Account, Client, Credentials, Endpoint, StopRequest, http_client};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [region, flow, execution] = args.as_slice() else {
        return Err("usage: stop REGION FLOW EXECUTION".into());
    };
    let account = Account {
        endpoint: Endpoint::region(region, false)?,
        credentials: Credentials::new(
            std::env::var("ALIBABA_CLOUD_ACCESS_KEY_ID")?,
            std::env::var("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?,
            std::env::var("ALIBABA_CLOUD_SECURITY_TOKEN").ok(),
        ),
    };
    let client = Client::new(
        http_client(Duration::from_secs(5), Duration::from_secs(10)),
        Duration::from_secs(10),
    );
    let request = StopRequest {
        flow_name: flow.clone(),
        execution_name: execution.clone(),
        cause: Some("stopped by the example".into()),
        ..Default::default()
    };
    match client.stop_execution(&account, &request).await {
        Ok(e) => println!(
            "{} (request {})",
            e.status,
            e.request_id.unwrap_or_default()
        ),
        // Typed errors: decide on the kind, show the rest.
        Err(e) if e.kind() == fnf::ErrorKind::AlreadyCompleted => println!("already ended"),
        Err(e) => return Err(format!("{e} (retryable: {})", e.retryable()).into()),
    }
    Ok(())
}
