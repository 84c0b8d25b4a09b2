//! The write path: what Loki's distributor and ingester do with a decoded push, and the
//! store it leaves behind.
//!
//! In Loki's order:
//! 1. Every stream's label string is parsed (`couldn't parse labels: ...` fails the whole
//!    request) and `service_name` is added when missing.
//! 2. A push without streams is `422`.
//! 3. The distributor validates each stream's labels and each entry (too old, too new, line
//!    too long, structured metadata); what fails is dropped and its message kept.
//! 4. The tenant's ingestion rate is charged with what passed; over it, the whole request is
//!    `429` and nothing is stored.
//! 5. The ingester takes the streams in order: a new stream over the stream limit is `429`;
//!    entries more than an hour behind their stream's newest are dropped (`entry too far
//!    behind`); a stream over its own rate is refused whole (`429`); the rest is appended to
//!    the stream's chunk, as Loki's `stream.storeEntries` does: an entry equal to the stream's
//!    last appended one, or to one still in the open head block, is dropped; any other
//!    entry is stored, **a replay of an older entry included** (see [`Stream::append`]).
//! 6. The answer is the ingester's error for the *last* stream it took, if any (Loki's
//!    `instance.Push` keeps only that one), else the distributor's validation errors as a
//!    `400` (a partial success: the valid entries are stored), else `204`.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::collections::hash_map::{self, HashMap};
use std::hash::{Hash, Hasher};
use std::time::Instant;

use bytes::Bytes;

use crate::config::Limits;
use crate::decode::{DecodedEntry, DecodedPush};
use crate::gofmt::{datasize, go_time_string, rfc3339};
use crate::labels::{LabelSet, parse_labels};
use crate::rate::TokenBucket;
use crate::recorded::{StoredEntry, StoredStream, StreamEntry};

/// The status and text of an answer (`204` has no text). The HTTP body is the text plus a
/// newline, as Go's `http.Error` writes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) text: String,
}

impl Answer {
    fn no_content() -> Self {
        Answer {
            status: 204,
            text: String::new(),
        }
    }

    fn error(status: u16, text: String) -> Self {
        Answer { status, text }
    }
}

/// Whether entries are kept, or only counted (for throughput benches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    Entries,
    CountOnly,
}

/// Everything stored, per tenant.
pub(crate) struct Store {
    storage: Storage,
    tenants: HashMap<String, Tenant>,
    stored_entries: u64,
    distinct_entries: u64,
}

/// Loki's `chunk_block_size` (`-ingester.chunks-block-size`, 256 KiB): the head block is cut
/// once its uncompressed size reaches it.
pub(crate) const CHUNK_BLOCK_SIZE: usize = 256 * 1024;

/// What a push appended to one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Appended {
    /// Every stored copy (what `count_over_time` counts).
    copies: u64,
    /// Entries whose (timestamp, line) the stream did not hold yet (what a log query
    /// returns, identical entries being merged on read).
    distinct: u64,
}

struct Tenant {
    ingestion_rate: TokenBucket,
    streams: HashMap<String, Stream>,
}

/// One ingester stream: its state for validation and its stored entries.
struct Stream {
    /// Sorted, `service_name` included.
    labels: Vec<(String, String)>,
    /// Prometheus' print of the labels: the stream's key and its name in messages.
    labels_text: String,
    rate: TokenBucket,
    /// The newest timestamp accepted so far.
    newest_unix_nanos: Option<i128>,
    /// The entry appended last: Loki skips an entry equal to it before any other check.
    last_entry: Option<(i128, Bytes)>,
    /// Stored entries in arrival order, every stored copy (empty when only counting).
    entries: Vec<StoredLine>,
    /// The open head block of the stream's chunk (Loki's `unorderedHeadBlock`): (timestamp,
    /// hash of the line) of each entry appended since the last cut; the value indexes
    /// `entries` (0 when only counting).
    head: HashMap<(i64, u64), u32>,
    /// The index in `entries` of the head block's first entry.
    head_start: usize,
    /// The head block's `UncompressedSize`: line bytes, plus 8 per structured metadata
    /// pair (`detected_level` included); no timestamps.
    head_size: usize,
    /// (timestamp, hash of the line) of every entry ever stored, to count distinct entries.
    distinct: HashSet<(i64, u64)>,
    /// Every stored copy.
    stored: u64,
}

struct StoredLine {
    unix_nanos: i64,
    line: Bytes,
    structured_metadata: Vec<(String, String)>,
}

/// A stream after the push's label parsing: Loki's `logproto.Stream` going into the
/// distributor.
struct ParsedStream {
    labels: LabelSet,
    /// The label string as the distributor sees it: as received, or reprinted when
    /// `service_name` was added. Validation messages about labels quote it.
    received_labels: String,
    entries: Vec<DecodedEntry>,
}

/// A stream that passed the distributor, on its way to the ingester.
struct ValidStream {
    labels: LabelSet,
    labels_text: String,
    entries: Vec<DecodedEntry>,
}

/// An entry the ingester refused, with its reason.
struct RefusedEntry {
    unix_nanos: i128,
    reason: String,
}

/// Loki's `util.GroupedErrors`: distinct messages with their counts, in first-seen order
/// (Loki's own order is Go's random map order).
#[derive(Default)]
struct GroupedErrors {
    messages: Vec<(String, usize)>,
}

impl GroupedErrors {
    fn add(&mut self, message: String) {
        match self.messages.iter_mut().find(|(m, _)| *m == message) {
            Some((_, count)) => *count += 1,
            None => self.messages.push((message, 1)),
        }
    }

    fn into_answer(self) -> Option<Answer> {
        if self.messages.is_empty() {
            return None;
        }
        let counted = self.messages.len() > 1 || self.messages[0].1 > 1;
        let text = self
            .messages
            .into_iter()
            .map(|(message, count)| {
                if counted {
                    format!("{count} errors like: {message}")
                } else {
                    message
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        Some(Answer::error(400, text))
    }
}

/// The moment a push is handled: the double's clock for validation, the monotonic clock for
/// rate limits.
#[derive(Clone, Copy)]
pub(crate) struct PushTime {
    pub(crate) unix_nanos: i128,
    pub(crate) instant: Instant,
}

fn nanos(duration: std::time::Duration) -> i128 {
    duration.as_nanos() as i128
}

impl Store {
    pub(crate) fn new(storage: Storage) -> Self {
        Store {
            storage,
            tenants: HashMap::new(),
            stored_entries: 0,
            distinct_entries: 0,
        }
    }

    /// Entries stored so far, all tenants: every stored copy, as `count_over_time` counts.
    pub(crate) fn stored_entries(&self) -> u64 {
        self.stored_entries
    }

    /// Distinct entries stored so far, all tenants: copies of the same (stream, timestamp,
    /// line) counted once, as a log query (`query_range`) returns them.
    pub(crate) fn distinct_entries(&self) -> u64 {
        self.distinct_entries
    }

    /// Handles one decoded push for `tenant` and returns Loki's answer.
    pub(crate) fn push(
        &mut self,
        tenant: &str,
        push: DecodedPush,
        limits: &Limits,
        now: PushTime,
    ) -> Answer {
        let streams = match parse_streams(push, limits) {
            Ok(streams) => streams,
            Err(text) => return Answer::error(400, text),
        };
        if streams.is_empty() {
            return Answer::error(
                422,
                "error at least one valid stream is required for ingestion".to_owned(),
            );
        }
        let (valid, validation_errors) = validate(streams, limits, now.unix_nanos);
        let validation_answer = validation_errors.into_answer();
        if valid.is_empty() {
            return validation_answer.unwrap_or_else(Answer::no_content);
        }

        let tenant_state = self
            .tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| Tenant {
                ingestion_rate: TokenBucket::new(
                    limits.ingestion_rate_bytes_per_second,
                    limits.ingestion_burst_bytes,
                    now.instant,
                ),
                streams: HashMap::new(),
            });
        let (lines, bytes) = valid
            .iter()
            .flat_map(|s| &s.entries)
            .fold((0usize, 0usize), |(lines, bytes), entry| {
                (lines + 1, bytes + entry.total_size())
            });
        if !tenant_state.ingestion_rate.allow(now.instant, bytes) {
            return Answer::error(429, ingestion_rate_message(tenant, limits, lines, bytes));
        }

        let mut last_stream_answer = None;
        for stream in valid {
            let stream_count = tenant_state.streams.len();
            let state = match tenant_state.streams.entry(stream.labels_text.clone()) {
                hash_map::Entry::Occupied(occupied) => occupied.into_mut(),
                hash_map::Entry::Vacant(vacant) => {
                    if stream_count >= limits.max_streams_per_tenant {
                        last_stream_answer = Some(Answer::error(
                            429,
                            format!(
                                "Maximum active stream limit exceeded when trying to create stream {}, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '{tenant}'",
                                stream.labels_text
                            ),
                        ));
                        continue;
                    }
                    vacant.insert(Stream::new(&stream, limits, now.instant))
                }
            };
            let (answer, appended) =
                state.push(stream.entries, tenant, limits, now.instant, self.storage);
            self.stored_entries += appended.copies;
            self.distinct_entries += appended.distinct;
            last_stream_answer = answer;
        }
        last_stream_answer
            .or(validation_answer)
            .unwrap_or_else(Answer::no_content)
    }

    /// The stored streams of `tenant` (all tenants when `None`), sorted by tenant and labels.
    pub(crate) fn streams(&self, tenant: Option<&str>) -> Vec<StoredStream> {
        let mut streams: Vec<StoredStream> = self
            .tenants
            .iter()
            .filter(|(name, _)| tenant.is_none_or(|wanted| wanted == name.as_str()))
            .flat_map(|(name, state)| {
                state
                    .streams
                    .values()
                    .map(move |stream| stream.to_stored(name))
            })
            .collect();
        streams.sort_by(|a, b| (&a.tenant, &a.labels).cmp(&(&b.tenant, &b.labels)));
        streams
    }

    /// The stored entries of `tenant` (all tenants when `None`), by tenant, labels and time.
    pub(crate) fn entries(&self, tenant: Option<&str>) -> Vec<StoredEntry> {
        self.streams(tenant)
            .into_iter()
            .flat_map(|stream| {
                let StoredStream {
                    tenant,
                    labels,
                    entries,
                } = stream;
                entries.into_iter().map(move |entry| StoredEntry {
                    tenant: tenant.clone(),
                    labels: labels.clone(),
                    timestamp_ns: entry.timestamp_ns,
                    line: entry.line,
                    structured_metadata: entry.structured_metadata,
                })
            })
            .collect()
    }

    /// Entries stored for `tenant`, every stored copy.
    pub(crate) fn stored_entries_of(&self, tenant: &str) -> u64 {
        self.tenants
            .get(tenant)
            .map_or(0, |t| t.streams.values().map(|s| s.stored).sum())
    }

    /// Distinct entries stored for `tenant` (copies of one (stream, timestamp, line) once).
    pub(crate) fn distinct_entries_of(&self, tenant: &str) -> u64 {
        self.tenants.get(tenant).map_or(0, |t| {
            t.streams.values().map(|s| s.distinct.len() as u64).sum()
        })
    }
}

fn ingestion_rate_message(tenant: &str, limits: &Limits, lines: usize, bytes: usize) -> String {
    format!(
        "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
        limits.ingestion_rate_bytes_per_second
    )
}

/// `ParseLokiRequest`'s pass over the streams: parse each label string (one bad string fails
/// the request) and add `service_name` when it is missing.
fn parse_streams(push: DecodedPush, limits: &Limits) -> Result<Vec<ParsedStream>, String> {
    push.streams
        .into_iter()
        .map(|stream| {
            let mut labels =
                parse_labels(&stream.labels).map_err(|e| format!("couldn't parse labels: {e}"))?;
            let mut received_labels = stream.labels;
            if labels.get("service_name").is_none() && !limits.discover_service_name.is_empty() {
                let service = limits
                    .discover_service_name
                    .iter()
                    .find_map(|name| labels.get(name))
                    .unwrap_or("unknown_service")
                    .to_owned();
                labels.set("service_name", &service);
                received_labels = labels.to_string();
            }
            Ok(ParsedStream {
                labels,
                received_labels,
                entries: stream.entries,
            })
        })
        .collect()
}

/// The distributor's validation of every stream and entry.
fn validate(
    streams: Vec<ParsedStream>,
    limits: &Limits,
    now_unix_nanos: i128,
) -> (Vec<ValidStream>, GroupedErrors) {
    let mut errors = GroupedErrors::default();
    let mut valid = Vec::new();
    for stream in streams {
        if stream.entries.is_empty() {
            continue;
        }
        if let Err(message) = validate_labels(&stream.labels, &stream.received_labels, limits) {
            errors.add(message);
            continue;
        }
        let labels_text = stream.labels.to_string();
        let mut entries = stream.entries;
        entries.retain_mut(|entry| {
            match validate_entry(entry, &labels_text, limits, now_unix_nanos) {
                Ok(()) => {
                    sanitize_structured_metadata(&mut entry.structured_metadata);
                    true
                }
                Err(message) => {
                    errors.add(message);
                    false
                }
            }
        });
        if !entries.is_empty() {
            valid.push(ValidStream {
                labels: stream.labels,
                labels_text,
                entries,
            });
        }
    }
    (valid, errors)
}

/// The distributor's `ValidateLabels`.
fn validate_labels(labels: &LabelSet, received: &str, limits: &Limits) -> Result<(), String> {
    if labels.is_empty() {
        return Err("error at least one label pair is required per stream".to_owned());
    }
    let counted = labels.len() - usize::from(labels.get("service_name").is_some());
    if counted > limits.max_label_names_per_series {
        return Err(format!(
            "entry for stream '{received}' has {counted} label names; limit {}",
            limits.max_label_names_per_series
        ));
    }
    let mut previous_name = "";
    for (name, value) in labels.iter() {
        if name.len() > limits.max_label_name_length {
            return Err(format!(
                "stream '{received}' has label name too long: '{name}'"
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err(format!(
                "stream '{received}' has label value too long: '{value}'"
            ));
        }
        if name == previous_name {
            return Err(format!(
                "stream '{received}' has duplicate label name: '{name}'"
            ));
        }
        previous_name = name;
    }
    Ok(())
}

/// The distributor's `ValidateEntry`.
fn validate_entry(
    entry: &DecodedEntry,
    labels: &str,
    limits: &Limits,
    now_unix_nanos: i128,
) -> Result<(), String> {
    let at = entry.unix_nanos;
    let oldest = now_unix_nanos - nanos(limits.reject_old_samples_max_age);
    if limits.reject_old_samples && at < oldest {
        return Err(format!(
            "entry for stream '{labels}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
            rfc3339(at),
            rfc3339(oldest)
        ));
    }
    if at > now_unix_nanos + nanos(limits.creation_grace_period) {
        return Err(format!(
            "entry for stream '{labels}' has timestamp too new: {}",
            rfc3339(at)
        ));
    }
    let max_line = limits.max_line_size_bytes;
    if max_line != 0 && entry.line.len() > max_line {
        return Err(format!(
            "Max entry size '{max_line}' bytes exceeded for stream '{labels}' while adding an entry with length '{}' bytes",
            entry.line.len()
        ));
    }
    if entry.structured_metadata.is_empty() {
        return Ok(());
    }
    if !limits.allow_structured_metadata {
        return Err(format!(
            "stream '{labels}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it."
        ));
    }
    let size = entry.structured_metadata_size();
    let max_size = limits.max_structured_metadata_bytes;
    if max_size != 0 && size > max_size {
        return Err(format!(
            "stream '{labels}' has structured metadata too large: '{size}' bytes, limit: '{max_size}' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it."
        ));
    }
    let count = entry.structured_metadata.len();
    let max_count = limits.max_structured_metadata_entries;
    if max_count != 0 && count > max_count {
        return Err(format!(
            "stream '{labels}' has too many structured metadata labels: '{count}', limit: '{max_count}'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it."
        ));
    }
    Ok(())
}

/// The distributor's `otlptranslate.NormalizeLabel` of structured metadata names: characters
/// outside `[a-zA-Z0-9_]` become `_`, a leading digit gets `key_` in front.
fn sanitize_structured_metadata(pairs: &mut [(String, String)]) {
    for (name, _) in pairs {
        if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        let mut normalized: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if normalized.starts_with(|c: char| c.is_ascii_digit()) {
            normalized.insert_str(0, "key_");
        }
        *name = normalized;
    }
}

fn line_hash(line: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    line.hash(&mut hasher);
    hasher.finish()
}

impl Stream {
    fn new(stream: &ValidStream, limits: &Limits, now: Instant) -> Self {
        Stream {
            labels: stream.labels.clone().into_pairs(),
            labels_text: stream.labels_text.clone(),
            rate: TokenBucket::new(
                limits.per_stream_rate_bytes_per_second,
                limits.per_stream_burst_bytes,
                now,
            ),
            newest_unix_nanos: None,
            last_entry: None,
            entries: Vec::new(),
            head: HashMap::new(),
            head_start: 0,
            head_size: 0,
            distinct: HashSet::new(),
            stored: 0,
        }
    }

    /// The ingester's `stream.Push` with whole-stream rate limiting (Loki 3's default with
    /// stream sharding on). Returns the stream's error answer, if any, and what was stored.
    fn push(
        &mut self,
        entries: Vec<DecodedEntry>,
        tenant: &str,
        limits: &Limits,
        now: Instant,
        storage: Storage,
    ) -> (Option<Answer>, Appended) {
        let total = entries.len();
        let window = nanos(limits.out_of_order_window);
        let mut last_entry = self.last_entry.clone();
        let mut newest = self.newest_unix_nanos;
        let mut refused = Vec::new();
        let mut accepted = Vec::with_capacity(total);
        let mut accepted_bytes = 0;
        for entry in entries {
            let at = entry.unix_nanos;
            if last_entry
                .as_ref()
                .is_some_and(|(last_at, last_line)| *last_at == at && *last_line == entry.line)
            {
                continue;
            }
            if let Some(cutoff) = newest.map(|newest| newest - window)
                && cutoff > at
            {
                refused.push(RefusedEntry {
                    unix_nanos: at,
                    reason: format!(
                        "entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}",
                        rfc3339(at),
                        rfc3339(cutoff)
                    ),
                });
                continue;
            }
            accepted_bytes += entry.total_size();
            last_entry = Some((at, entry.line.clone()));
            newest = Some(newest.map_or(at, |newest| newest.max(at)));
            accepted.push(entry);
        }

        if !self.rate.allow(now, accepted_bytes) {
            let refused: Vec<RefusedEntry> = accepted
                .iter()
                .map(|entry| RefusedEntry {
                    unix_nanos: entry.unix_nanos,
                    reason: format!(
                        "Per stream rate limit exceeded (limit: {}/sec) while attempting to ingest for stream '{}' totaling {}, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased",
                        datasize(limits.per_stream_rate_bytes_per_second),
                        self.labels_text,
                        datasize(entry.total_size() as u64)
                    ),
                })
                .collect();
            return (
                Some(self.refusal(429, &refused, total, tenant, limits)),
                Appended::default(),
            );
        }

        let mut appended = Appended::default();
        for entry in accepted {
            // The distributor adds `detected_level` (`discover_log_levels`, on by default) to
            // every entry's structured metadata when structured metadata is allowed: one
            // more pair in the head block (the double does not store it).
            let pairs =
                entry.structured_metadata.len() + usize::from(limits.allow_structured_metadata);
            let head_bytes = entry.line.len() + 8 * pairs;
            if let Some(new_distinct) = self.append(entry, head_bytes, storage) {
                appended.copies += 1;
                appended.distinct += u64::from(new_distinct);
            }
        }
        self.newest_unix_nanos = newest;
        self.last_entry = match (last_entry, storage) {
            // Copied, so that no request body is kept alive only for this comparison.
            (Some((at, line)), Storage::CountOnly) => Some((at, Bytes::copy_from_slice(&line))),
            (last_entry, _) => last_entry,
        };
        let answer =
            (!refused.is_empty()).then(|| self.refusal(400, &refused, total, tenant, limits));
        (answer, appended)
    }

    /// Loki's `MemChunk.Append` into the unordered head block, for an entry that passed
    /// the stream's checks. Returns `None` when the head block already holds the same
    /// (timestamp, line) and drops it (`unorderedHeadBlock.Append` returns `dup`), else
    /// stores it, even when an older copy sits in a cut block, and returns whether its
    /// (timestamp, line) is new to the stream. The head block's size grows by `head_bytes`
    /// (the line's length plus 8 bytes per structured metadata pair,
    /// `unorderedHeadBlock.Append`); once it reaches [`CHUNK_BLOCK_SIZE`] the block is cut
    /// (`MemChunk.Append`: `if c.head.UncompressedSize() >= c.blockSize { c.cut() }`) and the
    /// next one starts empty.
    ///
    /// Not reproduced: chunk cuts (1.5 MB compressed target, hourly sync, idle and age
    /// flushes), each of which also empties the head block in Loki.
    fn append(&mut self, entry: DecodedEntry, head_bytes: usize, storage: Storage) -> Option<bool> {
        let at = entry.unix_nanos;
        let stored_at = i64::try_from(at).unwrap_or(if at < 0 { i64::MIN } else { i64::MAX });
        let key = (stored_at, line_hash(&entry.line));
        let in_head = match self.head.get(&key) {
            None => false,
            // Only counting: the 64-bit hash of the line has to do.
            Some(_) if storage == Storage::CountOnly => true,
            // The same hash for another line is all but impossible; if it happens, look at
            // the whole head block rather than drop a line that is not a repeat.
            Some(&index) => {
                self.entries
                    .get(index as usize)
                    .is_some_and(|e| e.line == entry.line)
                    || self.entries[self.head_start..]
                        .iter()
                        .any(|e| e.unix_nanos == stored_at && e.line == entry.line)
            }
        };
        if in_head {
            return None;
        }
        let index = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.head.entry(key).or_insert(index);
        self.head_size += head_bytes;
        let new_distinct = self.distinct.insert(key);
        if storage == Storage::Entries {
            self.entries.push(StoredLine {
                unix_nanos: stored_at,
                line: entry.line,
                structured_metadata: entry.structured_metadata,
            });
        }
        self.stored += 1;
        if self.head_size >= CHUNK_BLOCK_SIZE {
            self.head.clear();
            self.head_start = self.entries.len();
            self.head_size = 0;
        }
        Some(new_distinct)
    }

    /// The ingester's `errorForFailedEntries`.
    fn refusal(
        &self,
        status: u16,
        refused: &[RefusedEntry],
        total: usize,
        tenant: &str,
        limits: &Limits,
    ) -> Answer {
        let listed = match limits.max_returned_errors_per_stream {
            0 => refused.len(),
            max => max.min(refused.len()),
        };
        let mut text = String::new();
        for entry in &refused[..listed] {
            text.push_str(&format!(
                "entry with timestamp {} ignored, reason: '{}',\n",
                go_time_string(entry.unix_nanos),
                entry.reason
            ));
        }
        text.push_str(&format!(
            "user '{tenant}', total ignored: {} out of {total} for stream: {}",
            refused.len(),
            self.labels_text
        ));
        Answer::error(status, text)
    }

    fn to_stored(&self, tenant: &str) -> StoredStream {
        let mut entries: Vec<StreamEntry> = self
            .entries
            .iter()
            .map(|line| StreamEntry {
                timestamp_ns: line.unix_nanos,
                line: String::from_utf8_lossy(&line.line).into_owned(),
                structured_metadata: line.structured_metadata.iter().cloned().collect(),
            })
            .collect();
        entries.sort_by_key(|entry| entry.timestamp_ns);
        StoredStream {
            tenant: tenant.to_owned(),
            labels: self.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gofmt::NANOS_PER_SECOND;

    fn seconds(s: i64) -> i128 {
        i128::from(s) * NANOS_PER_SECOND
    }
    use crate::decode::DecodedStream;

    const NOW: i64 = 1_795_341_600; // 2026-11-22T10:00:00Z

    fn entry(at_seconds: i64, line: &str) -> DecodedEntry {
        DecodedEntry {
            unix_nanos: seconds(at_seconds),
            line: Bytes::from(line.to_owned()),
            structured_metadata: Vec::new(),
        }
    }

    fn push(store: &mut Store, labels: &str, entries: Vec<DecodedEntry>) -> Answer {
        let push = DecodedPush {
            streams: vec![DecodedStream {
                labels: labels.to_owned(),
                entries,
            }],
        };
        let now = PushTime {
            unix_nanos: seconds(NOW),
            instant: Instant::now(),
        };
        store.push("fake", push, &Limits::default(), now)
    }

    #[test]
    fn drops_repeats_still_in_the_head_block_and_keeps_distinct_lines() {
        let mut store = Store::new(Storage::Entries);
        let batch = || {
            vec![
                entry(NOW - 3, "a"),
                entry(NOW - 2, "b"),
                entry(NOW - 1, "c"),
            ]
        };
        assert_eq!(push(&mut store, r#"{job="x"}"#, batch()).status, 204);
        assert_eq!(push(&mut store, r#"{job="x"}"#, batch()).status, 204);
        // Not the last entry (c), but still in the head block.
        assert_eq!(
            push(&mut store, r#"{job="x"}"#, vec![entry(NOW - 2, "b")]).status,
            204
        );
        assert_eq!(store.stored_entries(), 3);
        assert_eq!(
            push(&mut store, r#"{job="x"}"#, vec![entry(NOW - 2, "b2")]).status,
            204
        );
        assert_eq!(store.stored_entries(), 4);
        assert_eq!(store.distinct_entries(), 4);
    }

    #[test]
    fn stores_a_replay_again_once_the_head_block_was_cut() {
        // 1016 bytes, plus 8 for the `detected_level` Loki adds: 1 KiB in the head block.
        let line = |i: i64| format!("{i:04} {}", "x".repeat(1011));
        let entries = |range: std::ops::Range<i64>| {
            range
                .map(|i| DecodedEntry {
                    unix_nanos: seconds(NOW - 600) + i128::from(i),
                    line: Bytes::from(line(i)),
                    structured_metadata: Vec::new(),
                })
                .collect::<Vec<_>>()
        };
        for storage in [Storage::Entries, Storage::CountOnly] {
            let mut store = Store::new(storage);
            // 1 KiB lines: the 256th fills the head block (256 KiB) and cuts it.
            assert_eq!(
                push(&mut store, r#"{job="x"}"#, entries(0..300)).status,
                204
            );
            assert_eq!(store.stored_entries(), 300);
            // A far replay (in a cut block) is stored again; a near one (still in the head
            // block) is not.
            for range in [0..2, 255..256, 256..258, 280..290] {
                push(&mut store, r#"{job="x"}"#, entries(range));
            }
            assert_eq!(store.stored_entries(), 303);
            assert_eq!(store.distinct_entries(), 300);
            if storage == Storage::Entries {
                let stored = store.entries(None);
                let copies = |i| stored.iter().filter(|e| e.line == line(i)).count();
                assert_eq!((copies(0), copies(255), copies(256)), (2, 2, 1));
            }
        }
    }

    #[test]
    fn structured_metadata_fills_the_head_block_too() {
        let mut store = Store::new(Storage::Entries);
        // 1008 line bytes + 8 for one metadata pair + 8 for `detected_level`: 1 KiB per
        // entry, cut at the 256th.
        let entries = |range: std::ops::Range<i64>| {
            range
                .map(|i| DecodedEntry {
                    unix_nanos: seconds(NOW - 600) + i128::from(i),
                    line: Bytes::from(format!("{i:04} {}", "y".repeat(1003))),
                    structured_metadata: vec![("k".to_owned(), "v".to_owned())],
                })
                .collect::<Vec<_>>()
        };
        push(&mut store, r#"{job="x"}"#, entries(0..257));
        push(&mut store, r#"{job="x"}"#, entries(255..256));
        push(&mut store, r#"{job="x"}"#, entries(256..257));
        assert_eq!(store.stored_entries(), 258);
    }

    #[test]
    fn count_only_counts_like_storing() {
        let mut store = Store::new(Storage::CountOnly);
        let batch = || {
            vec![
                entry(NOW - 3, "a"),
                entry(NOW - 2, "b"),
                entry(NOW - 2, "b"),
            ]
        };
        push(&mut store, r#"{job="x"}"#, batch());
        push(&mut store, r#"{job="x"}"#, batch());
        assert_eq!(store.stored_entries(), 2);
        assert_eq!(store.distinct_entries(), 2);
        assert!(store.entries(None).is_empty());
    }

    #[test]
    fn lists_groups_of_validation_errors() {
        let mut store = Store::new(Storage::Entries);
        let answer = push(
            &mut store,
            r#"{job="x"}"#,
            vec![
                entry(NOW + 3600, "new"),
                entry(NOW + 3600, "new too"),
                entry(NOW, "ok"),
            ],
        );
        assert_eq!(answer.status, 400);
        assert_eq!(
            answer.text,
            "2 errors like: entry for stream '{job=\"x\", service_name=\"x\"}' has timestamp too new: 2026-11-22T11:00:00Z"
        );
        assert_eq!(store.stored_entries(), 1);
    }
}
