//! The command line, the shipper's own logs, and the edge where errors become messages for
//! people. `src/main.rs` only calls [`main`]; the end-to-end tests build the same program.
//!
//! `tailrace --config FILE` (or `tailrace run`) runs; SIGHUP reloads the file (a bad new
//! file is reported and the running configuration goes on); SIGTERM or SIGINT stop.
//! `check` validates and prints the effective configuration (`check --explain FILE` shows
//! what each stage does to a file's first lines), `positions` lists what the
//! positions file knows, `probe URL` is a health check for images without a shell,
//! `convert promtail.yaml` prints a tailrace configuration made from a Promtail one.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::model::FileId;
use crate::observe::telemetry::Telemetry;
use crate::pipeline::{self, Mode};
use crate::runtime::checkpoint::{Positions, TakeoverNote};
use crate::runtime::shutdown::Shutdown;
use crate::runtime::takeover;

/// Tails container log files and ships them to Grafana Loki without losing or duplicating
/// a line.
#[derive(Parser)]
#[command(name = "tailrace", version)]
struct Cli {
    #[command(flatten)]
    options: Options,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options every command that reads the configuration takes.
#[derive(Args, Clone, Default)]
struct Options {
    /// The configuration file (YAML; `${VAR}` and `${VAR:-default}` are expanded).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Push to this URL instead of the file's `loki.url`.
    #[arg(long, global = true, value_name = "URL")]
    loki_url: Option<String>,
    /// Keep positions in this file instead of the file's `positions.path`.
    #[arg(long, global = true, value_name = "FILE")]
    positions: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the shipper (what `tailrace --config FILE` does).
    Run {
        /// Print each entry it would push as a JSON line on stdout; push nothing, write no
        /// positions.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the configuration, print it with every default filled in, and exit.
    Check {
        /// Instead of the configuration, show what each stage does to the first lines of
        /// this log file (read with the input whose paths match it).
        #[arg(long, value_name = "FILE.log")]
        explain: Option<PathBuf>,
        /// How many lines of the file `--explain` looks at.
        #[arg(long, default_value_t = 20, requires = "explain")]
        lines: usize,
    },
    /// List the files the positions file knows: offset, size now, and unread bytes (and what
    /// was taken over from Promtail).
    Positions {
        #[command(subcommand)]
        action: Option<PositionsAction>,
    },
    /// Print a tailrace configuration made from a Promtail one, and what could not be
    /// converted (on stderr, and as comments at the end).
    Convert {
        /// The Promtail configuration file.
        #[arg(value_name = "promtail.yaml")]
        file: PathBuf,
        /// Exit 1 if anything could not be converted.
        #[arg(long)]
        strict: bool,
    },
    /// GET a URL and exit 0 on a 2xx answer (a container health check with no shell).
    Probe {
        /// For example http://127.0.0.1:9080/ready
        url: String,
    },
}

#[derive(Subcommand)]
enum PositionsAction {
    /// Take over Promtail's positions file now, as `positions.takeover_from` does at the first
    /// start, and print what was taken over and what was refused. Run it while tailrace is
    /// stopped; it refuses when a takeover was made already.
    Import {
        /// Promtail's positions file (its `positions.filename`).
        #[arg(value_name = "PROMTAIL_FILE")]
        file: PathBuf,
        /// Print what would be taken over; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
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
        Ok(code) => code,
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

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let command = cli.command.unwrap_or(Command::Run { dry_run: false });
    if let Command::Probe { url } = &command {
        return Ok(match probe(url, Duration::from_secs(5)) {
            Ok(status) => {
                println!("{url}: {status}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{url}: {e}");
                std::process::ExitCode::FAILURE
            }
        });
    }
    if let Command::Convert { file, strict } = &command {
        return convert(file, *strict);
    }
    let options = cli.options;
    let config = load(&options)?;
    match command {
        Command::Check {
            explain: Some(file),
            lines,
        } => {
            let stdout = std::io::stdout();
            crate::explain::explain(&config, &file, lines, &mut stdout.lock())?;
        }
        Command::Check { explain: None, .. } => {
            let path = options.config.unwrap_or_default();
            println!(
                "# {}: the configuration is valid. As it runs, defaults filled in:",
                path.display()
            );
            print!("{}", config.effective_yaml());
        }
        Command::Positions { action: None } => print_positions(&config.positions.path)?,
        Command::Positions {
            action: Some(PositionsAction::Import { file, dry_run }),
        } => import_positions(&config, &file, dry_run)?,
        Command::Run { dry_run } => {
            let mode = if dry_run { Mode::DryRun } else { Mode::Ship };
            serve(options, config, mode)?;
        }
        Command::Probe { .. } | Command::Convert { .. } => unreachable!("handled above"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The configuration file with the command line's overrides applied.
fn load(options: &Options) -> anyhow::Result<Config> {
    let path = options
        .config
        .as_deref()
        .context("no configuration file: pass --config FILE")?;
    let mut config = Config::load(path)?;
    if let Some(url) = &options.loki_url {
        // Checked as the file's own value would be.
        let text = format!("loki: {{url: {url:?}}}\ninputs: [{{paths: ['/x']}}]\n");
        Config::from_yaml_with_env(&text, Path::new("--loki-url"), |_| None)?;
        config.loki.url = url.clone();
    }
    if let Some(positions) = &options.positions {
        config.positions.path = positions.clone();
    }
    Ok(config)
}

/// Runs the pipeline until SIGTERM/SIGINT, restarting it with the new file on SIGHUP.
fn serve(options: Options, mut config: Config, mode: Mode) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let path = options.config.clone().unwrap_or_default();
        loop {
            tracing::info!(config = %path.display(), loki = %config.loki.url, ?mode, "tailrace starting");
            let telemetry = Arc::new(Telemetry::new(config.server.unready_after.0));
            let shutdown = Shutdown::new();
            let mut running = tokio::spawn(pipeline::run_with(
                config.clone(),
                shutdown.clone(),
                telemetry,
                mode,
            ));
            let next = loop {
                tokio::select! {
                    finished = &mut running => {
                        return finished
                            .context("the shipper panicked")?
                            .context("the shipper failed");
                    }
                    _ = term.recv() => break None,
                    _ = tokio::signal::ctrl_c() => break None,
                    _ = hangup.recv() => match load(&options) {
                        Ok(new) => break Some(new),
                        Err(e) => tracing::error!(
                            error = %describe(&e),
                            "SIGHUP: the new configuration is not valid; the running one goes on"
                        ),
                    },
                }
            };
            tracing::info!(reload = next.is_some(), "signal received: stopping the pipeline");
            shutdown.request();
            running
                .await
                .context("the shipper panicked")?
                .context("the shipper failed")?;
            match next {
                Some(new) => {
                    tracing::info!("configuration reloaded");
                    config = new;
                }
                None => return Ok(()),
            }
        }
    })
}

/// `tailrace convert FILE`: the configuration on stdout, the notes on stderr. Exit 1 when
/// no input could be converted (the output cannot run), or with `--strict` when anything
/// could not be.
fn convert(file: &Path, strict: bool) -> anyhow::Result<std::process::ExitCode> {
    let conversion = crate::convert::convert_file(file)?;
    print!("{}", conversion.yaml);
    let mut err = std::io::stderr().lock();
    for note in &conversion.not_converted {
        writeln!(err, "not converted: {note}")?;
    }
    if conversion.inputs == 0 {
        writeln!(
            err,
            "{}: no scrape config could be converted: the output needs an input before it can run",
            file.display()
        )?;
        return Ok(std::process::ExitCode::FAILURE);
    }
    // The output as `check` would read it here: a secret file that exists only where
    // tailrace will run is worth a warning, not a failure.
    if let Err(e) = Config::from_yaml(&conversion.yaml, Path::new("(converted)")) {
        writeln!(
            err,
            "warning: `tailrace check` does not accept the output on this machine: {e}"
        )?;
    }
    if strict && !conversion.not_converted.is_empty() {
        writeln!(
            err,
            "{}: {} setting(s) not converted (--strict)",
            file.display(),
            conversion.not_converted.len()
        )?;
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `tailrace positions`: one line per known file.
fn print_positions(path: &Path) -> anyhow::Result<()> {
    let positions = Positions::read(path).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    let files = match positions.len() {
        1 => "1 file".to_owned(),
        n => format!("{n} files"),
    };
    writeln!(out, "# {} ({files})", path.display())?;
    // IN_FLIGHT: bytes past the offset that may have been sent; after a crash they are
    // looked up in Loki at the next start rather than sent again blindly.
    writeln!(
        out,
        "{:>12} {:>12} {:>12} {:>12}  {:<8} PATH",
        "OFFSET", "SIZE", "UNREAD", "IN_FLIGHT", "STATE"
    )?;
    for position in positions.iter() {
        let (size, state) = match FileId::of_path(&position.path) {
            Ok(id) if position.id.matches(&id) => (
                std::fs::metadata(&position.path).map(|m| m.len()).ok(),
                "tailing",
            ),
            // The path names another file now: the saved one was rotated away (it is found
            // in the same directory at the next start) or replaced.
            Ok(_) => (None, "rotated"),
            Err(_) => (None, "gone"),
        };
        let show = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let unread = size.map(|s| s.saturating_sub(position.offset));
        writeln!(
            out,
            "{:>12} {:>12} {:>12} {:>12}  {:<8} {}",
            position.offset,
            show(size),
            show(unread),
            position.sent_to - position.offset,
            state,
            position.path.display()
        )?;
    }
    if let Some(note) = positions.takeover() {
        print_takeover(&mut out, note)?;
    }
    Ok(())
}

/// What a takeover of Promtail's positions did.
fn print_takeover(out: &mut impl Write, note: &TakeoverNote) -> std::io::Result<()> {
    let at = jiff::Timestamp::from_second(note.at as i64)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| note.at.to_string());
    writeln!(
        out,
        "# taken over from Promtail's {} at {at}: {} files continued at its offset, {} entries refused",
        note.from.display(),
        note.taken.len(),
        note.refused.len()
    )?;
    for taken in &note.taken {
        writeln!(
            out,
            "taken over {:>12}  {}",
            taken.offset,
            taken.path.display()
        )?;
    }
    for refused in &note.refused {
        writeln!(
            out,
            "refused    {:>12}  {}: {}",
            refused.value, refused.entry, refused.reason
        )?;
    }
    Ok(())
}

/// `tailrace positions import FILE`: the takeover made offline.
fn import_positions(config: &Config, from: &Path, dry_run: bool) -> anyhow::Result<()> {
    let path = &config.positions.path;
    let mut positions = Positions::read(path).map_err(anyhow::Error::msg)?;
    if let Some(note) = positions.takeover() {
        bail!(
            "{}: positions were taken over from {} already; tailrace's own positions win from then on",
            path.display(),
            note.from.display()
        );
    }
    if !from.exists() {
        bail!("no Promtail positions file at {}", from.display());
    }
    let from = std::path::absolute(from).unwrap_or_else(|_| from.to_owned());
    takeover::take_over(&mut positions, &from, config).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    if let Some(note) = positions.takeover() {
        print_takeover(&mut out, note)?;
    }
    if dry_run {
        writeln!(out, "# --dry-run: {} not written", path.display())?;
    } else {
        positions.save(path)?;
        writeln!(out, "# written to {}", path.display())?;
    }
    Ok(())
}

/// GETs `url` (plain http) and returns its status line when it is 2xx.
fn probe(url: &str, timeout: Duration) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
    if parsed.scheme() != "http" {
        bail!("only http:// URLs can be probed");
    }
    let host = parsed.host_str().context("the URL has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .context("the host has no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default().to_owned();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {status_line:?}"))?;
    if !(200..300).contains(&code) {
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        bail!("{status_line}: {body}");
    }
    Ok(status_line)
}
