//! Reading Loki's answer to a push.
//!
//! **In:** the status and body of the answer to one push attempt, from Loki or from a proxy in
//! front of it. **Out:** a [`PushOutcome`] that says what became of the body and what to do next
//! (nothing, split the batch, push the same body again); for a `400`, the entries Loki refused,
//! as [`Rejection`]s counted by [`RejectReason`]. How a push ended after all its attempts is a
//! [`FinalOutcome`].
//!
//! [`classify_response`] follows what a real Loki 3 answers:
//! - `2xx`: [`PushOutcome::Accepted`].
//! - `400`: [`PushOutcome::PartiallyRejected`]. Loki stored everything it did not name in the
//!   body; the entries it named are refused for good, so retrying can never help. The body is
//!   parsed into [`Rejection`]s, counted by [`RejectReason`]. (A `400` whose body is an HTML
//!   page comes from a proxy, not from Loki, and is retried instead.)
//! - `413`: [`PushOutcome::TooLarge`] (a proxy's limit): the caller splits the batch in halves.
//! - `429`, `5xx`, timeouts, connection errors, and every other status (`401`, `403`, `404`, other
//!   `4xx`, `3xx`, which are not followed): [`PushOutcome::Retryable`]. A wrong password or URL
//!   gets fixed by someone, and the lines must still be there then.

use std::fmt;

use reqwest::StatusCode;

/// Why Loki refused some entries of a push (the `400` texts of Loki 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Older than `reject_old_samples_max_age` (7 days by default).
    TooOld,
    /// More than `creation_grace_period` (10 minutes) in the future.
    TooNew,
    /// More than 1 h older than the newest entry of its stream (or "out of order").
    TooFarBehind,
    /// Over `max_line_size` (256 KiB by default).
    LineTooLong,
    /// The stream's labels: unparsable, too many, name or value too long, missing.
    Labels,
    /// Anything else (including a body Loki could not parse at all).
    Other,
}

impl RejectReason {
    /// A short stable name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooOld => "too_old",
            RejectReason::TooNew => "too_new",
            RejectReason::TooFarBehind => "too_far_behind",
            RejectReason::LineTooLong => "line_too_long",
            RejectReason::Labels => "labels",
            RejectReason::Other => "other",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Entries Loki refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// Loki's text for the first problem of this reason (shortened if very long).
    pub message: String,
    /// How many entries Loki reported refusing for this reason: its `total ignored: N` when
    /// present, else one per reported problem (`N errors like:` counts N). A label problem drops
    /// every entry of its stream but is reported once per stream.
    pub count: usize,
}

/// What kind of retryable failure an attempt met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// `429`: over the ingestion rate or stream limits; the whole request was refused.
    RateLimited,
    /// `5xx`.
    Server,
    /// `401` or `403`: credentials or tenant refused.
    Unauthorized,
    /// `404`: wrong URL path.
    NotFound,
    /// Any other status that is neither success nor final (`3xx`, other `4xx`).
    UnexpectedStatus,
    /// No answer within the timeout.
    Timeout,
    /// Could not connect (refused, DNS, TLS handshake).
    Connect,
    /// Another transport error (connection reset while sending, ...).
    Transport,
}

/// A retryable failure of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its kind.
    pub kind: FailureKind,
    /// The HTTP status, if Loki (or a proxy) answered.
    pub status: Option<u16>,
    /// The answer's body (shortened) or the transport error.
    pub message: String,
}

impl Failure {
    /// What to check, for the kinds a person has to fix.
    pub fn hint(&self) -> Option<&'static str> {
        match self.kind {
            FailureKind::Unauthorized => {
                Some("check the basic_auth password file or the bearer token file, and the tenant")
            }
            FailureKind::NotFound => Some("check the URL (it ends in /loki/api/v1/push)"),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// The classified answer to one push attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Loki stored the whole body.
    Accepted,
    /// `400`: Loki stored everything but the entries these name. Final: never retry.
    PartiallyRejected {
        /// The refused entries, one per reason (never empty).
        rejections: Vec<Rejection>,
    },
    /// `413`: the body is too large; split the batch in halves and push each.
    TooLarge,
    /// Nothing was stored (or it is unknown); push the same body again later.
    Retryable(Failure),
}

/// How [`PushClient::push_with_retry`](super::client::PushClient::push_with_retry) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    /// Loki stored the whole body.
    Accepted,
    /// Loki stored all but these; the refused entries are lost for good (and were logged).
    PartiallyRejected {
        /// The refused entries, one per reason.
        rejections: Vec<Rejection>,
    },
    /// `413`: split the batch and push the halves.
    TooLarge,
    /// `max_retries` ran out; the lines were not delivered.
    RetriesExhausted {
        /// The last failure.
        last: Failure,
    },
    /// Shutdown was requested before Loki took the body; the lines were not delivered.
    ShutDown {
        /// The last failure, if an attempt was made and failed.
        last: Option<Failure>,
    },
}

/// The result of [`PushClient::push_with_retry`](super::client::PushClient::push_with_retry),
/// with counts for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalOutcome {
    /// How it ended.
    pub result: FinalResult,
    /// HTTP attempts made (including the last; an attempt cut short by shutdown is counted).
    pub attempts: u32,
    /// Attempts that met a retryable failure.
    pub failed_attempts: u32,
}

impl FinalOutcome {
    /// Whether Loki has taken all it ever will of this body, so the file positions of its lines
    /// may advance: `Accepted` or `PartiallyRejected`. Never true for `TooLarge`,
    /// `RetriesExhausted` or `ShutDown`.
    pub fn delivered(&self) -> bool {
        matches!(
            self.result,
            FinalResult::Accepted | FinalResult::PartiallyRejected { .. }
        )
    }
}

/// Keep at most this much of a message.
pub(super) const MAX_MESSAGE_BYTES: usize = 1024;

/// Shortens `text` to about [`MAX_MESSAGE_BYTES`], on a character boundary.
fn shorten(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Classifies Loki's answer (status and body) to one push.
pub fn classify_response(status: StatusCode, body: &[u8]) -> PushOutcome {
    if status.is_success() {
        return PushOutcome::Accepted;
    }
    let text = String::from_utf8_lossy(body);
    // Loki answers in plain text; an HTML page comes from a proxy in front of it, which did not
    // pass the push on: nothing was stored, so a 400 from it is retried like other statuses.
    let from_proxy = text.trim_start().starts_with('<');
    match status.as_u16() {
        400 if !from_proxy => PushOutcome::PartiallyRejected {
            rejections: parse_rejections(&text),
        },
        413 => PushOutcome::TooLarge,
        code => {
            let kind = match code {
                429 => FailureKind::RateLimited,
                500..=599 => FailureKind::Server,
                401 | 403 => FailureKind::Unauthorized,
                404 => FailureKind::NotFound,
                _ => FailureKind::UnexpectedStatus,
            };
            let message = if text.trim().is_empty() {
                status.canonical_reason().unwrap_or("no body").to_string()
            } else {
                shorten(&text)
            };
            PushOutcome::Retryable(Failure {
                kind,
                status: Some(code),
                message,
            })
        }
    }
}

/// Classifies one problem text of a `400` body. The stream's label set (between the first `{`
/// and the last `}`) is ignored, so label values cannot mislead it.
fn reject_reason(message: &str) -> RejectReason {
    let outside = match (message.find('{'), message.rfind('}')) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{}", &message[..open], &message[close + 1..])
        }
        _ => message.to_string(),
    }
    .to_ascii_lowercase();
    if outside.contains("too far behind") || outside.contains("out of order") {
        RejectReason::TooFarBehind
    } else if outside.contains("too old") {
        RejectReason::TooOld
    } else if outside.contains("too new") {
        RejectReason::TooNew
    } else if outside.contains("max entry size") || outside.contains("line too long") {
        RejectReason::LineTooLong
    } else if outside.contains("label") {
        RejectReason::Labels
    } else {
        RejectReason::Other
    }
}

/// `"<N> errors like: rest"` → `(N, rest)`.
fn strip_count(text: &str) -> Option<(usize, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = text[digits..].strip_prefix(" errors like: ")?;
    Some((text[..digits].parse().ok()?, rest))
}

/// Splits one line of a `400` body into its problems with their counts. The distributor joins
/// its validation errors as `N errors like: <msg>; M errors like: <msg>` (a lone error has no
/// prefix and is never split); only a `; ` followed by such a prefix separates two problems.
fn split_grouped(line: &str) -> Vec<(usize, &str)> {
    // A line that does not start with a count is a lone error: never split it.
    let Some((mut count, mut rest)) = strip_count(line) else {
        return vec![(1, line)];
    };
    let mut out = Vec::new();
    'outer: loop {
        let mut from = 0;
        while let Some(pos) = rest[from..].find("; ") {
            let at = from + pos;
            if let Some((next_count, next)) = strip_count(&rest[at + 2..]) {
                out.push((count, &rest[..at]));
                count = next_count;
                rest = next;
                continue 'outer;
            }
            from = at + 2;
        }
        out.push((count, rest));
        return out;
    }
}

/// `user 'fake', total ignored: 3 out of 5 for stream: {...}` → 3.
fn total_ignored(line: &str) -> Option<usize> {
    let at = line.find("total ignored: ")?;
    let rest = &line[at + "total ignored: ".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

fn add(out: &mut Vec<Rejection>, reason: RejectReason, message: &str, count: usize) {
    match out.iter_mut().find(|r| r.reason == reason) {
        Some(existing) => existing.count += count,
        None => out.push(Rejection {
            reason,
            message: shorten(message),
            count,
        }),
    }
}

/// Parses the body of a `400` into rejections, one per reason, in order of first appearance.
///
/// Handles both shapes Loki 3 produces: the distributor's validation errors (one problem per
/// line, or grouped as `N errors like: ...; M errors like: ...`), and the ingester's per-stream
/// report (`entry with timestamp ... ignored, reason: '...',` lines, at most 10 of them, closed
/// by `user '...', total ignored: N out of M for stream: {...}`, N being the true count).
/// A body that says nothing recognisable gives one [`RejectReason::Other`].
pub fn parse_rejections(body: &str) -> Vec<Rejection> {
    let mut out = Vec::new();
    // Ingester lines waiting for their "total ignored" line: (reason, first message, listed).
    let mut pending: Vec<(RejectReason, &str, usize)> = Vec::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(total) = total_ignored(line) {
            if pending.is_empty() {
                add(&mut out, reject_reason(line), line, total);
            } else {
                // The list is cut at the first entries; the unlisted rest is counted with the
                // reason listed last.
                let listed: usize = pending.iter().map(|p| p.2).sum();
                let last = pending.len() - 1;
                for (i, (reason, message, n)) in pending.drain(..).enumerate() {
                    let extra = if i == last {
                        total.saturating_sub(listed)
                    } else {
                        0
                    };
                    add(&mut out, reason, message, n + extra);
                }
            }
            continue;
        }
        for (count, problem) in split_grouped(line) {
            let reason = reject_reason(problem);
            if problem.starts_with("entry with timestamp") {
                match pending.iter_mut().find(|p| p.0 == reason) {
                    Some(p) => p.2 += count,
                    None => pending.push((reason, problem, count)),
                }
            } else {
                add(&mut out, reason, problem, count);
            }
        }
    }
    for (reason, message, n) in pending {
        add(&mut out, reason, message, n);
    }
    if out.is_empty() {
        add(
            &mut out,
            RejectReason::Other,
            "HTTP 400 Bad Request with an empty body",
            1,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::loki::testing::{
        MAX_ENTRY_SIZE, PARSE_ERROR, TOO_FAR_BEHIND, TOO_MANY_LABELS, TOO_NEW, TOO_OLD, one,
    };

    #[test]
    fn single_problem_bodies_from_the_doc() {
        let far = parse_rejections(TOO_FAR_BEHIND);
        assert_eq!(far.len(), 1);
        assert_eq!(far[0].reason, RejectReason::TooFarBehind);
        assert_eq!(far[0].count, 1);
        assert!(far[0].message.contains("entry too far behind"));

        for (body, reason) in [
            (TOO_OLD, RejectReason::TooOld),
            (TOO_NEW, RejectReason::TooNew),
            (MAX_ENTRY_SIZE, RejectReason::LineTooLong),
            (TOO_MANY_LABELS, RejectReason::Labels),
            (PARSE_ERROR, RejectReason::Labels),
        ] {
            assert_eq!(parse_rejections(body), one(reason, 1, body));
        }
        for long in [
            "stream '{job=\"x\"}' has label name too long: 'aaaa'",
            "stream '{job=\"x\"}' has label value too long: 'bbbb'",
        ] {
            assert_eq!(parse_rejections(long)[0].reason, RejectReason::Labels);
        }
    }

    #[test]
    fn ingester_report_counts_the_total_not_the_listed_lines() {
        let mut body = String::new();
        for i in 0..10 {
            body.push_str(&format!(
                "entry with timestamp 2026-11-22 01:49:0{i}.000000000 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-11-22T01:49:0{i}Z, oldest acceptable timestamp is: 2026-11-22T02:49:03Z',\n"
            ));
        }
        body.push_str("user 'fake', total ignored: 37 out of 50 for stream: {job=\"probe\"}");
        let r = parse_rejections(&body);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, RejectReason::TooFarBehind);
        assert_eq!(r[0].count, 37);
        assert!(
            r[0].message
                .starts_with("entry with timestamp 2026-11-22 01:49:00")
        );
    }

    #[test]
    fn several_problems_in_one_body() {
        // One per line, and with an ingester report among them.
        let body =
            format!("{TOO_OLD}{TOO_NEW}{TOO_NEW}{MAX_ENTRY_SIZE}{TOO_FAR_BEHIND}{PARSE_ERROR}");
        let r = parse_rejections(&body);
        let got: Vec<(RejectReason, usize)> = r.iter().map(|r| (r.reason, r.count)).collect();
        assert_eq!(
            got,
            vec![
                (RejectReason::TooOld, 1),
                (RejectReason::TooNew, 2),
                (RejectReason::LineTooLong, 1),
                (RejectReason::TooFarBehind, 1),
                (RejectReason::Labels, 1),
            ]
        );
        // The distributor's grouped form: "N errors like: ...; M errors like: ...".
        let grouped = format!(
            "3 errors like: {}; 1 errors like: {}; 2 errors like: {}",
            TOO_NEW.trim(),
            MAX_ENTRY_SIZE.trim(),
            TOO_OLD.trim()
        );
        let r = parse_rejections(&grouped);
        let got: Vec<(RejectReason, usize)> = r.iter().map(|r| (r.reason, r.count)).collect();
        assert_eq!(
            got,
            vec![
                (RejectReason::TooNew, 3),
                (RejectReason::LineTooLong, 1),
                (RejectReason::TooOld, 2),
            ]
        );
        assert_eq!(r[0].message, TOO_NEW.trim());
    }

    #[test]
    fn label_values_do_not_mislead_the_classifier() {
        let body = "entry for stream '{msg=\"too old; 2 errors like: label\"}' has timestamp too new: 2026-11-22T03:49:03Z";
        let r = parse_rejections(body);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, RejectReason::TooNew);
        assert_eq!(r[0].count, 1);
    }

    #[test]
    fn unknown_and_empty_400_bodies() {
        assert_eq!(
            parse_rejections("snappy: corrupt input\n"),
            one(RejectReason::Other, 1, "snappy: corrupt input")
        );
        let empty = parse_rejections("");
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].reason, RejectReason::Other);
    }

    #[test]
    fn classification_of_statuses() {
        let code = |c: u16| StatusCode::from_u16(c).unwrap();
        assert_eq!(classify_response(code(204), b""), PushOutcome::Accepted);
        assert_eq!(classify_response(code(200), b"ok"), PushOutcome::Accepted);
        assert_eq!(classify_response(code(413), b""), PushOutcome::TooLarge);
        assert!(matches!(
            classify_response(code(400), TOO_OLD.as_bytes()),
            PushOutcome::PartiallyRejected { .. }
        ));
        for (c, kind) in [
            (429, FailureKind::RateLimited),
            (500, FailureKind::Server),
            (502, FailureKind::Server),
            (503, FailureKind::Server),
            (401, FailureKind::Unauthorized),
            (403, FailureKind::Unauthorized),
            (404, FailureKind::NotFound),
            (408, FailureKind::UnexpectedStatus),
            (302, FailureKind::UnexpectedStatus),
        ] {
            match classify_response(code(c), b"Ingestion rate limit exceeded\n") {
                PushOutcome::Retryable(f) => {
                    assert_eq!((f.kind, f.status), (kind, Some(c)));
                    assert_eq!(f.message, "Ingestion rate limit exceeded");
                }
                other => panic!("{c}: {other:?}"),
            }
        }
        let html = b"<html><head><title>400 Bad Request</title></head></html>";
        match classify_response(code(400), html) {
            PushOutcome::Retryable(f) => {
                assert_eq!(
                    (f.kind, f.status),
                    (FailureKind::UnexpectedStatus, Some(400))
                )
            }
            other => panic!("{other:?}"),
        }
        match classify_response(code(503), b"") {
            PushOutcome::Retryable(f) => assert_eq!(f.message, "Service Unavailable"),
            other => panic!("{other:?}"),
        }
    }
}
