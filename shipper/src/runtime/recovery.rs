//! After a crash: which of the lines that may have been sent does Loki hold already?
//!
//! In: the positions loaded at start (per file, `offset`: accepted before it; `sent_to`:
//! nothing past it was ever sent, made durable before any push, see `positions_sync.rs`),
//! then, as they are read again, the entries of each file between the two. Out: for each of
//! those entries, whether Loki has it (same stream, timestamp and line): then it is not sent
//! again, only its position moves.
//!
//! Why: a real Loki stores a replayed entry again (only a repeat still in the stream's head
//! block is dropped), so the batches in flight when the process died would be counted twice
//! by `count_over_time`, `rate`, the volume panel, alerts and the bill. Promtail, Vector and
//! Fluent Bit resend them; here they are looked up with Loki's `query_range`, one query per
//! stream per chunk of lines, only over what was in flight: a clean shutdown leaves nothing to
//! look up (`sent_to` equals `offset`), and a crash at most what was promised ahead of
//! the reading.
//!
//! An entry is found by its own timestamp, so only lines that carry one (Docker, CRI, and
//! JSON lines with `timestamp`/`ts`/`time`) can be recognised; a plain line stamped with the
//! time it was read gets a new time when read again. Those, and every line when the query
//! API cannot be used (401, 403 or 404: no read permission, no query API at that URL; or Loki
//! unreachable for [`PATIENCE`](crate::sink::loki::query::PATIENCE)), are sent again and counted in
//! `tailrace_resent_entries_total`, with one warning saying why. Lines found and not sent
//! are counted in `tailrace_recovered_entries_total`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::FileKey;
use crate::model::labels::LabelSet;
use crate::observe::telemetry::Telemetry;
use crate::runtime::checkpoint::Positions;
use crate::sink::loki::client::PushClient;
use crate::sink::loki::query::LokiLookup;

/// How long after the start the first look-up waits: a push the dead process had sent
/// just before it was killed may still be in Loki's hands, and a look-up that ran before
/// Loki stored it would not see it.
pub const SETTLE: Duration = Duration::from_secs(1);

/// One entry to decide on.
pub struct Candidate<'a> {
    pub labels: &'a Arc<LabelSet>,
    pub timestamp_ns: i64,
    pub line: &'a str,
    /// The timestamp is the record's own (see `entry::Made::own_time`).
    pub own_time: bool,
}

/// The files left to look up after a crash.
pub struct Recovery {
    /// Per watched path and content fingerprint (a file renamed, copied or compressed keeps
    /// both): entries ending at or before this offset may be in Loki already.
    /// Keyed by fingerprint first, so the look-up made for every chunk read while any file
    /// is pending neither allocates nor hashes a path.
    pending: HashMap<u64, Vec<(PathBuf, u64)>>,
    lookup: LokiLookup,
    telemetry: Arc<Telemetry>,
}

impl Recovery {
    /// What the positions say may have been in flight; `None` when nothing was (the last
    /// run ended cleanly, or never sent anything).
    pub fn new(
        positions: &Positions,
        client: PushClient,
        query_url: &str,
        telemetry: Arc<Telemetry>,
    ) -> Option<Self> {
        let mut pending: HashMap<u64, Vec<(PathBuf, u64)>> = HashMap::new();
        // A file and logrotate's copy of it share a fingerprint: the furthest promise holds.
        for p in positions.iter() {
            if p.sent_to > p.offset && !p.id.is_pending() {
                let paths = pending.entry(p.id.fingerprint).or_default();
                match paths.iter_mut().find(|(path, _)| *path == p.path) {
                    Some((_, to)) => *to = (*to).max(p.sent_to),
                    None => paths.push((p.path.clone(), p.sent_to)),
                }
            }
        }
        if pending.is_empty() {
            return None;
        }
        tracing::info!(
            files = pending.values().map(Vec::len).sum::<usize>(),
            query_url,
            "the last run did not end cleanly: lines that may be in Loki already are looked up before they are sent again"
        );
        Some(Self {
            pending,
            lookup: LokiLookup::new(client, query_url, SETTLE),
            telemetry,
        })
    }

    /// Whether lines of `file` may be in Loki already: up to which end offset.
    pub fn suspect_to(&self, file: &FileKey) -> Option<u64> {
        self.pending
            .get(&file.id.fingerprint)?
            .iter()
            .find(|(path, _)| *path == file.path)
            .map(|(_, to)| *to)
    }

    /// Every line of `file` that may have been sent was read again.
    pub fn done_with(&mut self, file: &FileKey) {
        if let Some(paths) = self.pending.get_mut(&file.id.fingerprint) {
            paths.retain(|(path, _)| *path != file.path);
            if paths.is_empty() {
                self.pending.remove(&file.id.fingerprint);
            }
        }
    }

    /// Nothing is left to look up.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// For each candidate (lines of one file, `filename` its path as the entries carry it),
    /// whether Loki holds it already. Asks Loki once per stream among them (more pages if
    /// needed); retries while Loki is unreachable, up to [`PATIENCE`](crate::sink::loki::query::PATIENCE) or `stop`.
    pub async fn stored(
        &mut self,
        tenant: &str,
        filename: &str,
        candidates: &[Candidate<'_>],
        stop: &CancellationToken,
    ) -> Vec<bool> {
        let mut stored = vec![false; candidates.len()];
        // Whether Loki was asked about it (and so, when not stored, it is new to Loki).
        let mut asked = vec![false; candidates.len()];
        let mut streams: Vec<&Arc<LabelSet>> = Vec::new();
        for c in candidates.iter().filter(|c| c.own_time) {
            if !streams.iter().any(|s| Arc::ptr_eq(s, c.labels)) {
                streams.push(c.labels);
            }
        }
        for labels in streams {
            let of_stream = || {
                candidates
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.own_time && Arc::ptr_eq(c.labels, labels))
            };
            let (from, to) = of_stream().fold((i64::MAX, i64::MIN), |(lo, hi), (_, c)| {
                (lo.min(c.timestamp_ns), hi.max(c.timestamp_ns))
            });
            let found = self
                .lookup
                .held(tenant, labels.pairs(), Some(filename), from, to, stop)
                .await;
            let Some(found) = found else {
                break; // not usable: the rest is resent
            };
            for (i, c) in of_stream() {
                asked[i] = true;
                stored[i] = found.contains(&(c.timestamp_ns, c.line.to_owned()));
            }
        }
        let metrics = &self.telemetry.metrics;
        let recovered = stored.iter().filter(|s| **s).count();
        let resent = asked.iter().filter(|a| !**a).count();
        metrics.recovered_entries.inc_by(recovered as u64);
        metrics.resent_entries.inc_by(resent as u64);
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_may_have_been_sent_is_looked_up_and_a_copy_shares_its_promise() {
        use crate::model::FileId;
        let id = |ino, fingerprint| FileId {
            dev: 1,
            ino,
            fingerprint,
        };
        let path = std::path::Path::new("/var/log/app.log");
        let mut positions = Positions::default();
        positions.set(path, id(1, 7), 100);
        positions.promise_sent_to(path, id(1, 7), 150);
        // logrotate's copy of it (same content, another inode) was read further.
        positions.set(path, id(2, 7), 120);
        positions.promise_sent_to(path, id(2, 7), 200);
        // Nothing in flight for this one.
        positions.set(path, id(3, 9), 50);
        let client = PushClient::new(&crate::sink::loki::testing::loki_config(
            "http://127.0.0.1:9/loki/api/v1/push",
        ))
        .unwrap();
        let telemetry = Arc::new(Telemetry::new(Duration::from_secs(300)));
        let mut recovery =
            Recovery::new(&positions, client, "http://127.0.0.1:9/q", telemetry).unwrap();
        let key = |ino, fingerprint| FileKey {
            path: path.to_owned(),
            id: id(ino, fingerprint),
        };
        // A gzip of the same content (another inode) is recognised by its fingerprint.
        assert_eq!(recovery.suspect_to(&key(5, 7)), Some(200));
        assert_eq!(recovery.suspect_to(&key(3, 9)), None);
        recovery.done_with(&key(1, 7));
        assert!(recovery.is_done());
        let mut clean = Positions::default();
        clean.set(path, id(1, 7), 100);
        let client = PushClient::new(&crate::sink::loki::testing::loki_config(
            "http://127.0.0.1:9/x",
        ))
        .unwrap();
        let telemetry = Arc::new(Telemetry::new(Duration::from_secs(300)));
        assert!(Recovery::new(&clean, client, "http://127.0.0.1:9/q", telemetry).is_none());
    }
}
