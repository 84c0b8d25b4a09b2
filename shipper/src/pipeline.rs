//! Wires a run together: which source, which stages, which sink, and the runtime between.
//!
//! ```text
//!   source/file ──► transform ──► runtime ──────────────────────────► sink/loki
//!   discover, tail,   partial_join,   reader thread ─► chunks ─► batcher ─► lanes  (or sink/stdout)
//!   format            stream_labels,  (memory bound)            (per tenant)
//!                     stages:
//!                                              ▲                       │
//!                                              └── positions ◄── acks ◄┘
//! ```
//!
//! In: the checked [`Config`] and the [`Shutdown`] signal. Out: lines in Loki, positions on
//! disk. A file position moves only when the sink is done with every line before it (Loki
//! took it, or refused it for good); the memory held by a line is given back at the same
//! moment. Nothing here does work: each part is in its folder.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::model::{FileKey, Resumed};
use crate::observe::server::Server;
use crate::observe::telemetry::Telemetry;
use crate::runtime::batching::{BatchSettings, batch_loop};
use crate::runtime::checkpoint::{AckTracker, Positions};
use crate::runtime::chunk::{Chunk, QUEUED_CHUNKS};
use crate::runtime::lanes::{Completion, Lanes};
use crate::runtime::memory::MemoryBudget;
use crate::runtime::positions_sync::PositionsSync;
use crate::runtime::reader::{MakeStages, Reader};
use crate::runtime::recovery::Recovery;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::takeover;
use crate::sink::loki::{LokiSink, PushClient, PushObserver};
use crate::sink::{Sink, StdoutSink};
use crate::source::FileSource;
use crate::transform::pod_metadata::watch::{self, ApiEndpoint, WatchObserver};
use crate::transform::pod_metadata::{PodCache, PodMetadata};
use crate::transform::{Plan, PlanContext};

/// What a run does with what it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Push to Loki, move positions as Loki accepts, serve the metrics and health endpoints.
    #[default]
    Ship,
    /// Print each entry as a JSON line on stdout instead ([`StdoutSink`]); push nothing,
    /// write no positions, serve nothing (`tailrace run --dry-run`).
    DryRun,
}

/// A run that could not start or finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot set up pushing to Loki: {0}")]
    Push(String),
    #[error("cannot start the reader thread: {0}")]
    Thread(String),
    #[error("{0}")]
    Positions(String),
    #[error(transparent)]
    Server(crate::observe::server::ServerError),
}

/// Runs the shipper until `shutdown` is requested, then sends what was read within
/// `shutdown_timeout`, writes positions and returns.
pub async fn run(
    config: Config,
    shutdown: Shutdown,
    telemetry: Arc<Telemetry>,
) -> Result<(), PipelineError> {
    run_with(config, shutdown, telemetry, Mode::Ship).await
}

/// [`run`], or a dry run.
pub async fn run_with(
    config: Config,
    shutdown: Shutdown,
    telemetry: Arc<Telemetry>,
    mode: Mode,
) -> Result<(), PipelineError> {
    let client = PushClient::new(&config.loki)
        .map_err(|e| PipelineError::Push(e.to_string()))?
        .with_observer(Arc::clone(&telemetry) as Arc<dyn PushObserver>);
    match mode {
        Mode::Ship => {
            let sink = LokiSink::new(
                client.clone(),
                config.loki.encoding,
                &config.loki.query_url(),
                shutdown.expiry(),
                Arc::clone(&telemetry),
            );
            run_to(sink, Some(client), config, shutdown, telemetry).await
        }
        Mode::DryRun => {
            let sink = StdoutSink::new(client.tenant());
            run_to(sink, None, config, shutdown, telemetry).await
        }
    }
}

/// A run into `sink`; `client` (shipping only) looks up what a crashed run may have sent,
/// and the run serves its endpoints and writes positions.
async fn run_to<S: Sink>(
    sink: S,
    client: Option<PushClient>,
    config: Config,
    shutdown: Shutdown,
    telemetry: Arc<Telemetry>,
) -> Result<(), PipelineError> {
    let shipping = client.is_some();
    let positions_path = config.positions.path.clone();
    let (mut positions, problem) = Positions::load(&positions_path);
    if let Some(problem) = problem {
        tracing::error!(error = %problem, "positions file");
    }
    if let Some(from) = &config.positions.takeover_from {
        // Before anything is read, and written at once: the takeover is made once.
        let took = takeover::take_over(&mut positions, from, &config).map_err(|e| {
            PipelineError::Positions(format!(
                "{e}; fix it, or remove positions.takeover_from to start without Promtail's positions"
            ))
        })?;
        if took && shipping {
            // Not fatal, as no positions write is: until one succeeds, a restart makes the
            // same takeover again (the files only grew meanwhile).
            if let Err(e) = positions.save(&positions_path) {
                tracing::error!(error = %e, "cannot record the takeover of Promtail's positions yet");
            }
        }
    }
    telemetry.health.set_positions_loaded();
    let sync = PositionsSync::new(positions);
    let memory = Arc::new(memory_budget(&config, &telemetry));
    let recovery = client.and_then(|client| {
        let recovery = Recovery::new(
            &sync.snapshot(),
            client,
            &config.loki.query_url(),
            Arc::clone(&telemetry),
        )?;
        Some((recovery, shutdown.expiry()))
    });
    // The server and the positions writer stop when the sinks are through: when the last
    // delivery is done, or at the end of the grace period.
    let server = match shipping {
        true => Some(serve(&config, &telemetry, shutdown.expiry()).await?),
        false => None,
    };

    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(QUEUED_CHUNKS);
    let positions = sync.snapshot();
    let resumed = positions.iter().map(|p| (p.id, p.resumed())).collect();
    let saved: Vec<(FileKey, u64)> = positions
        .iter()
        .map(|p| {
            (
                FileKey {
                    path: p.path.clone(),
                    id: p.id,
                },
                p.offset,
            )
        })
        .collect();
    // One watch on this node's pods feeds every file's pod metadata stage; it ends with
    // the run.
    let watch_stop = CancellationToken::new();
    let _stop_watch = watch_stop.clone().drop_guard();
    let pods = watch_pods(&config, &telemetry, watch_stop);
    let reader = Reader {
        source: FileSource::new(&config),
        make_stages: stages_of(&config, &telemetry, pods),
        resumed,
        tenants: (0..config.inputs.len())
            .map(|i| Arc::from(config.tenant_of(i)))
            .collect(),
        tx: chunk_tx,
        memory: Arc::clone(&memory),
        telemetry: Arc::clone(&telemetry),
        shutdown: shutdown.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let reader = std::thread::Builder::new()
        .name("tailrace-reader".into())
        .spawn(move || reader.run(&saved))
        .map_err(|e| PipelineError::Thread(e.to_string()))?;

    let done = Completion {
        acks: Arc::new(Mutex::new(AckTracker::default())),
        sync: Arc::clone(&sync),
        memory: Arc::clone(&memory),
        telemetry: Arc::clone(&telemetry),
    };
    let settings = BatchSettings {
        max_bytes: config.loki.batch.max_bytes.0 as usize,
        max_wait: config.loki.batch.max_wait.0,
        durable: shipping,
    };
    let lanes = Lanes::new(sink, done, shipping, shutdown.clone());
    let batcher = tokio::spawn(batch_loop(
        chunk_rx,
        settings,
        Arc::clone(&sync),
        recovery,
        lanes,
    ));
    // The positions writer runs until the last delivery is done (a push waits for its
    // promise to be on disk), not only until shutdown is asked for.
    let writer = shipping.then(|| {
        let sync = Arc::clone(&sync);
        let (path, every) = (positions_path.clone(), config.positions.sync_interval.0);
        let telemetry = Arc::clone(&telemetry);
        let stop = shutdown.expiry();
        tokio::spawn(async move { sync.run(path, every, telemetry, stop).await })
    });
    let clock = tokio::spawn({
        let shutdown = shutdown.clone();
        let grace = config.shutdown_timeout.0;
        async move { shutdown.expire_after(grace).await }
    });

    shutdown.requested().await;
    tracing::info!("shutting down: sending what was read");
    // The reader hands on what the stages still hold, then ends; a reader still waiting
    // for room under the memory bound is let go when the grace period ends.
    let mut reader = tokio::task::spawn_blocking(move || reader.join());
    tokio::select! {
        _ = &mut reader => {}
        () = shutdown.expired() => {
            memory.close();
            let _ = reader.await;
        }
    }
    memory.close();
    let _ = batcher.await;
    clock.abort();
    // Every delivery is done: nothing is left for the sinks to give up.
    shutdown.give_up();
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    if let Some(server) = server {
        let _ = server.await;
    }
    if !shipping {
        return Ok(());
    }
    sync.save_final(&positions_path)
        .map_err(|e| PipelineError::Positions(e.to_string()))
}

/// The memory bound, with a share per tenant when there are several.
fn memory_budget(config: &Config, telemetry: &Telemetry) -> MemoryBudget {
    let metrics = &telemetry.metrics;
    metrics.memory_bound.set(config.limits.memory.0 as i64);
    let tenants = (0..config.inputs.len())
        .map(|i| config.tenant_of(i))
        .collect::<HashSet<_>>()
        .len();
    MemoryBudget::new(
        config.limits.memory.0 as usize,
        metrics.memory_in_flight.clone(),
    )
    .with_tenants(tenants)
    .reporting_to(Arc::clone(&telemetry.health))
}

/// `/metrics`, `/healthz`, `/ready` and `/status`, until the run ends.
async fn serve(
    config: &Config,
    telemetry: &Arc<Telemetry>,
    close: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, PipelineError> {
    let server = Server::bind(
        config.server.listen,
        Arc::clone(&telemetry.health),
        Arc::clone(&telemetry.metrics),
    )
    .await
    .map_err(PipelineError::Server)?;
    telemetry.set_server_addr(server.local_addr());
    tracing::info!(listen = %server.local_addr(), "serving /metrics, /healthz, /ready, /status");
    Ok(server.spawn(close))
}

/// The stages of each input's files (see [`Plan`]), made once per input; a stage's drops
/// are counted in `tailrace_dropped_entries_total{reason}`.
fn stages_of(config: &Config, telemetry: &Arc<Telemetry>, pods: Option<PodMetadata>) -> MakeStages {
    let metrics = Arc::clone(&telemetry.metrics);
    let dropped = move |reason: &str| metrics.stage_drops(reason);
    let ctx = PlanContext {
        max_line_bytes: config.limits.max_line_bytes.0 as usize,
        dropped: &dropped,
    };
    let plans: Vec<Plan> = config
        .inputs
        .iter()
        .map(|i| Plan::new(i, &ctx).with_pods(pods.clone(), &config.kubernetes.stages, &ctx))
        .collect();
    Box::new(
        move |input: usize,
              path: &Path,
              source_labels: &[(String, String)],
              resumed: Option<&Resumed>| {
            plans[input].stages(path, source_labels, resumed)
        },
    )
}

/// When `kubernetes.enabled`: the pod cache, fed by one watch spawned now until `stop`,
/// its state on `tailrace_kubernetes_watch_up` and `/ready`.
fn watch_pods(
    config: &Config,
    telemetry: &Arc<Telemetry>,
    stop: CancellationToken,
) -> Option<PodMetadata> {
    let k8s = &config.kubernetes;
    if !k8s.enabled {
        return None;
    }
    let cache = Arc::new(PodCache::new(k8s));
    let metrics = &telemetry.metrics;
    metrics.kubernetes_watch_up.set(0);
    tokio::spawn(watch::run(
        ApiEndpoint::of(&k8s.api),
        k8s.node_name.clone(),
        Arc::clone(&cache),
        Arc::new(WatchState(Arc::clone(telemetry))),
        stop,
    ));
    Some(PodMetadata {
        cache,
        wait: k8s.wait.0,
        excluded: metrics.stage_drops("excluded"),
        unlabelled: metrics.kubernetes_unlabelled_entries.clone(),
        stage_sets: Arc::default(),
    })
}

/// The pod watch's state, on the metrics and `/ready`.
struct WatchState(Arc<Telemetry>);

impl WatchObserver for WatchState {
    fn up(&self, pods: usize) {
        let metrics = &self.0.metrics;
        metrics.kubernetes_watch_up.set(1);
        metrics.kubernetes_pods.set(pods as i64);
        self.0.health.set_kubernetes_error(None);
    }

    fn down(&self, error: &str) {
        let metrics = &self.0.metrics;
        metrics.kubernetes_watch_up.set(0);
        metrics.kubernetes_watch_errors.inc();
        self.0.health.set_kubernetes_error(Some(error.to_owned()));
    }
}
