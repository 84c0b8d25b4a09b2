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
//! unreachable for [`PATIENCE`]), are sent again and counted in
//! `tailrace_resent_entries_total`, with one warning saying why. Lines found and not sent
//! are counted in `tailrace_recovered_entries_total`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::watch;

use crate::model::FileKey;
use crate::model::labels::LabelSet;
use crate::observe::telemetry::Telemetry;
use crate::runtime::checkpoint::Positions;
use crate::sink::loki::client::{FailureKind, PushClient};

/// How long Loki may stay unreachable (connection refused, timeouts, 5xx, 429) before the
/// lines in question are sent unchecked. Within it the lookups are retried with the push
/// backoff, as a push would be: a shipper restarted during an outage waits for Loki to
/// come back rather than store its last batches twice.
pub const PATIENCE: Duration = Duration::from_secs(10 * 60);

/// How long after the start the first look-up waits: a push the dead process had sent
/// just before it was killed may still be in Loki's hands, and a look-up that ran before
/// Loki stored it would not see it.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Loki's default `max_entries_limit_per_query`.
const PAGE: usize = 5000;

/// The largest answer read (a page of 5,000 lines of 256 KiB would be more, but lines that
/// long are rare; a bigger answer fails the lookup, which then resends, counted).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

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

/// Asks Loki's `query_range` which entries of a stream it holds.
pub struct LokiLookup {
    client: PushClient,
    url: Url,
    /// Why Loki cannot be asked, once that is known: said once, then what was to be looked
    /// up is sent again (counted).
    unusable: Option<String>,
    /// When Loki was first found unreachable in a row of failed lookups.
    unreachable_since: Option<Instant>,
    /// Before this, no look-up is made (see [`SETTLE`]).
    settled_at: Instant,
}

impl LokiLookup {
    /// Looks up at `query_url` with `client`'s credentials and TLS; the first look-up waits
    /// for `settle`.
    pub fn new(client: PushClient, query_url: &str, settle: Duration) -> Self {
        let unusable = Url::parse(query_url)
            .err()
            .map(|e| format!("loki.query_url `{query_url}` is not a URL: {e}"));
        let url = Url::parse(query_url)
            .unwrap_or_else(|_| Url::parse("http://127.0.0.1/").expect("a constant URL parses"));
        Self {
            client,
            url,
            unusable,
            unreachable_since: None,
            settled_at: Instant::now() + settle,
        }
    }

    /// The (timestamp, line) pairs Loki holds for the stream `labels` (sorted pairs), of
    /// file `filename` when given, between `from` and `to` (inclusive). `None` when Loki
    /// cannot be asked (said once); retries while Loki is unreachable, up to [`PATIENCE`] or
    /// `stop`.
    pub async fn held(
        &mut self,
        tenant: &str,
        labels: &[(String, String)],
        filename: Option<&str>,
        from: i64,
        to: i64,
        stop: &watch::Receiver<bool>,
    ) -> Option<HashSet<(i64, String)>> {
        let mut query = selector(labels);
        if let Some(filename) = filename {
            query.push_str(&format!(" | filename={}", quoted(filename)));
        }
        let client = match self.client.for_tenant(tenant) {
            Ok(client) => client,
            Err(e) => return self.give_up(format!("tenant `{tenant}`: {e}")),
        };
        let mut found = HashSet::new();
        let mut start = from;
        loop {
            let mut url = self.url.clone();
            url.query_pairs_mut()
                .append_pair("query", &query)
                .append_pair("start", &start.to_string())
                .append_pair("end", &to.saturating_add(1).to_string())
                .append_pair("limit", &PAGE.to_string())
                .append_pair("direction", "forward");
            let page = self.page(&client, url, labels, stop).await?;
            let full = page.len() >= PAGE;
            let last = page.iter().map(|(ts, _)| *ts).max();
            found.extend(page);
            match last {
                // Entries at `last` may go on in the next page: it starts there again.
                Some(last) if full && last > start => start = last,
                _ => return Some(found),
            }
        }
    }

    /// One page, retried while Loki is unreachable.
    async fn page(
        &mut self,
        client: &PushClient,
        url: Url,
        labels: &[(String, String)],
        stop: &watch::Receiver<bool>,
    ) -> Option<Vec<(i64, String)>> {
        if self.unusable.is_some() {
            return None;
        }
        let backoff = client.backoff();
        let mut retry = 0;
        let mut stop = stop.clone();
        tokio::time::sleep_until(self.settled_at.into()).await;
        loop {
            const CATEGORIZE: (&str, &str) =
                ("X-Loki-Response-Encoding-Flags", "categorize-labels");
            let failure = match client.get(url.clone(), &[CATEGORIZE], MAX_ANSWER).await {
                Ok((200, body)) => {
                    self.unreachable_since = None;
                    return match parse_page(&body, labels) {
                        Ok(page) => Some(page),
                        Err(e) => self.give_up(format!("Loki's answer could not be read: {e}")),
                    };
                }
                Ok((status @ (401 | 403), _)) => {
                    return self.give_up(format!(
                        "the query API answered {status}: the credentials may push but not read (give them read access; Grafana Cloud: a token with logs:read)"
                    ));
                }
                Ok((404, _)) => {
                    return self.give_up(format!(
                        "no query API at {} (404): set loki.query_url",
                        self.url
                    ));
                }
                Ok((status, body)) if status == 429 || status >= 500 => {
                    format!("{status}: {}", String::from_utf8_lossy(&body).trim())
                }
                Ok((status, body)) => {
                    return self.give_up(format!(
                        "the query API answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    ));
                }
                Err(f) if f.kind == FailureKind::Transport && f.status.is_some() => {
                    return self.give_up(f.message);
                }
                Err(f) => f.message,
            };
            let since = *self.unreachable_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= PATIENCE {
                return self.give_up(format!(
                    "Loki's query API was unreachable for {} s ({failure})",
                    PATIENCE.as_secs()
                ));
            }
            if retry == 0 {
                tracing::warn!(url = %self.url, error = %failure, "cannot look up in Loki which lines it holds; retrying before sending them again");
            }
            let wait = backoff.delay(retry, fastrand::f64());
            retry = retry.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => {
                    return self.give_up("shutting down".into());
                }
            }
        }
    }

    /// Loki cannot be asked: says why once; the pending lines are sent again, counted.
    fn give_up<T>(&mut self, why: String) -> Option<T> {
        if self.unusable.is_none() {
            tracing::warn!(
                reason = %why,
                "lines that may be in Loki already are sent again without a check (counted in tailrace_resent_entries_total); Loki may store them twice"
            );
            self.unusable = Some(why);
        }
        None
    }
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
    /// needed); retries while Loki is unreachable, up to [`PATIENCE`] or `stop`.
    pub async fn stored(
        &mut self,
        tenant: &str,
        filename: &str,
        candidates: &[Candidate<'_>],
        stop: &watch::Receiver<bool>,
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

/// `{name="value", ...}`: the stream's exact label set (Loki may add `service_name`).
fn selector(labels: &[(String, String)]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", quoted(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// A LogQL string literal (Go's quoting rules).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The entries of a `query_range` answer (with `categorize-labels`) whose stream is exactly
/// `labels`: a selector also matches streams with more labels. Loki adds `service_name`
/// itself when the stream has none.
fn parse_page(body: &[u8], labels: &[(String, String)]) -> Result<Vec<(i64, String)>, String> {
    let answer: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let result = answer
        .pointer("/data/result")
        .and_then(|r| r.as_array())
        .ok_or("no data.result")?;
    let ours = |stream: &serde_json::Map<String, serde_json::Value>| {
        let extra = stream
            .iter()
            .filter(|(k, _)| !labels.iter().any(|(name, _)| name == *k))
            .all(|(k, _)| k == "service_name");
        extra
            && labels
                .iter()
                .all(|(k, v)| stream.get(k).and_then(|s| s.as_str()) == Some(v))
    };
    let mut entries = Vec::new();
    for stream in result {
        let Some(labels_of) = stream.get("stream").and_then(|s| s.as_object()) else {
            return Err("a stream without labels".into());
        };
        if !ours(labels_of) {
            continue;
        }
        let values = stream
            .get("values")
            .and_then(|v| v.as_array())
            .ok_or("a stream without values")?;
        for value in values {
            let ts = value
                .get(0)
                .and_then(|t| t.as_str())
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or("an entry without a timestamp")?;
            let line = value
                .get(1)
                .and_then(|l| l.as_str())
                .ok_or("an entry without a line")?;
            entries.push((ts, line.to_owned()));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::build_label_set;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        build_label_set(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).0
    }

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

    #[test]
    fn selectors_quote_as_logql_does() {
        let set = labels(&[("job", "a\"b\\c"), ("level", "info")]);
        assert_eq!(selector(set.pairs()), r#"{job="a\"b\\c", level="info"}"#);
        assert_eq!(quoted("x\ny\u{1}"), r#""x\ny\u0001""#);
    }

    #[test]
    fn only_the_exact_stream_is_taken_from_an_answer() {
        let body = br#"{"status":"success","data":{"resultType":"streams","encodingFlags":["categorize-labels"],"result":[
            {"stream":{"job":"t","level":"info","service_name":"t"},"values":[["5","other stream",{"structuredMetadata":{}}]]},
            {"stream":{"job":"t","service_name":"t"},"values":[["7","ours",{"structuredMetadata":{"filename":"/x"}}],["9","also ours"]]}
        ]}}"#;
        let page = parse_page(body, labels(&[("job", "t")]).pairs()).unwrap();
        assert_eq!(page, vec![(7, "ours".into()), (9, "also ours".into())]);
        assert!(parse_page(b"{}", labels(&[("job", "t")]).pairs()).is_err());
        assert!(parse_page(b"not json", labels(&[("job", "t")]).pairs()).is_err());
    }
}
