#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use flowstop::cli;

/// Stop Alibaba Cloud Serverless Workflow executions.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stop one execution now (StopExecution) and print the API's answer
    Stop(cli::StopArgs),
    /// Show one execution (DescribeExecution), optionally waiting for it to end
    Describe(cli::DescribeArgs),
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let code = match Args::parse().command {
        Command::Stop(a) => cli::stop(a).await,
        Command::Describe(a) => cli::describe(a).await,
    };
    std::process::exit(code);
}
