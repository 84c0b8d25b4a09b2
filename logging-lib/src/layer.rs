//! The `tracing` layer that turns every event into one JSON line (see the crate docs for the
//! line's contract), and gives every span its W3C trace and span ids.
//!
//! In: spans and events from `tracing` (and `log` records through `tracing-log`). Out: one
//! complete line per event, handed to the [`NonBlocking`] writer.
//!
//! With [`SpanEvents`] switched on (off by default), spans also give lines: one when a span
//! is created (`NEW`) and one when it closes (`CLOSE`, with `duration_ms`, `busy_ms`,
//! `idle_ms`), each with the span's own fields and ids and its parent's id (keys in
//! [`crate::contract::SPAN_LINE_KEYS`]). Their timings live with the span's data; with span
//! events off, entering and leaving a span costs one branch and events are formatted
//! exactly as before.
//!
//! Why it is fast where `tracing-subscriber`'s JSON format is slow: span fields are rendered
//! to JSON once, when they are recorded, not re-parsed on every event; each event is written
//! straight into a per-thread buffer that is reused, so steady state allocates nothing.
//! Each event callsite's keys are rendered once per thread (`CallsitePlan`). A span's data
//! (ids, rendered fields, timings) lives in the layer's own `SpanStore`, not in the
//! registry's extensions, so spans in steady state allocate nothing either.
//! The current span's part of the line (ids, name, its and its ancestors' fields, keys
//! already deduplicated) is kept per thread too (`SpanCache`) and reused while that thread
//! enters, exits and closes no span and no span is recorded into: a contextual event in a
//! span then makes no registry lookup at all.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::contract::{
    BUSY_MS, DURATION_MS, IDLE_MS, PARENT_SPAN_ID, SPAN_EVENT, SPAN_LINE_KEYS, USER_KEY_PREFIX,
};
use crate::json::{self, const_bytes};
use crate::keys::LineKeys;
use crate::output::non_blocking::NonBlocking;
use crate::redact::{REDACTED, Redactor};
use crate::timestamp::{RFC3339_LEN, write_rfc3339};
use crate::trace_context::{SpanId, TraceContext};

/// Keys the line itself uses (default profile). A user field with one of these names is
/// written `fields.<name>` so that no key ever appears twice. (Defined in
/// [`crate::contract`]; other profiles reserve more, see [`crate::keys`].)
pub use crate::contract::FIXED_KEYS;

/// Which span lifecycle events are written as lines of their own
/// ([`Config::span_events`](crate::Config::span_events)); combine with `|`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanEvents(u8);

impl SpanEvents {
    /// No span lines (the default).
    pub const NONE: Self = Self(0);
    /// One line when a span is created: `"span_event":"new"` and the fields it was created
    /// with.
    pub const NEW: Self = Self(1);
    /// One line when a span closes: `"span_event":"close"`, `duration_ms`, `busy_ms`,
    /// `idle_ms` and the span's fields as last recorded.
    pub const CLOSE: Self = Self(2);

    /// Whether every event in `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for SpanEvents {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Everything that is the same for every line of one logger.
pub(crate) struct LineFormat {
    /// The key names of the profile, rendered.
    pub(crate) keys: LineKeys,
    /// `,"service":"…"` and `,"version":"…"`, `,"env":"…"` when set, pre-rendered.
    pub(crate) identity: Vec<u8>,
    pub(crate) redactor: Redactor,
    pub(crate) value_cap: usize,
    pub(crate) caller: bool,
    pub(crate) span_events: SpanEvents,
}

impl LineFormat {
    #[allow(clippy::too_many_arguments)] // one call site per logger, each argument named there
    pub(crate) fn new(
        keys: LineKeys,
        service: &str,
        version: Option<&str>,
        env: Option<&str>,
        redactor: Redactor,
        value_cap: usize,
        caller: bool,
        span_events: SpanEvents,
    ) -> Self {
        let mut identity = Vec::new();
        for (key, value) in keys.identity.iter().zip([Some(service), version, env]) {
            if let Some(value) = value {
                identity.extend_from_slice(key);
                json::write_str(&mut identity, value, value_cap);
            }
        }
        Self {
            keys,
            identity,
            redactor,
            value_cap,
            caller,
            span_events,
        }
    }

    /// Writes the line head up to and including the identity keys:
    /// `{"timestamp":…,"level":…,"message":…,"target":…,"service":…`.
    pub(crate) fn write_head(
        &self,
        out: &mut Vec<u8>,
        time: SystemTime,
        level: &Level,
        message: &[u8],
        target: &str,
    ) {
        self.write_open(out, time, level);
        if message.is_empty() {
            out.extend_from_slice(b"\"\"");
        } else {
            out.extend_from_slice(message);
        }
        self.write_target(out, target);
        out.extend_from_slice(&self.identity);
    }

    /// The line up to the message's value: `{"timestamp":…,"level":…,"message":`.
    pub(crate) fn write_open(&self, out: &mut Vec<u8>, time: SystemTime, level: &Level) {
        let mut ts = [0u8; RFC3339_LEN];
        write_rfc3339(time, &mut ts);
        let keys = &self.keys;
        json::put(out, &keys.open);
        out.extend_from_slice(&ts);
        json::put(out, &keys.levels[level_index(level)]);
        json::put(out, &keys.message);
    }

    /// `,"target":"…"`.
    fn write_target(&self, out: &mut Vec<u8>, target: &str) {
        json::put(out, &self.keys.target);
        json::write_str(out, target, self.value_cap);
    }
}

/// `TRACE` (0) to `ERROR` (4): the index of a level in a profile's level tables.
pub(crate) fn level_index(level: &Level) -> usize {
    match *level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// What this layer keeps of each open span (in its [`SpanStore`]).
pub(crate) struct SpanData {
    /// The span's own position in its trace (its `span_id` is the span's own id).
    context: TraceContext,
    /// `,"trace_id":…,"span_id":…,"trace_flags":…` for `context`, rendered once.
    ids_json: Vec<u8>,
    /// The span's fields, each value already rendered as JSON.
    fields: SpanFields,
    /// The parent's span id: the local parent's, or the remote one set by
    /// `set_remote_parent`. Written as `parent_span_id` in span lines.
    parent_span_id: Option<SpanId>,
    /// Busy and idle time, kept only when close lines are on.
    timing: Option<Timing>,
}

/// A span's busy and idle time so far. `last` is when the span last changed between idle
/// (created or exited by every thread) and busy (entered by at least one thread); each
/// change adds the time since `last` to the state it leaves, so busy + idle is exactly the
/// time since creation.
#[derive(Clone, Copy)]
struct Timing {
    created: Instant,
    last: Instant,
    busy_ns: u64,
    idle_ns: u64,
    /// Threads inside the span right now (a span can be entered on several at once).
    entered: u32,
}

fn nanos_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}

impl Timing {
    fn new(now: Instant) -> Self {
        Self {
            created: now,
            last: now,
            busy_ns: 0,
            idle_ns: 0,
            entered: 0,
        }
    }

    fn enter(&mut self, now: Instant) {
        if self.entered == 0 {
            self.idle_ns = self.idle_ns.saturating_add(nanos_between(self.last, now));
            self.last = now;
        }
        self.entered += 1;
    }

    fn exit(&mut self, now: Instant) {
        if self.entered == 0 {
            return; // an exit without an enter seen by this layer
        }
        self.entered -= 1;
        if self.entered == 0 {
            self.busy_ns = self.busy_ns.saturating_add(nanos_between(self.last, now));
            self.last = now;
        }
    }

    /// `(duration, busy, idle)` in nanoseconds at close time `now`.
    fn close(&self, now: Instant) -> (u64, u64, u64) {
        let tail = nanos_between(self.last, now);
        let (busy, idle) = if self.entered == 0 {
            (self.busy_ns, self.idle_ns.saturating_add(tail))
        } else {
            (self.busy_ns.saturating_add(tail), self.idle_ns)
        };
        (nanos_between(self.created, now), busy, idle)
    }
}

/// Which line a span gives.
#[derive(Clone, Copy)]
enum SpanLine {
    New,
    Close { duration: u64, busy: u64, idle: u64 },
}

/// Writes nanoseconds as milliseconds with microsecond resolution, a JSON number: `12.345`.
fn write_ms(out: &mut Vec<u8>, nanos: u64) {
    let micros = nanos / 1_000;
    json::write_u64(out, micros / 1_000);
    let frac = micros % 1_000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

impl SpanData {
    const fn empty() -> Self {
        Self {
            context: TraceContext::ZERO,
            ids_json: Vec::new(),
            fields: SpanFields::new(),
            parent_span_id: None,
            timing: None,
        }
    }

    /// Makes this a new span's data, keeping the buffers.
    fn reset(
        &mut self,
        keys: &LineKeys,
        context: TraceContext,
        parent_span_id: Option<SpanId>,
        timing: Option<Timing>,
    ) {
        self.set_context(keys, context);
        self.fields.clear();
        self.parent_span_id = parent_span_id;
        self.timing = timing;
    }

    /// Makes this a copy of `other`, keeping the buffers.
    fn copy_from(&mut self, other: &SpanData) {
        self.context = other.context;
        self.ids_json.clear();
        self.ids_json.extend_from_slice(&other.ids_json);
        self.fields.copy_from(&other.fields);
        self.parent_span_id = other.parent_span_id;
        self.timing = other.timing;
    }

    fn set_context(&mut self, keys: &LineKeys, context: TraceContext) {
        self.context = context;
        self.ids_json.clear();
        keys.write_trace_ids(&mut self.ids_json, &context);
    }

    /// Appends the fields no event field or inner span has written yet.
    fn write_fields(&self, line: &mut Vec<u8>, seen: &mut SeenKeys) {
        for (key, value) in self.fields.iter() {
            if seen.insert(key) {
                key.write(line);
                line.extend_from_slice(value);
            }
        }
    }

    /// Appends the fields to a span line, where the span line keys are taken too.
    fn write_own_fields(&self, line: &mut Vec<u8>, seen: &mut SeenKeys) {
        for (key, value) in self.fields.iter() {
            let key = key.in_span_line();
            if seen.insert(key) {
                key.write(line);
                line.extend_from_slice(value);
            }
        }
    }
}

/// A span's fields: keys in the order first recorded, values rendered as JSON back to
/// back in one buffer (so a span's data is a fixed number of buffers, reused from span to
/// span). Recording a field again replaces its value and keeps its place.
pub(crate) struct SpanFields {
    /// Each key and where its value is in `values`.
    entries: Vec<(OutKey, u32, u32)>,
    values: Vec<u8>,
    /// The entry whose value is being written (between `begin` and `end`).
    pending: Option<usize>,
}

impl SpanFields {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
            values: Vec::new(),
            pending: None,
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.values.clear();
        self.pending = None;
    }

    fn iter(&self) -> impl Iterator<Item = (OutKey, &[u8])> {
        self.entries
            .iter()
            .map(|&(key, start, end)| (key, &self.values[start as usize..end as usize]))
    }

    /// Starts the value of the field `name` (`key()` gives its key when it is new),
    /// dropping an earlier value: append the value to the buffer returned, then call
    /// [`SpanFields::end`].
    fn begin(&mut self, name: &str, key: impl FnOnce() -> OutKey) -> &mut Vec<u8> {
        self.end();
        let i = match self.entries.iter().position(|(k, ..)| k.name == name) {
            Some(i) => {
                let (_, start, end) = self.entries[i];
                self.values.drain(start as usize..end as usize);
                let removed = end - start;
                for entry in &mut self.entries {
                    if entry.1 >= end {
                        entry.1 -= removed;
                        entry.2 -= removed;
                    }
                }
                i
            }
            None => {
                self.entries.push((key(), 0, 0));
                self.entries.len() - 1
            }
        };
        let at = self.values.len() as u32;
        self.entries[i].1 = at;
        self.entries[i].2 = at;
        self.pending = Some(i);
        &mut self.values
    }

    /// Ends the value started by [`SpanFields::begin`].
    fn end(&mut self) {
        if let Some(i) = self.pending.take() {
            self.entries[i].2 = self.values.len() as u32;
        }
    }

    fn copy_from(&mut self, other: &SpanFields) {
        self.entries.clear();
        self.entries.extend_from_slice(&other.entries);
        self.values.clear();
        self.values.extend_from_slice(&other.values);
        self.pending = None;
    }

    /// Records every field of `other` into these, replacing values of the same names.
    fn merge(&mut self, other: &SpanFields) {
        for (key, value) in other.iter() {
            self.begin(key.name, || key).extend_from_slice(value);
            self.end();
        }
    }
}

/// The [`SpanData`] of every open span, by span id, kept by the layer rather than in the
/// registry's span extensions: those box every value inserted, one allocation per span,
/// where the store reuses its slots and their buffers, so that a span in steady state
/// allocates nothing.
///
/// Sharded by id, one lock per shard, held only to copy data in or out or to format from
/// it: no user code (field `Debug` impls, which may log) ever runs under it.
pub(crate) struct SpanStore {
    shards: [Shard; SPAN_SHARDS],
}

const SPAN_SHARDS: usize = 16;

/// One shard, on a cache line of its own (no false sharing between threads working on
/// spans of different shards).
#[repr(align(128))]
struct Shard(std::sync::Mutex<ShardSpans>);

#[derive(Default)]
struct ShardSpans {
    /// Span id to its slot.
    index: std::collections::HashMap<u64, usize, std::hash::BuildHasherDefault<IdHasher>>,
    slots: Vec<SpanData>,
    /// Slots of closed spans, to reuse.
    free: Vec<usize>,
}

/// Span ids are distinct numbers already: one multiplication spreads them.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl SpanStore {
    fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Shard(Default::default())),
        }
    }

    fn shard(&self, id: &Id) -> std::sync::MutexGuard<'_, ShardSpans> {
        let h = id.into_u64().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let shard = &self.shards[h as usize % SPAN_SHARDS].0;
        // A panic under the lock can only come from an allocation failure; every slot is
        // still whole.
        shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a copy of `data` as span `id`'s (in a reused slot when there is one).
    fn insert(&self, id: &Id, data: &SpanData) {
        let mut shard = self.shard(id);
        let shard = &mut *shard;
        let slot = match shard.index.get(&id.into_u64()) {
            Some(&slot) => slot,
            None => {
                let slot = match shard.free.pop() {
                    Some(slot) => slot,
                    None => {
                        shard.slots.push(SpanData::empty());
                        shard.slots.len() - 1
                    }
                };
                shard.index.insert(id.into_u64(), slot);
                slot
            }
        };
        shard.slots[slot].copy_from(data);
    }

    /// `f` of span `id`'s data, if the store has it.
    fn with<R>(&self, id: &Id, f: impl FnOnce(&SpanData) -> R) -> Option<R> {
        let shard = self.shard(id);
        let slot = *shard.index.get(&id.into_u64())?;
        Some(f(&shard.slots[slot]))
    }

    /// `f` of span `id`'s data, to change, if the store has it.
    fn with_mut<R>(&self, id: &Id, f: impl FnOnce(&mut SpanData) -> R) -> Option<R> {
        let mut shard = self.shard(id);
        let slot = *shard.index.get(&id.into_u64())?;
        Some(f(&mut shard.slots[slot]))
    }

    /// Forgets span `id`, after `f` has seen its data; its slot is reused.
    fn remove<R>(&self, id: &Id, f: impl FnOnce(&SpanData) -> R) -> Option<R> {
        let mut shard = self.shard(id);
        let slot = shard.index.remove(&id.into_u64())?;
        shard.free.push(slot);
        Some(f(&shard.slots[slot]))
    }
}

/// Where a span's data is made (its fields recorded, which runs their `Debug` impls, which
/// may log) before it is copied into the [`SpanStore`] under its lock; and the plans of span
/// callsites. Per thread, reused.
struct SpanScratch {
    data: SpanData,
    plans: Plans,
}

impl SpanScratch {
    const fn new() -> Self {
        Self {
            data: SpanData::empty(),
            plans: Plans::new(),
        }
    }
}

thread_local! {
    static SPAN_SCRATCH: RefCell<SpanScratch> = const { RefCell::new(SpanScratch::new()) };
}

/// Runs `f` on this thread's [`SPAN_SCRATCH`], or on a fresh one when a span is made while
/// another one's fields are recorded (a field's `Debug` impl that makes a span).
fn with_span_scratch<R>(f: impl FnOnce(&mut SpanScratch) -> R) -> R {
    let mut f = Some(f);
    let done = SPAN_SCRATCH
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => Some((f.take().expect("called once"))(&mut scratch)),
            Err(_) => None,
        })
        .ok()
        .flatten();
    match done {
        Some(r) => r,
        None => (f.take().expect("not called"))(&mut SpanScratch::new()),
    }
}

/// Reach into a span's trace context from outside the layer (`TraceSpanExt`), through
/// `Dispatch::downcast_ref`, without knowing the subscriber's concrete type.
pub(crate) struct SpanAccess {
    pub(crate) context: fn(&Dispatch, &Id) -> Option<TraceContext>,
    pub(crate) set_remote_parent: fn(&Dispatch, &Id, TraceContext),
}

/// The JSON layer. Build it with [`crate::Config`].
pub struct JsonLayer<S> {
    format: LineFormat,
    sink: NonBlocking,
    access: SpanAccess,
    /// Every open span's data.
    spans: SpanStore,
    /// Tells this logger's [`SpanCache`]s from another's.
    id: u64,
    /// The dispatcher this layer runs in, to ask `tracing-opentelemetry` for its ids: it keeps
    /// them private and answers only by dispatcher and span id. Weak: the dispatcher owns us.
    #[cfg(feature = "opentelemetry")]
    dispatch: std::sync::OnceLock<tracing_core::dispatcher::WeakDispatch>,
    _subscriber: PhantomData<fn(S)>,
}

/// A user key as written in the line: `name`, or `fields.name` for a fixed key's name.
#[derive(Clone, Copy)]
struct OutKey {
    name: &'static str,
    prefixed: bool,
    /// Whether it is prefixed in a span line, where [`SPAN_LINE_KEYS`] are taken too.
    prefixed_in_span_line: bool,
    /// Whether `name` is written as is (nothing to escape): then `write` copies it.
    plain: bool,
    /// A hash of the key as written (prefix and name): keys written the same have the same
    /// hash, so different hashes prove different keys.
    hash: u64,
}

/// FNV-1a over the written key, mixed so that the top bits (which [`KeyBloom`] uses) depend
/// on every byte.
fn key_hash(prefixed: bool, name: &str) -> u64 {
    let prefix = if prefixed { USER_KEY_PREFIX } else { "" };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in prefix.as_bytes().iter().chain(name.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

impl OutKey {
    /// `name` as this logger writes it: prefixed when the profile `keys` reserves it.
    fn new(name: &'static str, keys: &LineKeys) -> Self {
        let prefixed = keys.is_reserved(name);
        Self {
            name,
            prefixed,
            prefixed_in_span_line: prefixed || SPAN_LINE_KEYS.contains(&name),
            plain: !name.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'),
            hash: key_hash(prefixed, name),
        }
    }

    fn in_span_line(self) -> Self {
        if self.prefixed_in_span_line == self.prefixed {
            return self;
        }
        Self {
            prefixed: self.prefixed_in_span_line,
            hash: key_hash(self.prefixed_in_span_line, self.name),
            ..self
        }
    }

    /// Whether the two keys are written the same, also across the `fields.` prefix.
    fn same(self, other: OutKey) -> bool {
        if self.prefixed == other.prefixed {
            return self.name == other.name;
        }
        let (short, long) = if self.prefixed {
            (self, other)
        } else {
            (other, self)
        };
        long.name.len() == short.name.len() + USER_KEY_PREFIX.len()
            && long.name.starts_with(USER_KEY_PREFIX)
            && &long.name[USER_KEY_PREFIX.len()..] == short.name
    }

    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"");
        if self.prefixed {
            out.extend_from_slice(USER_KEY_PREFIX.as_bytes());
        }
        if self.plain {
            out.extend_from_slice(self.name.as_bytes());
        } else {
            json::escape_into(out, self.name);
        }
        out.extend_from_slice(b"\":");
    }
}

/// A 256-bit Bloom filter of keys, one bit per key from the top byte of its hash: a clear
/// bit proves a key absent. With the dozen keys of a line, a key not in it finds its bit
/// set about one time in twenty (a 64-bit filter: one in five).
#[derive(Clone, Copy)]
struct KeyBloom([u64; 4]);

impl KeyBloom {
    const EMPTY: Self = Self([0; 4]);

    fn bit(hash: u64) -> (usize, u64) {
        ((hash >> 62) as usize, 1 << ((hash >> 56) & 63))
    }

    fn add(&mut self, hash: u64) {
        let (word, bit) = Self::bit(hash);
        self.0[word] |= bit;
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (word, bit) = Self::bit(hash);
        self.0[word] & bit != 0
    }

    fn overlaps(&self, other: &KeyBloom) -> bool {
        (self.0[0] & other.0[0])
            | (self.0[1] & other.0[1])
            | (self.0[2] & other.0[2])
            | (self.0[3] & other.0[3])
            != 0
    }
}

/// The keys already written in the current line, so none is written twice. Exact: the
/// filter and the hashes only rule keys out; two keys with the same hash are compared.
struct SeenKeys {
    keys: Vec<OutKey>,
    bloom: KeyBloom,
}

impl SeenKeys {
    const fn new() -> Self {
        Self {
            keys: Vec::new(),
            bloom: KeyBloom::EMPTY,
        }
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.bloom = KeyBloom::EMPTY;
    }

    /// Whether a key written the same as `key` is there.
    fn contains(&self, key: OutKey) -> bool {
        self.bloom.may_contain(key.hash)
            && self.keys.iter().any(|k| k.hash == key.hash && k.same(key))
    }

    /// Records `key`, known not to be there yet.
    fn add(&mut self, key: OutKey) {
        self.bloom.add(key.hash);
        self.keys.push(key);
    }

    /// Records `key`; `false` when a key written the same was already there.
    fn insert(&mut self, key: OutKey) -> bool {
        if self.contains(key) {
            return false;
        }
        self.add(key);
        true
    }
}

/// The keys an event wrote: those of its callsite's plan marked in `written` (by field
/// index; no per-field bookkeeping beyond one bit), and any others in `seen`.
struct EventKeys<'a> {
    seen: &'a SeenKeys,
    plan: &'a CallsitePlan,
    written: u64,
}

impl EventKeys<'_> {
    fn bloom(&self) -> KeyBloom {
        let mut bloom = self.seen.bloom;
        if self.written != 0 {
            for (b, p) in bloom.0.iter_mut().zip(self.plan.bloom.0) {
                *b |= p;
            }
        }
        bloom
    }

    fn contains(&self, key: OutKey) -> bool {
        if self.seen.contains(key) {
            return true;
        }
        if self.written == 0 || !self.plan.bloom.may_contain(key.hash) {
            return false;
        }
        self.plan.fields.iter().enumerate().any(|(i, f)| {
            i < 64 && self.written & (1 << i) != 0 && f.key.hash == key.hash && f.key.same(key)
        })
    }
}

/// What one field of an event callsite is in this logger's lines.
#[derive(Clone, Copy)]
struct FieldPlan {
    key: OutKey,
    /// Where the key, rendered (`,"name":`), is in [`CallsitePlan::keys`].
    start: u32,
    end: u32,
    message: bool,
    /// A `log.*` field: `tracing-log`'s record metadata, not written for `log` records.
    log_meta: bool,
    secret: bool,
}

/// One event callsite's fields as this logger writes them, by `Field::index`: keys rendered,
/// reserved names prefixed, secrets known. Made the first time the callsite logs on a
/// thread, then reused: an event makes one lookup (by callsite) instead of one per field,
/// and writes each key with one copy.
struct CallsitePlan {
    /// The callsite's address; 0: empty.
    callsite: usize,
    layer: u64,
    fields: Vec<FieldPlan>,
    keys: Vec<u8>,
    /// Whether two of its fields are written under the same key: only then are the event's
    /// own fields checked against each other.
    dupes: bool,
    /// The keys of its fields (but the message).
    bloom: KeyBloom,
    /// Whether it is one of `tracing-log`'s callsites (a `log` record).
    is_log: bool,
}

impl CallsitePlan {
    const fn new() -> Self {
        Self {
            callsite: 0,
            layer: 0,
            fields: Vec::new(),
            keys: Vec::new(),
            dupes: false,
            bloom: KeyBloom::EMPTY,
            is_log: false,
        }
    }

    fn build(&mut self, callsite: usize, layer: u64, meta: &Metadata<'_>, format: &LineFormat) {
        self.callsite = callsite;
        self.layer = layer;
        self.fields.clear();
        self.keys.clear();
        self.dupes = false;
        self.bloom = KeyBloom::EMPTY;
        for field in meta.fields() {
            let mut plan = FieldPlan::new(field.name(), format);
            plan.start = self.keys.len() as u32;
            plan.key.write(&mut self.keys);
            plan.end = self.keys.len() as u32;
            if !plan.message
                && self
                    .fields
                    .iter()
                    .any(|f| !f.message && f.key.same(plan.key))
            {
                self.dupes = true;
            }
            if !plan.message {
                self.bloom.add(plan.key.hash);
            }
            self.fields.push(plan);
        }
    }
}

impl FieldPlan {
    /// The plan of a field named `name` (its rendered key not placed yet).
    fn new(name: &'static str, format: &LineFormat) -> Self {
        Self {
            key: OutKey::new(name, &format.keys),
            start: 0,
            end: 0,
            message: name == "message",
            log_meta: name.starts_with("log."),
            secret: format.redactor.is_secret(name),
        }
    }
}

const PLAN_SLOTS: usize = 64;

/// This thread's [`CallsitePlan`]s, direct-mapped by callsite address.
struct Plans {
    slots: [CallsitePlan; PLAN_SLOTS],
}

impl Plans {
    const fn new() -> Self {
        Self {
            slots: [const { CallsitePlan::new() }; PLAN_SLOTS],
        }
    }

    /// The plan of `meta`'s callsite for the logger `layer`, made on first use.
    fn get(
        &mut self,
        meta: &Metadata<'_>,
        layer: u64,
        format: &LineFormat,
        is_log: impl FnOnce() -> bool,
    ) -> &CallsitePlan {
        let callsite =
            (meta.callsite().0 as *const dyn tracing_core::Callsite).cast::<()>() as usize;
        // Fibonacci hashing of the address: neighbouring callsites land far apart.
        let slot = (callsite >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 6);
        let plan = &mut self.slots[slot % PLAN_SLOTS];
        if plan.callsite != callsite || plan.layer != layer {
            plan.build(callsite, layer, meta, format);
            plan.is_log = is_log();
        }
        plan
    }
}

/// Per-thread buffers, reused for every event.
struct Scratch {
    line: Vec<u8>,
    fields: Vec<u8>,
    message: Vec<u8>,
    seen: SeenKeys,
    plans: Plans,
    span: SpanCache,
}

impl Scratch {
    const fn new() -> Self {
        Self {
            line: Vec::new(),
            fields: Vec::new(),
            message: Vec::new(),
            seen: SeenKeys::new(),
            plans: Plans::new(),
            span: SpanCache::new(),
        }
    }
}

thread_local! {
    /// Bumped on every span enter, exit and close seen on this thread by any [`JsonLayer`]:
    /// the current span can only change through one of them (a span cannot close while it
    /// is entered, so its id cannot be reused under a cache either), so a [`SpanCache`]
    /// built at one value still describes the current span while the value is unchanged.
    /// A plain `Cell`, apart from [`SCRATCH`], because spans are entered while an event is
    /// being formatted (a `Debug` impl that enters a span).
    static SPAN_EPOCH: Cell<u64> = const { Cell::new(0) };
}

fn bump_span_epoch() {
    SPAN_EPOCH.with(|e| e.set(e.get().wrapping_add(1)));
}

/// Bumped after any span's fields or ids change (`record`, `set_remote_parent`), on any
/// thread: every thread's [`SpanCache`] is stale from then on. Recording a span's fields is
/// rare next to events, so one counter for all spans is enough.
static FIELDS_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Gives every [`JsonLayer`] its own id: one thread's cache must not serve another logger.
static NEXT_LAYER_ID: AtomicU64 = AtomicU64::new(1);

/// This thread's rendering of the current span's part of an event line, for one logger:
/// the lookups (current span and every ancestor, in the registry and the span store) and the rendering
/// of span keys are done once, not on every event, while the span stays current.
///
/// Valid while the layer, this thread's [`SPAN_EPOCH`] and [`FIELDS_GENERATION`] are what
/// they were when it was built. Used only for contextual events (an explicit `parent:`
/// takes the registry path).
struct SpanCache {
    /// 0: empty.
    layer: u64,
    epoch: u64,
    generation: u64,
    /// The current span, `None` when there is none.
    id: Option<Id>,
    /// The logger's identity keys, then `,"trace_id":…` of the current span (none when it
    /// has no data of ours), then `,"span":"name"`: what follows the target.
    head: Vec<u8>,
    /// `,"span":"name"` alone (for OpenTelemetry's ids, which are not cached).
    name: Vec<u8>,
    /// The fields of the span and its ancestors, innermost first, each key once, rendered
    /// as `,"key":value`.
    fields: Vec<u8>,
    /// Each field of `fields`: its key and where it ends in `fields`.
    entries: Vec<(OutKey, usize)>,
    /// The entries' keys.
    bloom: KeyBloom,
    seen: SeenKeys,
}

impl SpanCache {
    const fn new() -> Self {
        Self {
            layer: 0,
            epoch: 0,
            generation: 0,
            id: None,
            head: Vec::new(),
            name: Vec::new(),
            fields: Vec::new(),
            entries: Vec::new(),
            bloom: KeyBloom::EMPTY,
            seen: SeenKeys::new(),
        }
    }

    fn is_valid(&self, layer: u64, epoch: u64, generation: u64) -> bool {
        self.layer == layer && self.epoch == epoch && self.generation == generation
    }

    /// Appends one span's fields not already in the cache.
    fn add_fields(&mut self, data: &SpanData) {
        for (key, value) in data.fields.iter() {
            if self.seen.insert(key) {
                key.write(&mut self.fields);
                self.fields.extend_from_slice(value);
                self.entries.push((key, self.fields.len()));
                self.bloom.add(key.hash);
            }
        }
    }

    /// Appends the span fields the event did not write itself.
    fn write_fields(&self, line: &mut Vec<u8>, event: &EventKeys<'_>) {
        if !event.bloom().overlaps(&self.bloom) {
            // No event key can be one of ours (the filter has no false negatives).
            line.extend_from_slice(&self.fields);
            return;
        }
        let mut start = 0;
        for &(key, end) in &self.entries {
            if !event.contains(key) {
                line.extend_from_slice(&self.fields[start..end]);
            }
            start = end;
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch::new()) };
}

impl<S> JsonLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    pub(crate) fn new(format: LineFormat, sink: NonBlocking) -> Self {
        Self {
            format,
            sink,
            access: SpanAccess {
                context: Self::context_of,
                set_remote_parent: Self::set_remote_parent_of,
            },
            spans: SpanStore::new(),
            id: NEXT_LAYER_ID.fetch_add(1, Ordering::Relaxed),
            #[cfg(feature = "opentelemetry")]
            dispatch: std::sync::OnceLock::new(),
            _subscriber: PhantomData,
        }
    }

    fn context_of(dispatch: &Dispatch, id: &Id) -> Option<TraceContext> {
        #[cfg(feature = "opentelemetry")]
        if let Some(c) = crate::otel::span_context_of(dispatch, id) {
            return Some(c);
        }
        let layer = dispatch.downcast_ref::<Self>()?;
        layer.spans.with(id, |d| d.context)
    }

    fn set_remote_parent_of(dispatch: &Dispatch, id: &Id, parent: TraceContext) {
        let Some(layer) = dispatch.downcast_ref::<Self>() else {
            return;
        };
        layer.spans.with_mut(id, |data| {
            data.set_context(
                &layer.format.keys,
                TraceContext {
                    span_id: data.context.span_id,
                    ..parent
                },
            );
            data.parent_span_id = Some(parent.span_id);
        });
        FIELDS_GENERATION.fetch_add(1, Ordering::Release);
    }

    /// A span's ids: OpenTelemetry's when its layer runs (feature `opentelemetry`), else ours.
    /// Call it without holding the span's extensions: OpenTelemetry locks them.
    fn trace_context(&self, span: &SpanRef<'_, S>) -> Option<TraceContext> {
        #[cfg(feature = "opentelemetry")]
        if let Some(c) = self.otel_context(span) {
            return Some(c);
        }
        self.spans.with(&span.id(), |d| d.context)
    }

    #[cfg(feature = "opentelemetry")]
    fn otel_context(&self, span: &SpanRef<'_, S>) -> Option<TraceContext> {
        self.otel_context_of(&span.id())
    }

    #[cfg(feature = "opentelemetry")]
    fn otel_context_of(&self, id: &Id) -> Option<TraceContext> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        crate::otel::span_context_of(&dispatch, id)
    }

    fn write_caller(&self, line: &mut Vec<u8>, meta: &Metadata<'_>) {
        if self.format.caller
            && let (Some(file), Some(n)) = (meta.file(), meta.line())
        {
            line.extend_from_slice(&self.format.keys.caller);
            json::escape_into(line, file);
            line.push(b':');
            json::write_u64(line, u64::from(n));
            line.push(b'"');
        }
    }

    /// The ids a span line shows: `(the span's context, its parent's span id)`, from
    /// OpenTelemetry when its layer runs and knows the span, else ours in `data`. Call it
    /// without holding the span's extensions.
    fn span_line_ids(&self, span: &SpanRef<'_, S>) -> Option<(TraceContext, Option<SpanId>)> {
        #[cfg(feature = "opentelemetry")]
        if let Some(c) = self.otel_context(span) {
            let parent = span
                .parent()
                .and_then(|p| self.otel_context(&p))
                .map(|p| p.span_id);
            return Some((c, parent));
        }
        let _ = span;
        None
    }

    /// Writes a span's own line (see [`SpanEvents`]) into `s.line`.
    fn format_span_line(
        &self,
        s: &mut Scratch,
        meta: &Metadata<'_>,
        data: &SpanData,
        ids: Option<(TraceContext, Option<SpanId>)>,
        kind: SpanLine,
    ) {
        s.line.clear();
        s.message.clear();
        s.seen.clear();
        json::write_str(&mut s.message, meta.name(), self.format.value_cap);
        let line = &mut s.line;
        self.format.write_head(
            line,
            SystemTime::now(),
            meta.level(),
            &s.message,
            meta.target(),
        );
        let parent = match ids {
            Some((context, parent)) => {
                self.format.keys.write_trace_ids(line, &context);
                parent.or(data.parent_span_id)
            }
            None => {
                line.extend_from_slice(&data.ids_json);
                data.parent_span_id
            }
        };
        if let Some(parent) = parent {
            line.extend_from_slice(const_bytes!(",\"", PARENT_SPAN_ID, "\":\""));
            line.extend_from_slice(&parent.to_hex());
            line.push(b'"');
        }
        line.extend_from_slice(&self.format.keys.span);
        line.extend_from_slice(&s.message);
        self.write_caller(line, meta);
        line.extend_from_slice(const_bytes!(",\"", SPAN_EVENT, "\":"));
        match kind {
            SpanLine::New => line.extend_from_slice(b"\"new\""),
            SpanLine::Close {
                duration,
                busy,
                idle,
            } => {
                line.extend_from_slice(b"\"close\"");
                line.extend_from_slice(const_bytes!(",\"", DURATION_MS, "\":"));
                write_ms(line, duration);
                line.extend_from_slice(const_bytes!(",\"", BUSY_MS, "\":"));
                write_ms(line, busy);
                line.extend_from_slice(const_bytes!(",\"", IDLE_MS, "\":"));
                write_ms(line, idle);
            }
        }
        data.write_own_fields(line, &mut s.seen);
        line.extend_from_slice(b"}\n");
    }

    /// Applies `f` to the span's timing, when close lines are on (else: one branch).
    fn update_timing(&self, id: &Id, f: fn(&mut Timing, Instant)) {
        if !self.format.span_events.contains(SpanEvents::CLOSE) {
            return;
        }
        let now = Instant::now();
        self.spans.with_mut(id, |data| {
            if let Some(t) = &mut data.timing {
                f(t, now);
            }
        });
    }

    /// Formats a span line on this thread's buffers and hands it to the writer.
    fn write_span_line(
        &self,
        meta: &Metadata<'_>,
        data: &SpanData,
        ids: Option<(TraceContext, Option<SpanId>)>,
        kind: SpanLine,
    ) {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => {
                self.format_span_line(&mut s, meta, data, ids, kind);
                self.sink.write_line(&s.line);
            }
            // A span closed while formatting something else (a `Debug` impl): fresh buffers.
            Err(_) => {
                let mut s = Scratch::new();
                self.format_span_line(&mut s, meta, data, ids, kind);
                self.sink.write_line(&s.line);
            }
        });
    }

    /// Fills `cache` with the current span's part of an event line, from the registry.
    fn build_span_cache(
        &self,
        cache: &mut SpanCache,
        ctx: &Context<'_, S>,
        epoch: u64,
        generation: u64,
    ) {
        cache.layer = self.id;
        cache.epoch = epoch;
        cache.generation = generation;
        cache.id = None;
        cache.head.clear();
        cache.name.clear();
        cache.fields.clear();
        cache.entries.clear();
        cache.bloom = KeyBloom::EMPTY;
        cache.seen.clear();
        let Some(span) = ctx.lookup_current() else {
            return;
        };
        let id = span.id();
        cache.name.extend_from_slice(&self.format.keys.span);
        json::write_str(&mut cache.name, span.name(), self.format.value_cap);
        cache.head.extend_from_slice(&self.format.identity);
        self.spans.with(&id, |d| {
            cache.head.extend_from_slice(&d.ids_json);
            cache.add_fields(d);
        });
        cache.head.extend_from_slice(&cache.name);
        cache.id = Some(id);
        // Outer spans, innermost first: each lookup walks one step up.
        let mut next = span.parent();
        while let Some(outer) = next {
            self.spans.with(&outer.id(), |d| cache.add_fields(d));
            next = outer.parent();
        }
    }

    fn format_event(&self, s: &mut Scratch, event: &Event<'_>, ctx: &Context<'_, S>) {
        let plan = s
            .plans
            .get(event.metadata(), self.id, &self.format, || event.is_log());
        // Only a `log` record's metadata needs normalizing (the plan knows which are).
        let normalized = if plan.is_log {
            event.normalized_metadata()
        } else {
            None
        };
        let meta: &Metadata<'_> = normalized.as_ref().unwrap_or_else(|| event.metadata());
        s.line.clear();
        s.fields.clear();
        s.message.clear();
        s.seen.clear();

        // The span first: then the fields can go straight into the line once the message
        // (the first field of every `tracing` macro) is written.
        let span = if event.is_contextual() {
            // The current span's part of the line, from this thread's cache (see
            // `SpanCache`): no lookup while the span stays current.
            let generation = FIELDS_GENERATION.load(Ordering::Acquire);
            let epoch = SPAN_EPOCH.with(Cell::get);
            if !s.span.is_valid(self.id, epoch, generation) {
                self.build_span_cache(&mut s.span, ctx, epoch, generation);
            }
            match s.span.id {
                Some(_) => EventSpan::Cached,
                None => EventSpan::None,
            }
        } else {
            match ctx.event_span(event) {
                Some(span) => EventSpan::Explicit(span),
                None => EventSpan::None,
            }
        };

        let mut visitor = Visitor(EventFields {
            layer: self,
            meta,
            span: &span,
            cache: &s.span,
            state: LineState::Start,
            line: &mut s.line,
            fields: &mut s.fields,
            message: &mut s.message,
            seen: &mut s.seen,
            written: 0,
            plan,
            from_log: normalized.is_some(),
        });
        event.record(&mut visitor);
        let (state, written) = (visitor.0.state, visitor.0.written);

        let line = &mut s.line;
        match state {
            LineState::Start | LineState::Buffered => {
                self.format
                    .write_open(line, SystemTime::now(), meta.level());
                if s.message.is_empty() {
                    line.extend_from_slice(b"\"\"");
                } else {
                    line.extend_from_slice(&s.message);
                }
                self.write_tail(line, meta, &span, &s.span);
                line.extend_from_slice(&s.fields);
            }
            LineState::Message => self.write_tail(line, meta, &span, &s.span),
            LineState::Direct => {}
        }

        match &span {
            EventSpan::Cached => {
                let event = EventKeys {
                    seen: &s.seen,
                    plan,
                    written,
                };
                s.span.write_fields(line, &event);
            }
            EventSpan::Explicit(span) => {
                // Rare: the event's keys go to `seen` one by one.
                for (i, f) in plan.fields.iter().enumerate().take(64) {
                    if written & (1 << i) != 0 {
                        s.seen.add(f.key);
                    }
                }
                self.spans
                    .with(&span.id(), |d| d.write_fields(line, &mut s.seen));
                // Outer spans, innermost first: each lookup walks one step up.
                let mut next = span.parent();
                while let Some(outer) = next {
                    self.spans
                        .with(&outer.id(), |d| d.write_fields(line, &mut s.seen));
                    next = outer.parent();
                }
            }
            EventSpan::None => {}
        }
        line.extend_from_slice(b"}\n");
    }

    /// What follows the message: target, identity, the span's ids and name, the caller.
    fn write_tail(
        &self,
        line: &mut Vec<u8>,
        meta: &Metadata<'_>,
        span: &EventSpan<'_, S>,
        cache: &SpanCache,
    ) {
        self.format.write_target(line, meta.target());
        match span {
            EventSpan::Cached => {
                #[cfg(feature = "opentelemetry")]
                if let Some(c) = cache.id.as_ref().and_then(|id| self.otel_context_of(id)) {
                    line.extend_from_slice(&self.format.identity);
                    self.format.keys.write_trace_ids(line, &c);
                    line.extend_from_slice(&cache.name);
                    self.write_caller(line, meta);
                    return;
                }
                line.extend_from_slice(&cache.head);
            }
            EventSpan::Explicit(span) => {
                line.extend_from_slice(&self.format.identity);
                #[cfg(feature = "opentelemetry")]
                let otel = self.otel_context(span);
                #[cfg(not(feature = "opentelemetry"))]
                let otel: Option<TraceContext> = None;
                match otel {
                    Some(c) => self.format.keys.write_trace_ids(line, &c),
                    None => {
                        self.spans
                            .with(&span.id(), |d| line.extend_from_slice(&d.ids_json));
                    }
                }
                line.extend_from_slice(&self.format.keys.span);
                json::write_str(line, span.name(), self.format.value_cap);
            }
            EventSpan::None => line.extend_from_slice(&self.format.identity),
        }
        self.write_caller(line, meta);
    }
}

/// The span an event is written in, known before its fields are visited.
enum EventSpan<'a, S: LookupSpan<'a>> {
    None,
    /// The current span: its part of the line is in this thread's [`SpanCache`].
    Cached,
    /// An explicit `parent:`.
    Explicit(SpanRef<'a, S>),
}

/// How far an event's line is written while its fields are visited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Nothing yet.
    Start,
    /// Up to and including the message (the first field visited): next comes the tail.
    Message,
    /// Head and tail written: fields go straight into the line.
    Direct,
    /// The first field was not the message: fields go to their own buffer and the message
    /// to its own, and the line is put together after the visit.
    Buffered,
}

impl<S> Layer<S> for JsonLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        #[cfg(feature = "opentelemetry")]
        let _ = self.dispatch.set(dispatch.downgrade());
        #[cfg(not(feature = "opentelemetry"))]
        let _ = dispatch;
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let parent = span.parent().and_then(|p| self.trace_context(&p));
        let context = match parent {
            Some(p) => TraceContext {
                span_id: SpanId::random(),
                ..p
            },
            None => TraceContext::new_root(),
        };
        let events = self.format.span_events;
        let timing = events
            .contains(SpanEvents::CLOSE)
            .then(|| Timing::new(Instant::now()));
        // Made on this thread's scratch data (recording runs the fields' `Debug` impls, which
        // may log), then copied into the store.
        with_span_scratch(|scratch| {
            let data = &mut scratch.data;
            data.reset(
                &self.format.keys,
                context,
                parent.map(|p| p.span_id),
                timing,
            );
            let plan = scratch
                .plans
                .get(attrs.metadata(), self.id, &self.format, || false);
            attrs.record(&mut span_visitor(
                &self.format,
                &mut data.fields,
                Some(plan),
            ));
            if events.contains(SpanEvents::NEW) {
                let ids = self.span_line_ids(&span);
                self.write_span_line(span.metadata(), data, ids, SpanLine::New);
            }
            self.spans.insert(id, data);
        });
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        bump_span_epoch();
        self.update_timing(id, Timing::enter);
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        bump_span_epoch();
        self.update_timing(id, Timing::exit);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        bump_span_epoch();
        if !self.format.span_events.contains(SpanEvents::CLOSE) {
            self.spans.remove(&id, |_| ());
            return;
        }
        let now = Instant::now();
        // OpenTelemetry's ids need the span's extensions unlocked: ask first.
        let span = ctx.span(&id);
        let ids = span.as_ref().and_then(|span| self.span_line_ids(span));
        let Some(meta) = span.as_ref().map(|span| span.metadata()) else {
            self.spans.remove(&id, |_| ());
            return;
        };
        // Formatted under the store's lock, written after it.
        let close = |s: &mut Scratch| {
            self.spans.remove(&id, |data| {
                let Some(timing) = data.timing else {
                    return false; // always there while close lines are on
                };
                let (duration, busy, idle) = timing.close(now);
                let kind = SpanLine::Close {
                    duration,
                    busy,
                    idle,
                };
                self.format_span_line(s, meta, data, ids, kind);
                true
            }) == Some(true)
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => {
                if close(&mut s) {
                    self.sink.write_line(&s.line);
                }
            }
            // A span closed while formatting something else (a `Debug` impl): fresh buffers.
            Err(_) => {
                let mut s = Scratch::new();
                if close(&mut s) {
                    self.sink.write_line(&s.line);
                }
            }
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        // Recorded on this thread's scratch (the values' `Debug` impls run outside the
        // store's lock), then merged into the span's fields.
        with_span_scratch(|scratch| {
            let fields = &mut scratch.data.fields;
            fields.clear();
            values.record(&mut span_visitor(&self.format, fields, None));
            self.spans.with_mut(id, |data| data.fields.merge(fields));
        });
        FIELDS_GENERATION.fetch_add(1, Ordering::Release);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => {
                self.format_event(&mut s, event, &ctx);
                self.sink.write_line(&s.line);
            }
            // An event emitted while formatting another (a `Debug` impl that logs): use a
            // fresh buffer rather than lose it.
            Err(_) => {
                let mut s = Scratch::new();
                self.format_event(&mut s, event, &ctx);
                self.sink.write_line(&s.line);
            }
        });
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<SpanAccess>() {
            Some(&self.access as *const SpanAccess as *const ())
        } else {
            None
        }
    }
}

fn span_visitor<'a>(
    format: &'a LineFormat,
    fields: &'a mut SpanFields,
    plan: Option<&'a CallsitePlan>,
) -> Visitor<SpanFieldSink<'a>> {
    Visitor(SpanFieldSink {
        format,
        fields,
        plan,
    })
}

/// Where a visited field's value goes. The one [`Visit`] implementation below writes every
/// value type; sinks only decide the destination.
trait FieldSink {
    /// The buffer for `field`'s value, or `None` when the value must not be written
    /// (already written, redacted, or a `log.*` bookkeeping field).
    fn begin(&mut self, field: &Field) -> Option<Slot<'_>>;
    /// After the value of a field `begin` gave a slot for (or refused) is written.
    fn end(&mut self) {}
    fn cap(&self) -> usize;
}

struct Slot<'a> {
    out: &'a mut Vec<u8>,
    /// The message is always a JSON string, whatever type it was recorded as.
    as_string: bool,
}

/// Event fields: the message to its own buffer, the rest to `,"key":value` in field order.
struct EventFields<'a, 'l, S: LookupSpan<'l>> {
    layer: &'a JsonLayer<S>,
    meta: &'a Metadata<'a>,
    span: &'a EventSpan<'l, S>,
    cache: &'a SpanCache,
    state: LineState,
    line: &'a mut Vec<u8>,
    fields: &'a mut Vec<u8>,
    message: &'a mut Vec<u8>,
    seen: &'a mut SeenKeys,
    /// The plan's fields written, by index (those past 63 go to `seen`).
    written: u64,
    plan: &'a CallsitePlan,
    from_log: bool,
}

impl<S> FieldSink for EventFields<'_, '_, S>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    fn begin(&mut self, field: &Field) -> Option<Slot<'_>> {
        let plan = self.plan;
        let f = match plan.fields.get(field.index()) {
            // The same name at the same place: the plan is this field's (whatever callsite
            // the field came from, the plan depends on its name only).
            Some(f) if std::ptr::eq(f.key.name, field.name()) => f,
            // A field of another callsite than the event's: rare enough to plan on the spot.
            _ => {
                let f = FieldPlan::new(field.name(), &self.layer.format);
                return self.begin_field(&f, None);
            }
        };
        let key = &plan.keys[f.start as usize..f.end as usize];
        if plan.dupes {
            self.begin_field(f, Some(key))
        } else {
            self.begin_unique_field(f, field.index(), key)
        }
    }

    fn cap(&self) -> usize {
        self.layer.format.value_cap
    }
}

impl<S> EventFields<'_, '_, S>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    /// Where the message's value goes, unless a message was already recorded: straight into
    /// the line when it is the first field.
    fn begin_message(&mut self) -> Option<Slot<'_>> {
        match self.state {
            LineState::Start => {
                self.layer
                    .format
                    .write_open(self.line, SystemTime::now(), self.meta.level());
                self.state = LineState::Message;
                Some(Slot {
                    out: self.line,
                    as_string: true,
                })
            }
            LineState::Buffered if self.message.is_empty() => Some(Slot {
                out: self.message,
                as_string: true,
            }),
            _ => None,
        }
    }

    /// Where a field (key and value) goes.
    #[inline]
    fn out(&mut self) -> &mut Vec<u8> {
        match self.state {
            LineState::Direct => self.line,
            LineState::Message => {
                self.layer
                    .write_tail(self.line, self.meta, self.span, self.cache);
                self.state = LineState::Direct;
                self.line
            }
            LineState::Start => {
                self.state = LineState::Buffered;
                self.fields
            }
            LineState::Buffered => self.fields,
        }
    }

    /// A field of a callsite whose fields are all written under different keys: no check
    /// against the keys already written.
    #[inline]
    fn begin_unique_field(&mut self, f: &FieldPlan, index: usize, key: &[u8]) -> Option<Slot<'_>> {
        if f.message {
            return self.begin_message();
        }
        if f.log_meta && self.from_log {
            return None; // `tracing-log` carries the record's metadata as fields
        }
        if index < 64 {
            self.written |= 1 << index;
        } else {
            self.seen.add(f.key);
        }
        let out = self.out();
        json::put(out, key);
        value_slot(out, f.secret)
    }

    /// Any field: checked against the keys already written. `key` is the rendered key when
    /// known.
    #[cold]
    fn begin_field(&mut self, f: &FieldPlan, key: Option<&[u8]>) -> Option<Slot<'_>> {
        if f.message {
            return self.begin_message();
        }
        if f.log_meta && self.from_log {
            return None;
        }
        let written = EventKeys {
            seen: self.seen,
            plan: self.plan,
            written: self.written,
        };
        if written.contains(f.key) {
            return None;
        }
        self.seen.add(f.key);
        let out = self.out();
        match key {
            Some(key) => out.extend_from_slice(key),
            None => f.key.write(out),
        }
        value_slot(out, f.secret)
    }
}

/// Where a field's value goes once its key is written; a secret's value is written here,
/// redacted, and the field takes nothing more.
#[inline]
fn value_slot(out: &mut Vec<u8>, secret: bool) -> Option<Slot<'_>> {
    if secret {
        json::write_str(out, REDACTED, usize::MAX);
        return None;
    }
    Some(Slot {
        out,
        as_string: false,
    })
}

/// Span fields: each value rendered once into the span's own storage; recording a field
/// again replaces its value.
struct SpanFieldSink<'a> {
    format: &'a LineFormat,
    fields: &'a mut SpanFields,
    /// The span callsite's plan (when the span is made; values recorded later are rarer and
    /// do without).
    plan: Option<&'a CallsitePlan>,
}

impl FieldSink for SpanFieldSink<'_> {
    fn begin(&mut self, field: &Field) -> Option<Slot<'_>> {
        let name = field.name();
        let planned = self
            .plan
            .and_then(|p| p.fields.get(field.index()))
            .filter(|f| std::ptr::eq(f.key.name, name));
        let f = match planned {
            Some(f) => *f,
            None => FieldPlan::new(name, self.format),
        };
        let out = self.fields.begin(name, || f.key);
        value_slot(out, f.secret)
    }

    fn end(&mut self) {
        self.fields.end();
    }

    fn cap(&self) -> usize {
        self.format.value_cap
    }
}

struct Visitor<F>(F);

/// Writes a scalar as its JSON type, or as a string where the slot needs one.
macro_rules! record_scalar {
    ($method:ident, $ty:ty, $write:path) => {
        fn $method(&mut self, field: &Field, value: $ty) {
            let cap = self.0.cap();
            if let Some(slot) = self.0.begin(field) {
                if slot.as_string {
                    json::write_fmt(slot.out, format_args!("{value}"), cap);
                } else {
                    $write(slot.out, value);
                }
            }
            self.0.end();
        }
    };
}

impl<F: FieldSink> Visit for Visitor<F> {
    record_scalar!(record_i64, i64, json::write_i64);
    record_scalar!(record_u64, u64, json::write_u64);
    record_scalar!(record_i128, i128, json::write_i128);
    record_scalar!(record_u128, u128, json::write_u128);
    record_scalar!(record_f64, f64, json::write_f64);
    record_scalar!(record_bool, bool, json::write_bool);

    fn record_str(&mut self, field: &Field, value: &str) {
        let cap = self.0.cap();
        if let Some(slot) = self.0.begin(field) {
            json::write_str(slot.out, value, cap);
        }
        self.0.end();
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let cap = self.0.cap();
        if let Some(slot) = self.0.begin(field) {
            json::write_error(slot.out, value, cap);
        }
        self.0.end();
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let cap = self.0.cap();
        if let Some(slot) = self.0.begin(field) {
            json::write_fmt(slot.out, format_args!("{value:?}"), cap);
        }
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;

    fn text(fields: &SpanFields) -> String {
        let mut out = Vec::new();
        for (key, value) in fields.iter() {
            key.write(&mut out);
            out.extend_from_slice(value);
        }
        String::from_utf8(out).unwrap()
    }

    fn record(fields: &mut SpanFields, keys: &LineKeys, name: &'static str, value: &str) {
        fields
            .begin(name, || OutKey::new(name, keys))
            .extend_from_slice(value.as_bytes());
        fields.end();
    }

    #[test]
    fn span_fields_replace_values_in_place_and_merge() {
        let keys = LineKeys::new(&Keys::tailrace());
        let mut f = SpanFields::new();
        record(&mut f, &keys, "a", "1");
        record(&mut f, &keys, "level", "\"x\"");
        record(&mut f, &keys, "c", "333");
        assert_eq!(text(&f), r#","a":1,"fields.level":"x","c":333"#);
        // A longer, then a shorter value for the first and the middle field: the others keep
        // theirs, every field keeps its place.
        record(&mut f, &keys, "a", "11111");
        record(&mut f, &keys, "level", "\"\"");
        assert_eq!(text(&f), r#","a":11111,"fields.level":"","c":333"#);
        let mut other = SpanFields::new();
        record(&mut other, &keys, "c", "4");
        record(&mut other, &keys, "d", "true");
        f.merge(&other);
        assert_eq!(text(&f), r#","a":11111,"fields.level":"","c":4,"d":true"#);
        let mut copy = SpanFields::new();
        record(&mut copy, &keys, "z", "0");
        copy.copy_from(&f);
        assert_eq!(text(&copy), text(&f));
        f.clear();
        assert_eq!(text(&f), "");
    }

    #[test]
    fn the_span_store_reuses_slots_and_keeps_spans_apart() {
        let keys = LineKeys::new(&Keys::tailrace());
        let store = SpanStore::new();
        let mut data = SpanData::empty();
        for round in 0..3u64 {
            for n in 1..=100u64 {
                data.reset(&keys, TraceContext::new_root(), None, None);
                record(&mut data.fields, &keys, "n", &(n * 10 + round).to_string());
                store.insert(&Id::from_u64(n + round * 1000), &data);
            }
            for n in 1..=100u64 {
                let id = Id::from_u64(n + round * 1000);
                let got = store.with(&id, |d| text(&d.fields)).unwrap();
                assert_eq!(got, format!(",\"n\":{}", n * 10 + round));
                store.remove(&id, |_| ()).unwrap();
                assert!(store.with(&id, |_| ()).is_none());
            }
        }
        let slots: usize = store
            .shards
            .iter()
            .map(|s| s.0.lock().unwrap().slots.len())
            .sum();
        // Each shard holds as many slots as it ever had spans open at once: 100 in all, a few
        // more as ids fall into shards differently from round to round; 300 without reuse.
        assert!(
            (100..150).contains(&slots),
            "{slots} slots for 100 open spans"
        );
    }
}
