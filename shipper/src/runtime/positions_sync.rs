//! Keeps the positions file on disk as close to the truth as a crash needs.
//!
//! In: offsets Loki accepted ([`PositionsSync::accepted`]), and the lines about to be
//! batched ([`PositionsSync::promise`]). Out: the positions file, written atomically (see
//! `checkpoint.rs`) by one writer task, and a generation a push waits for
//! ([`PositionsSync::wait_durable`]) before it may send anything.
//!
//! Two writes, for the two ways a crash could store a line twice or lose it:
//! - **After Loki accepts**, the new offsets are written within [`COALESCE`] (bursts of
//!   accepted pushes share one write), not only every `sync_interval`: a kill then resends at
//!   most what was in flight, not the last interval's worth.
//! - **Before a push sends**, each file's `sent_to` must be on disk past every line in it. It
//!   is promised ahead of the reading (by `ahead` bytes), so one write covers many batches
//!   and a push rarely waits; when it must, the write is made at once and shared by every
//!   push waiting (group commit). After a crash the lines between `offset` and `sent_to` are
//!   the only ones Loki may hold already, and `recovery.rs` checks just those.
//!
//! Why a writer task of its own: the write ends in two `fsync`s, which must not stall the
//! batcher or the pushes, and a single writer never writes an older state after a newer one.
//! A write that fails is counted and reported, and pushes go on (a disk error must not stop
//! the logs); what a crash would then resend is counted by `recovery.rs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::model::{FileId, FileKey, PodPin};
use crate::observe::telemetry::Telemetry;
use crate::runtime::checkpoint::Positions;

/// The longest accepted offsets wait before they are written: a burst of accepted pushes
/// shares one write.
pub const COALESCE: Duration = Duration::from_millis(200);

/// The positions shared by the batcher (promises), the pushes (acceptances) and the writer.
pub struct PositionsSync {
    state: Mutex<State>,
    wake: Notify,
    /// The promise generation on disk.
    durable: watch::Sender<u64>,
}

struct State {
    positions: Positions,
    /// Bumped whenever a promise (`sent_to`) rises.
    promised: u64,
    /// Since when accepted offsets wait to be written.
    accepted_since: Option<Instant>,
    /// Per file, the end of the last line handed to the batcher: what was really read, and
    /// so may have been sent (the promise runs ahead of it).
    read_to: HashMap<FileId, u64>,
}

impl PositionsSync {
    pub fn new(positions: Positions) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                positions,
                promised: 0,
                accepted_since: None,
                read_to: HashMap::new(),
            }),
            wake: Notify::new(),
            durable: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("positions lock")
    }

    /// A copy of the positions now.
    pub fn snapshot(&self) -> Positions {
        self.lock().positions.clone()
    }

    /// Lines of `file` up to `end` are about to be batched. Their promise is raised to
    /// `end + ahead` if it is below `end`. Returns the generation a push of them must wait for.
    pub fn promise(&self, file: &FileKey, end: u64, ahead: u64) -> u64 {
        let mut state = self.lock();
        let read = state.read_to.entry(file.id).or_insert(0);
        *read = (*read).max(end);
        let below = state
            .positions
            .get(&file.id)
            .is_none_or(|p| p.sent_to < end);
        if below {
            state
                .positions
                .promise_sent_to(&file.path, file.id, end.saturating_add(ahead));
            state.promised += 1;
            drop(state);
            self.wake.notify_one();
            return self.generation();
        }
        state.promised
    }

    /// The records of `file` from `pin.from` on carry `pin`'s pod metadata: it is written
    /// with the file's position before a batch cut from now on may be sent, so that after a
    /// crash the file's records are made with the same labels (see `model/pod_pin.rs`).
    pub fn pin(&self, file: &FileKey, pin: Arc<PodPin>) {
        let mut state = self.lock();
        state.positions.pin(&file.path, file.id, pin);
        state.promised += 1;
        drop(state);
        self.wake.notify_one();
    }

    /// The latest promise generation: a batch cut now must wait for it.
    pub fn generation(&self) -> u64 {
        self.lock().promised
    }

    /// Waits until the promises of `generation` are on disk (or their write failed, which
    /// was reported).
    pub async fn wait_durable(&self, generation: u64) {
        let mut durable = self.durable.subscribe();
        if *durable.borrow_and_update() >= generation {
            return;
        }
        self.wake.notify_one();
        let _ = durable.wait_for(|d| *d >= generation).await;
    }

    /// Loki accepted everything before these offsets.
    pub fn accepted(&self, moved: Vec<(FileKey, u64)>) {
        if moved.is_empty() {
            return;
        }
        let mut state = self.lock();
        for (file, offset) in moved {
            state.positions.set(&file.path, file.id, offset);
        }
        state.accepted_since.get_or_insert_with(Instant::now);
        drop(state);
        self.wake.notify_one();
    }

    /// The writer: runs until `stop` (the run's deliveries are through), writing promises
    /// at once, accepted offsets within [`COALESCE`], and every `every` (when anything
    /// changed, after forgetting files that are gone).
    pub async fn run(
        self: Arc<Self>,
        path: PathBuf,
        every: Duration,
        telemetry: Arc<Telemetry>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_saved: Option<Positions> = None;
        loop {
            let due = {
                let state = self.lock();
                if state.promised > *self.durable.borrow() {
                    Some(Instant::now())
                } else {
                    state.accepted_since.map(|since| since + COALESCE)
                }
            };
            let mut prune = false;
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = sleep_until(due) => {}
                () = self.wake.notified() => continue,
                _ = tick.tick() => prune = true,
            }
            let me = Arc::clone(&self);
            let path = path.clone();
            let previous = last_saved.take();
            let (saved, outcome) =
                tokio::task::spawn_blocking(move || me.write(&path, prune, previous))
                    .await
                    .expect("positions writer");
            match outcome {
                Ok(wrote) => {
                    if wrote {
                        telemetry.metrics.positions_writes.inc();
                    }
                    telemetry.health.set_positions_error(None);
                    last_saved = Some(saved);
                }
                Err(e) => {
                    telemetry.metrics.positions_write_failures.inc();
                    telemetry.health.set_positions_error(Some(e.clone()));
                    tracing::error!(error = %e, "positions not saved; retrying at the next change or interval");
                }
            }
        }
    }

    /// One write of the positions as they are now (after forgetting gone files when
    /// `prune`), unless they equal `previous`. Returns what was written and whether a write
    /// was needed. The promises it held count as durable even when the write failed (said by
    /// the caller): pushes must not stop for a disk error.
    fn write(
        &self,
        path: &Path,
        prune: bool,
        previous: Option<Positions>,
    ) -> (Positions, Result<bool, String>) {
        if prune {
            // The file system is asked without the lock held: the batcher and the pushes
            // take it for every chunk and every accepted batch.
            let mut pruned = self.snapshot();
            let before: HashSet<FileId> = pruned.iter().map(|p| p.id).collect();
            if pruned.prune_missing() > 0 {
                let kept: HashSet<FileId> = pruned.iter().map(|p| p.id).collect();
                self.lock()
                    .positions
                    .retain(|p| !before.contains(&p.id) || kept.contains(&p.id));
            }
        }
        let (snapshot, generation) = {
            let mut state = self.lock();
            state.accepted_since = None;
            (state.positions.clone(), state.promised)
        };
        let outcome = if previous.as_ref() == Some(&snapshot) {
            Ok(false)
        } else {
            snapshot
                .save(path)
                .map(|()| true)
                .map_err(|e| e.to_string())
        };
        self.durable.send_if_modified(|durable| {
            let newer = generation > *durable;
            *durable = (*durable).max(generation);
            newer
        });
        (snapshot, outcome)
    }

    /// The last write, at shutdown: each file's `sent_to` brought back to what was really
    /// read (the promises ahead of it are not needed once nothing is being sent).
    pub fn save_final(
        &self,
        path: &Path,
    ) -> Result<(), crate::runtime::checkpoint::PositionsError> {
        let snapshot = {
            let mut state = self.lock();
            let State {
                positions, read_to, ..
            } = &mut *state;
            positions.settle_sent_to(|id| read_to.get(id).copied());
            positions.clone()
        };
        snapshot.save(path)
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> FileKey {
        FileKey {
            path: format!("/var/log/{n}.log").into(),
            id: FileId {
                dev: 1,
                ino: n,
                fingerprint: n * 7,
            },
        }
    }

    #[test]
    fn a_promise_runs_ahead_and_is_raised_only_when_reading_passes_it() {
        let sync = PositionsSync::new(Positions::default());
        let g1 = sync.promise(&key(1), 100, 1000);
        assert_eq!(sync.snapshot().get(&key(1).id).unwrap().sent_to, 1100);
        // Inside the promise: no new generation, nothing to write.
        assert_eq!(sync.promise(&key(1), 900, 1000), g1);
        let g2 = sync.promise(&key(1), 1200, 1000);
        assert!(g2 > g1);
        assert_eq!(sync.snapshot().get(&key(1).id).unwrap().sent_to, 2200);
    }

    #[test]
    fn the_final_save_keeps_only_what_was_read_and_not_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let sync = PositionsSync::new(Positions::default());
        sync.promise(&key(1), 100, 1000);
        sync.promise(&key(2), 500, 1000);
        sync.accepted(vec![(key(1), 100), (key(2), 300)]);
        sync.save_final(&path).unwrap();
        let saved = Positions::read(&path).unwrap();
        let one = saved.get(&key(1).id).unwrap();
        assert_eq!(
            (one.offset, one.sent_to),
            (100, 100),
            "all accepted: nothing in flight"
        );
        let two = saved.get(&key(2).id).unwrap();
        assert_eq!(
            (two.offset, two.sent_to),
            (300, 500),
            "read to 500, accepted to 300"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_push_waits_for_its_promise_on_disk_and_acceptances_are_written_soon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let sync = PositionsSync::new(Positions::default());
        let telemetry = Arc::new(Telemetry::new(Duration::from_secs(300)));
        let stop = CancellationToken::new();
        let writer = tokio::spawn(Arc::clone(&sync).run(
            path.clone(),
            Duration::from_secs(3600),
            Arc::clone(&telemetry),
            stop.clone(),
        ));
        let generation = sync.promise(&key(1), 4096, 0);
        sync.wait_durable(generation).await;
        let on_disk = Positions::read(&path).unwrap();
        assert_eq!(on_disk.get(&key(1).id).unwrap().sent_to, 4096);
        assert_eq!(on_disk.get(&key(1).id).unwrap().offset, 0);

        sync.accepted(vec![(key(1), 4096)]);
        // Nothing else wakes the writer: only the coalescing delay can write this before the
        // hour-long interval.
        for _ in 0..1000 {
            if Positions::read(&path)
                .unwrap()
                .get(&key(1).id)
                .unwrap()
                .offset
                == 4096
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            Positions::read(&path)
                .unwrap()
                .get(&key(1).id)
                .unwrap()
                .offset,
            4096,
            "accepted offsets written within the coalescing window, not the hour-long interval"
        );
        stop.cancel();
        writer.await.unwrap();
    }
}
