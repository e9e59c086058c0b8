//! `kubectl flowstop`: stop Serverless Workflow executions through the cluster (so RBAC,
//! policies, audit, retries and the quota limiter apply), follow the outcome, and exit with
//! a code a pipeline can trust.
#![forbid(unsafe_code)]

mod cleanup;
mod connect;
mod problem;
mod show;
mod stop;
mod text;
mod watch;

use clap::{CommandFactory, Parser, Subcommand};
use flowstop_api::exit;
use problem::Problem;

const EXIT_CODES: &str = "Exit codes:
  0    stopped (or, with --already-finished-ok, already finished; without --wait, created); a set: every execution final, none failed
  1    could not get an answer: no cluster, no CRD, refused by RBAC, the object exists, lost track of it
  2    usage error
  3    already finished: nothing was stopped
  4    the stop failed (its error code is printed); a set: some stops failed, or more than --max-count matched
  5    forbidden by an ExecutionStopPolicy
  6    timed out before the outcome was known
  7    declined at the prompt: nothing was stopped
  130  interrupted (Ctrl-C, SIGINT) before the outcome was known
  143  terminated (SIGTERM, e.g. a cancelled CI job) before the outcome was known

After any code but 0 and 3, `stop` deletes the ExecutionStop or ExecutionStopSet it created
(a set's ExecutionStops then make no further calls), so nothing goes on acting after it
reported failure; a StopExecution already sent stays sent. A preview that does not go live
is deleted too. --keep leaves them. stderr says what was deleted or kept; a failed delete is
reported there and never changes the exit code.";

/// Stop Alibaba Cloud Serverless Workflow executions through the cluster.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-flowstop",
    bin_name = "kubectl flowstop",
    version,
    about,
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(flatten)]
    kube: connect::KubeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stop one execution (FLOW EXECUTION), or every matching execution of FLOW (with
    /// --max-count and a preview first)
    #[command(after_help = EXIT_CODES)]
    Stop(Box<stop::StopArgs>),
    /// List ExecutionStops and ExecutionStopSets
    Get(show::GetArgs),
    /// Show one ExecutionStop or ExecutionStopSet: phase, attempts, last error,
    /// conditions and recent Events
    Describe(show::DescribeArgs),
    /// Print a completion script for bash, zsh or fish
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[tokio::main]
async fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let code = match run(cli).await {
        Ok(code) => code,
        Err(p) => {
            problem::report(&p);
            p.code
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<i32, Problem> {
    match cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "kubectl-flowstop",
                &mut std::io::stdout(),
            );
            Ok(exit::STOPPED)
        }
        Command::Stop(args) => {
            let k = connect::connect(&cli.kube).await?;
            // Reports its own problem before it cleans up, and exits with its code.
            Ok(stop::stop(&k, *args).await)
        }
        Command::Get(args) => {
            let k = connect::connect(&cli.kube).await?;
            show::get(&k, args).await
        }
        Command::Describe(args) => {
            let k = connect::connect(&cli.kube).await?;
            show::describe(&k, args).await
        }
    }
}
