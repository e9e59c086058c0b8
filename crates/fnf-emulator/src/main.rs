#![forbid(unsafe_code)]
//! `fnf-emulator`: serve the local fnf API until interrupted.

use clap::Parser;
use fnf_emulator::{self as emulator, Config};
use std::io::Write;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if config.log_format == "json" {
        log.json().init()
    } else {
        log.init()
    }
    let running = emulator::start(config).await?;
    // Scripts read the first line to learn the port.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", running.url())?;
    writeln!(out, "admin {}", running.admin_url())?;
    out.flush()?;
    drop(out);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
