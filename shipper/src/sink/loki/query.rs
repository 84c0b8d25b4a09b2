//! Asking Loki which entries of a stream it holds already.
//!
//! In: a stream's exact labels, a file name, a time range; the push client's credentials
//! and TLS. Out: the (timestamp, line) pairs Loki's `query_range` returns for exactly that
//! stream, every page of them; or `None`, said once, when Loki cannot be asked (401, 403,
//! 404, an unreadable answer, unreachable for [`PATIENCE`], or shutting down).
//!
//! Used after a crash, for the lines that may have been sent (`runtime/recovery.rs`), and
//! before a batch whose streams Loki refused one by one is sent again (`policy.rs`): a
//! real Loki stores a replayed entry again, so what it holds is left out.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio_util::sync::CancellationToken;

use super::answer::FailureKind;
use super::client::PushClient;

/// How long Loki may stay unreachable (connection refused, timeouts, 5xx, 429) before the
/// lines in question are sent unchecked. Within it the lookups are retried with the push
/// backoff, as a push would be: a shipper restarted during an outage waits for Loki to
/// come back rather than store its last batches twice.
pub const PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Loki's default `max_entries_limit_per_query`.
const PAGE: usize = 5000;

/// The largest answer read (a page of 5,000 lines of 256 KiB would be more, but lines that
/// long are rare; a bigger answer fails the lookup, which then resends, counted).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Asks Loki's `query_range` which entries of a stream it holds.
pub struct LokiLookup {
    client: PushClient,
    url: Url,
    /// Why Loki cannot be asked, once that is known: said once, then what was to be looked
    /// up is sent again (counted).
    unusable: Option<String>,
    /// When Loki was first found unreachable in a row of failed lookups.
    unreachable_since: Option<Instant>,
    /// Before this, no look-up is made (the `settle` given to [`LokiLookup::new`]).
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
        stop: &CancellationToken,
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
        stop: &CancellationToken,
    ) -> Option<Vec<(i64, String)>> {
        if self.unusable.is_some() {
            return None;
        }
        let backoff = client.backoff();
        let mut retry = 0;
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
                () = stop.cancelled() => {
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
    use crate::model::LabelSet;
    use crate::model::labels::build_label_set;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        build_label_set(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).0
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
