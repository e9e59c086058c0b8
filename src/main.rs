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
    /// Run the operator: watch ExecutionStops and stop their executions
    Run(flowstop::run::RunArgs),
    /// Stop one execution now (StopExecution) and print the API's answer
    Stop(cli::StopArgs),
    /// Show one execution (DescribeExecution), optionally waiting for it to end
    Describe(cli::DescribeArgs),
    /// Print the ExecutionStop CustomResourceDefinition (YAML)
    Crd,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match &args.command {
        Command::Run(a) => flowstop::telemetry::init_logs(a.log_format),
        // One-off commands print results on stdout and errors on stderr; logs only on request.
        _ => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init(),
    }
    let code = match args.command {
        Command::Run(a) => match flowstop::run::run(a).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("{e:#}");
                1
            }
        },
        Command::Stop(a) => cli::stop(a).await,
        Command::Describe(a) => cli::describe(a).await,
        Command::Crd => {
            print!("{}", flowstop::crd::crd_yaml());
            0
        }
    };
    std::process::exit(code);
}
