//! The command line, the shipper's own logs, and the edge where errors become messages for
//! people. `src/main.rs` only calls [`main`]; the end-to-end tests build the same program.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::pipeline::{self, Stats};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// Tails container log files and ships them to Grafana Loki without losing or duplicating
/// a line.
#[derive(Parser)]
#[command(name = "tailrace", version)]
struct Cli {
    /// The configuration file (YAML).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the shipper (what `tailrace --config FILE` does).
    Run,
    /// Check the configuration and exit.
    Check,
}

/// Runs the `tailrace` command line.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _log = match tailrace_log::Config::new("tailrace")
        .version(env!("CARGO_PKG_VERSION"))
        .stderr()
        .init()
    {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("tailrace: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let message = describe(&e);
            tracing::error!(error = %message, "tailrace stopped");
            eprintln!("tailrace: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once (a message that already quotes its cause is
/// not followed by it again).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let path = cli
        .config
        .context("no configuration file: pass --config FILE")?;
    let config = Config::load(&path)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            println!("{}: configuration is valid", path.display());
            Ok(())
        }
        Command::Run => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    let _ = stop_tx.send(true);
                });
                tracing::info!(config = %path.display(), loki = %config.loki.url, "tailrace starting");
                pipeline::run(config, stop_rx, Arc::new(Stats::default()))
                    .await
                    .context("the shipper failed")
            })
        }
    }
}

/// SIGTERM (Kubernetes, docker stop) or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("signal received");
}
