//! The `limit` stage: a token bucket per stream, so one noisy stream cannot flood Loki.
//!
//! In: labelled records of one file. Out: the same records, in order, no faster than `rate`
//! per second per stream after a `burst`; a stream is the value of the label `by_label`
//! (Promtail's `by_label_name`) when the record has it, else its whole label set. The
//! buckets are shared by every file of the input (one maker, one `Arc<Mutex<..>>`: the
//! reader is one thread, so the lock is never contended), at most `max_distinct_labels` of
//! them; streams beyond share one more bucket (warned once).
//!
//! What happens to a record over the limit:
//! - `action: drop` (Promtail's `drop: true`): it is dropped and counted in
//!   `tailrace_dropped_entries_total{reason="limit"}`; the runtime acknowledges its line.
//! - `action: wait` (the default, as Promtail's): it is queued, and every record of the file
//!   after it too, so the order is kept. The stage says where the first queued record
//!   starts ([`Stage::holds_from`]: no position passes it), what the queue holds, and that
//!   it wants no more records ([`Stage::paused`]: the runtime stops reading the file). Each
//!   [`Stage::flush`] hands on what the tokens refilled by `now` allow. At shutdown the
//!   queue is kept, not sent: its lines were never acknowledged and are read again at the
//!   next start, so nothing is lost and nothing is sent twice.
//!
//! Per record: a pointer compare with the label set of the record before (or a map lookup
//! by borrowed key) and a bucket update. Nothing is allocated but the rare new bucket.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DropCounter, MakeStage, Out, PlanContext, Stage};
use crate::model::{LabelSet, Record};

/// A `limit` stage's configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LimitConfig {
    /// Records per second per stream, once the burst is spent.
    pub rate: f64,
    /// Records a stream may send at once.
    pub burst: u32,
    #[serde(
        default,
        alias = "by_label_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub by_label: Option<String>,
    #[serde(default)]
    pub action: LimitAction,
    /// Promtail's spelling of `action`: `drop: true` is `action: drop`, `drop: false`
    /// `action: wait`. Read into `action`, never written back.
    #[serde(default, skip_serializing)]
    pub drop: Option<bool>,
    #[serde(default = "default_max_distinct")]
    pub max_distinct_labels: usize,
}

/// What becomes of a record over the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitAction {
    /// Dropped and counted.
    Drop,
    /// Held, and the file's reading paused, until the stream has tokens again.
    #[default]
    Wait,
}

fn default_max_distinct() -> usize {
    10_000
}

impl<'de> Deserialize<'de> for LimitConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut config = LimitConfig::deserialize(d)?;
        config.check().map_err(serde::de::Error::custom)?;
        Ok(config)
    }
}

impl Serialize for LimitConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LimitConfig::serialize(self, s)
    }
}

impl LimitConfig {
    /// Refuses what cannot work, and reads Promtail's `drop` into `action`.
    fn check(&mut self) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!(
                "`rate` must be a number above 0 (records per second), not {}",
                self.rate
            ));
        }
        if self.burst == 0 {
            return Err("`burst` must be at least 1".into());
        }
        if self.max_distinct_labels == 0 {
            return Err("`max_distinct_labels` must be at least 1".into());
        }
        if let Some(drop) = self.drop.take() {
            if self.action == LimitAction::Drop && !drop {
                return Err("`action: drop` and `drop: false` disagree".into());
            }
            self.action = if drop {
                LimitAction::Drop
            } else {
                LimitAction::Wait
            };
        }
        Ok(())
    }
}

/// Where a stage reads the time when records come (tests set it by hand).
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

pub fn maker(config: &LimitConfig, ctx: &PlanContext<'_>) -> MakeStage {
    maker_with_clock(config, ctx, Arc::new(Instant::now))
}

fn maker_with_clock(config: &LimitConfig, ctx: &PlanContext<'_>, clock: Clock) -> MakeStage {
    let buckets = Arc::new(Mutex::new(Buckets {
        rate: config.rate,
        burst: f64::from(config.burst),
        max: config.max_distinct_labels,
        ..Buckets::default()
    }));
    let counter = (config.action == LimitAction::Drop).then(|| (ctx.dropped)("limit"));
    let by_label: Option<Arc<str>> = config.by_label.as_deref().map(Arc::from);
    Box::new(move |_| {
        Box::new(Limit {
            buckets: Arc::clone(&buckets),
            by_label: by_label.clone(),
            counter: counter.clone(),
            clock: Arc::clone(&clock),
            queue: VecDeque::new(),
            queued_bytes: 0,
            last: None,
        })
    })
}

/// The buckets of one input's streams.
#[derive(Default)]
struct Buckets {
    rate: f64,
    burst: f64,
    max: usize,
    by_value: HashMap<String, usize>,
    by_set: HashMap<LabelSet, usize>,
    /// The bucket of the streams beyond `max`, once there are.
    overflow: Option<usize>,
    buckets: Vec<Bucket>,
}

struct Bucket {
    tokens: f64,
    /// When `tokens` was last refilled.
    at: Instant,
}

impl Buckets {
    /// The bucket of the stream `value` (of the `by_label` label) or `labels` (without it).
    fn index(&mut self, value: Option<&str>, labels: &LabelSet, now: Instant) -> usize {
        let known = match value {
            Some(v) => self.by_value.get(v),
            None => self.by_set.get(labels),
        };
        if let Some(&i) = known {
            return i;
        }
        if self.by_value.len() + self.by_set.len() >= self.max {
            return match self.overflow {
                Some(i) => i,
                None => {
                    tracing::warn!(
                        max_distinct_labels = self.max,
                        "limit stage: more streams than max_distinct_labels; the streams beyond share one bucket"
                    );
                    let i = self.add(now);
                    self.overflow = Some(i);
                    i
                }
            };
        }
        let i = self.add(now);
        match value {
            Some(v) => {
                self.by_value.insert(v.to_owned(), i);
            }
            None => {
                self.by_set.insert(labels.clone(), i);
            }
        }
        i
    }

    /// A new bucket, full.
    fn add(&mut self, now: Instant) -> usize {
        self.buckets.push(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.buckets.len() - 1
    }

    /// Takes a token of bucket `i`, refilled up to `now`, if it has one.
    fn take(&mut self, i: usize, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        let Some(bucket) = self.buckets.get_mut(i) else {
            return true;
        };
        if now > bucket.at {
            let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
            bucket.tokens = (bucket.tokens + refill).min(burst);
            bucket.at = now;
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The limit stage of one file.
struct Limit {
    buckets: Arc<Mutex<Buckets>>,
    by_label: Option<Arc<str>>,
    /// `Some` for `action: drop`.
    counter: Option<DropCounter>,
    clock: Clock,
    /// `action: wait`: the records waiting for tokens, in order, with where each starts and
    /// its bucket.
    queue: VecDeque<(Record, u64, usize)>,
    queued_bytes: usize,
    /// The label set of the record before and its bucket: most records of a file share it.
    last: Option<(Arc<LabelSet>, usize)>,
}

impl Limit {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bucket_of(&mut self, record: &Record, now: Instant) -> usize {
        let labels = record.labels.as_ref();
        if let (Some(labels), Some((known, i))) = (labels, &self.last) {
            if Arc::ptr_eq(labels, known) {
                return *i;
            }
        }
        let empty = LabelSet::default();
        let set = labels.map_or(&empty, |l| &**l);
        let value = self.by_label.as_deref().and_then(|name| set.get(name));
        let i = self.lock().index(value, set, now);
        if let Some(labels) = labels {
            self.last = Some((Arc::clone(labels), i));
        }
        i
    }

    fn cost(record: &Record) -> usize {
        std::mem::size_of::<(Record, u64, usize)>()
            + record.line.len()
            + record.metadata.heap_bytes()
    }
}

impl Stage for Limit {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        let now = (self.clock)();
        let bucket = self.bucket_of(&record, now);
        let waiting = !self.queue.is_empty();
        if !waiting && self.lock().take(bucket, now) {
            out(record, start);
            return;
        }
        match &self.counter {
            Some(counter) => {
                counter.inc();
            }
            None => {
                self.queued_bytes += Self::cost(&record);
                self.queue.push_back((record, start, bucket));
            }
        }
    }

    fn flush(&mut self, now: Instant, out: &mut Out<'_>) {
        while let Some(&(_, _, bucket)) = self.queue.front() {
            if !self.lock().take(bucket, now) {
                break;
            }
            let (record, start, _) = self.queue.pop_front().expect("a front");
            self.queued_bytes -= Self::cost(&record);
            out(record, start);
        }
    }

    fn holds_from(&self) -> Option<u64> {
        self.queue.front().map(|(_, start, _)| *start)
    }

    fn held_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The queue is kept: its lines were never acknowledged, and are read again.
    fn finish(&mut self, _out: &mut Out<'_>) {}

    fn paused(&self) -> bool {
        !self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::build_label_set;
    use crate::transform::FileContext;
    use std::path::Path;
    use std::time::Duration;

    /// A clock the test moves by hand.
    struct Setup {
        make: MakeStage,
        time: Arc<Mutex<Instant>>,
        t0: Instant,
        dropped: DropCounter,
    }

    impl Setup {
        fn new(yaml: &str) -> Self {
            let config: LimitConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let t0 = Instant::now();
            let time = Arc::new(Mutex::new(t0));
            let dropped = DropCounter::default();
            let counter = dropped.clone();
            let by_reason = move |reason: &str| {
                assert_eq!(reason, "limit");
                counter.clone()
            };
            let ctx = PlanContext {
                max_line_bytes: 1 << 20,
                dropped: &by_reason,
            };
            let clock_time = Arc::clone(&time);
            let make =
                maker_with_clock(&config, &ctx, Arc::new(move || *clock_time.lock().unwrap()));
            Setup {
                make,
                time,
                t0,
                dropped,
            }
        }

        fn stage(&self) -> Box<dyn Stage> {
            (self.make)(&FileContext {
                path: Path::new("/var/log/a.log"),
                resumed: None,
            })
        }

        /// Moves the clock to `ms` after the start, and returns that time.
        fn at(&self, ms: u64) -> Instant {
            let t = self.t0 + Duration::from_millis(ms);
            *self.time.lock().unwrap() = t;
            t
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Arc<LabelSet> {
        Arc::new(build_label_set(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string()))).0)
    }

    fn record(line: &str, labels: &Arc<LabelSet>) -> Record {
        Record {
            line: line.to_owned(),
            labels: Some(Arc::clone(labels)),
            ..Record::default()
        }
    }

    fn push(
        stage: &mut dyn Stage,
        records: &[(&str, u64)],
        set: &Arc<LabelSet>,
    ) -> Vec<(String, u64)> {
        let mut seen = Vec::new();
        for (line, start) in records {
            stage.push(record(line, set), *start, &mut |r, s| {
                seen.push((r.line, s))
            });
        }
        seen
    }

    fn flush(stage: &mut dyn Stage, now: Instant) -> Vec<(String, u64)> {
        let mut seen = Vec::new();
        stage.flush(now, &mut |r, s| seen.push((r.line, s)));
        seen
    }

    fn lines(seen: &[(String, u64)]) -> Vec<&str> {
        seen.iter().map(|(l, _)| l.as_str()).collect()
    }

    #[test]
    fn drop_lets_the_burst_through_then_the_rate_and_counts_the_rest() {
        let s = Setup::new("{ rate: 2, burst: 2, action: drop }");
        let mut stage = s.stage();
        let set = labels(&[("app", "a")]);
        let seen = push(
            &mut *stage,
            &[("1", 0), ("2", 10), ("3", 20), ("4", 30)],
            &set,
        );
        assert_eq!(lines(&seen), ["1", "2"]);
        assert_eq!(s.dropped.get(), 2);
        assert_eq!(stage.holds_from(), None, "a dropped record is not held");
        assert!(!stage.paused());
        s.at(500); // one token back
        let seen = push(&mut *stage, &[("5", 40), ("6", 50)], &set);
        assert_eq!(lines(&seen), ["5"]);
        assert_eq!(s.dropped.get(), 3);
        s.at(60_000); // the bucket refills up to the burst, not beyond
        let seen = push(&mut *stage, &[("7", 60), ("8", 70), ("9", 80)], &set);
        assert_eq!(lines(&seen), ["7", "8"]);
    }

    #[test]
    fn wait_holds_in_order_pauses_and_releases_as_time_passes() {
        let s = Setup::new("{ rate: 1, burst: 2, action: wait }");
        let mut stage = s.stage();
        let set = labels(&[("app", "a")]);
        let mut seen = push(
            &mut *stage,
            &[("1", 0), ("2", 10), ("3", 20), ("4", 30), ("5", 40)],
            &set,
        );
        assert_eq!(lines(&seen), ["1", "2"]);
        assert_eq!(stage.holds_from(), Some(20));
        assert!(stage.paused());
        assert!(stage.held_bytes() >= 3);
        assert!(flush(&mut *stage, s.t0).is_empty());

        // A token is back at 1 s: one record goes, the next is where the hold starts.
        seen.extend(flush(&mut *stage, s.t0 + Duration::from_millis(1000)));
        assert_eq!(lines(&seen), ["1", "2", "3"]);
        assert_eq!(stage.holds_from(), Some(30));

        // A record that comes while others wait goes behind them, tokens or not.
        s.at(5000);
        seen.extend(push(&mut *stage, &[("6", 50)], &set));
        assert_eq!(lines(&seen), ["1", "2", "3"]);
        assert_eq!(stage.holds_from(), Some(30));

        // Four seconds refill the burst (2), not more.
        seen.extend(flush(&mut *stage, s.t0 + Duration::from_millis(5000)));
        assert_eq!(lines(&seen), ["1", "2", "3", "4", "5"]);
        assert_eq!(stage.holds_from(), Some(50));
        assert!(stage.paused());
        seen.extend(flush(&mut *stage, s.t0 + Duration::from_millis(6000)));
        assert_eq!(lines(&seen), ["1", "2", "3", "4", "5", "6"]);
        let starts: Vec<u64> = seen.iter().map(|(_, s)| *s).collect();
        assert_eq!(starts, [0, 10, 20, 30, 40, 50], "each with its own start");
        assert_eq!(stage.holds_from(), None);
        assert!(!stage.paused());
        assert_eq!(stage.held_bytes(), 0);
        assert_eq!(s.dropped.get(), 0, "nothing lost");
    }

    #[test]
    fn at_shutdown_the_queue_is_kept_to_be_read_again() {
        let s = Setup::new("{ rate: 1, burst: 1 }");
        let mut stage = s.stage();
        let set = labels(&[("app", "a")]);
        push(&mut *stage, &[("1", 0), ("2", 10)], &set);
        let mut sent = Vec::new();
        stage.finish(&mut |r, _| sent.push(r.line));
        assert!(sent.is_empty());
        assert_eq!(stage.holds_from(), Some(10), "its position is never passed");
    }

    #[test]
    fn streams_have_their_own_buckets_shared_by_the_inputs_files() {
        let s = Setup::new("{ rate: 1, burst: 1, by_label_name: pod, drop: true }");
        let (mut file_a, mut file_b) = (s.stage(), s.stage());
        let pod_a = labels(&[("pod", "a"), ("stream", "stdout")]);
        let pod_a_err = labels(&[("pod", "a"), ("stream", "stderr")]);
        let pod_b = labels(&[("pod", "b")]);
        let no_pod = labels(&[("app", "x")]);
        let other_no_pod = labels(&[("app", "y")]);
        assert_eq!(push(&mut *file_a, &[("a1", 0)], &pod_a).len(), 1);
        assert_eq!(
            push(&mut *file_a, &[("a2", 10)], &pod_a_err).len(),
            0,
            "same pod"
        );
        assert_eq!(
            push(&mut *file_b, &[("a3", 0)], &pod_a).len(),
            0,
            "another file, same pod"
        );
        assert_eq!(push(&mut *file_b, &[("b1", 10)], &pod_b).len(), 1);
        // Without the label, the whole label set is the stream.
        assert_eq!(push(&mut *file_b, &[("x1", 20)], &no_pod).len(), 1);
        assert_eq!(push(&mut *file_b, &[("y1", 30)], &other_no_pod).len(), 1);
        assert_eq!(push(&mut *file_a, &[("x2", 20)], &no_pod).len(), 0);
        assert_eq!(s.dropped.get(), 3);
    }

    #[test]
    fn streams_beyond_the_maximum_share_one_bucket() {
        let s = Setup::new(
            "{ rate: 1, burst: 1, by_label: pod, max_distinct_labels: 2, action: drop }",
        );
        let mut stage = s.stage();
        let pod = |p: &str| labels(&[("pod", p)]);
        assert_eq!(push(&mut *stage, &[("a", 0)], &pod("a")).len(), 1);
        assert_eq!(push(&mut *stage, &[("b", 1)], &pod("b")).len(), 1);
        assert_eq!(
            push(&mut *stage, &[("c", 2)], &pod("c")).len(),
            1,
            "the shared one"
        );
        assert_eq!(
            push(&mut *stage, &[("d", 3)], &pod("d")).len(),
            0,
            "shares c's bucket"
        );
        assert_eq!(push(&mut *stage, &[("e", 4)], &pod("e")).len(), 0);
    }

    #[test]
    fn the_configuration_is_checked_and_reads_promtails_spelling() {
        let c: LimitConfig = serde_yaml_ng::from_str("{ rate: 10, burst: 20 }").unwrap();
        assert_eq!(
            c.action,
            LimitAction::Wait,
            "Promtail's default: nothing lost"
        );
        assert_eq!(c.max_distinct_labels, 10_000);
        let c: LimitConfig =
            serde_yaml_ng::from_str("{ rate: 10, burst: 20, drop: true }").unwrap();
        assert_eq!(c.action, LimitAction::Drop);
        assert!(!serde_yaml_ng::to_string(&c).unwrap().contains("drop: true"));
        let c: LimitConfig =
            serde_yaml_ng::from_str("{ rate: 10, burst: 20, drop: false }").unwrap();
        assert_eq!(c.action, LimitAction::Wait);
        for bad in [
            "{ rate: 0, burst: 1 }",
            "{ rate: -1, burst: 1 }",
            "{ rate: .nan, burst: 1 }",
            "{ rate: 1, burst: 0 }",
            "{ rate: 1, burst: 1, max_distinct_labels: 0 }",
            "{ rate: 1, burst: 1, action: drop, drop: false }",
            "{ rate: 1, burst: 1, action: later }",
        ] {
            assert!(
                serde_yaml_ng::from_str::<LimitConfig>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
