//! Pushing one body until Loki has taken it, or until going on is of no use.
//!
//! **In:** an [`EncodedBody`], the [`PushClient`] that sends it, its [`Backoff`] (from the
//! `loki.backoff` section of the configuration) and the shutdown signal. **Out:** a
//! [`FinalOutcome`]: how the push ended, with its counts of attempts for metrics.
//!
//! [`PushClient::push_with_retry`] retries retryable outcomes with exponential backoff and full
//! jitter ([`Backoff`]) until Loki takes the body, answers a final `400`/`413`, `max_retries`
//! runs out, or shutdown is requested. The files being tailed are the buffer: nothing is lost by
//! waiting, so the default is to retry forever. It logs the first failure clearly, later ones
//! quietly, and the outcome once; the caller advances file positions only when
//! [`FinalOutcome::delivered`] says so.

use tokio_util::sync::CancellationToken;

use crate::sink::loki::answer::{Failure, FinalOutcome, FinalResult, PushOutcome, Rejection};
use crate::sink::loki::client::PushClient;
use crate::sink::loki::encode::EncodedBody;

/// Warn again about an ongoing failure at most once per this many attempts.
const WARN_EVERY_ATTEMPTS: u32 = 10;

impl PushClient {
    /// Says once, at `warn`, what a `400` refused for good (one line per reason).
    pub fn log_rejections(&self, rejections: &[Rejection]) {
        for r in rejections {
            tracing::warn!(
                url = %self.url(),
                reason = r.reason.as_str(),
                count = r.count,
                "Loki refused {} entries for good ({}); the rest of the batch was stored: {}",
                r.count,
                r.reason,
                r.message
            );
        }
    }

    /// Pushes `body` until Loki takes it (or answers a final `400`/`413`), retrying retryable
    /// failures with [`Backoff`], until `max_retries` runs out or `shutdown` is cancelled (the
    /// shutdown's grace period is over).
    ///
    /// The first attempt is always made and runs to its end (bounded by the timeout), so a last
    /// flush at shutdown gets its chance; shutdown then cuts short the waits between attempts and
    /// any later attempt in flight. Either way nothing is lost: the lines stay in their files and
    /// positions only advance when [`FinalOutcome::delivered`] is true.
    ///
    /// Logs the first failure at `warn` (URL, error, "lines are kept and retried"), later ones at
    /// `debug` with a `warn` every 10 attempts, a recovery at `info`, and a `400`'s rejections
    /// once at `warn` (one line per reason), so the caller only needs to count them.
    pub async fn push_with_retry(
        &self,
        body: &EncodedBody,
        shutdown: &CancellationToken,
    ) -> FinalOutcome {
        let mut attempts: u32 = 0;
        let mut failed: u32 = 0;
        let mut last: Option<Failure> = None;
        loop {
            attempts += 1;
            let outcome = if attempts == 1 {
                Some(self.push(body).await)
            } else {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => None,
                    outcome = self.push(body) => Some(outcome),
                }
            };
            let done = |result, failed_attempts| FinalOutcome {
                result,
                attempts,
                failed_attempts,
            };
            let failure = match outcome {
                None => return self.shut_down(last, attempts, failed),
                Some(PushOutcome::Accepted) => {
                    if failed > 0 {
                        tracing::info!(
                            url = %self.url(),
                            attempts,
                            "push to Loki succeeded after {failed} failed attempts"
                        );
                    }
                    return done(FinalResult::Accepted, failed);
                }
                Some(PushOutcome::PartiallyRejected { rejections }) => {
                    self.log_rejections(&rejections);
                    return done(FinalResult::PartiallyRejected { rejections }, failed);
                }
                Some(PushOutcome::TooLarge) => {
                    tracing::warn!(
                        url = %self.url(),
                        bytes = body.body.len(),
                        entries = body.entries,
                        "Loki (or a proxy) answered 413: the push is too large; splitting the batch"
                    );
                    return done(FinalResult::TooLarge, failed);
                }
                Some(PushOutcome::Retryable(failure)) => failure,
            };
            failed += 1;
            if self.backoff().max_retries.is_some_and(|max| failed > max) {
                tracing::error!(
                    url = %self.url(),
                    attempts,
                    error = %failure,
                    "giving up on a push to Loki after {attempts} attempts (max_retries); its \
                     lines were not delivered"
                );
                return done(FinalResult::RetriesExhausted { last: failure }, failed);
            }
            let delay = self.backoff().delay(failed - 1, fastrand::f64());
            if failed == 1 {
                tracing::warn!(
                    url = %self.url(),
                    error = %failure,
                    "push to Loki failed; lines are kept and retried"
                );
            } else if failed % WARN_EVERY_ATTEMPTS == 0 {
                tracing::warn!(
                    url = %self.url(),
                    error = %failure,
                    attempts,
                    "push to Loki still failing after {attempts} attempts; lines are kept and \
                     retried"
                );
            } else {
                tracing::debug!(
                    url = %self.url(),
                    error = %failure,
                    attempts,
                    delay_ms = delay.as_millis() as u64,
                    "push to Loki failed again; retrying"
                );
            }
            last = Some(failure);
            let stop = tokio::select! {
                biased;
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(delay) => false,
            };
            if stop {
                return self.shut_down(last, attempts, failed);
            }
        }
    }

    fn shut_down(&self, last: Option<Failure>, attempts: u32, failed: u32) -> FinalOutcome {
        tracing::info!(
            url = %self.url(),
            attempts,
            "shutdown: stopped retrying a push to Loki; its lines are kept for the next start"
        );
        FinalOutcome {
            result: FinalResult::ShutDown { last },
            attempts,
            failed_attempts: failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::sink::loki::answer::{FailureKind, RejectReason};
    use crate::sink::loki::backoff::Backoff;
    use crate::sink::loki::testing::{
        ScriptedServer, TOO_FAR_BEHIND, body, client, fast, no_shutdown,
    };
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn partial_rejection_is_final_and_parsed() {
        let server = ScriptedServer::start(vec![(400, TOO_FAR_BEHIND), (204, "")]).await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        match &out.result {
            FinalResult::PartiallyRejected { rejections } => {
                assert_eq!(rejections.len(), 1);
                assert_eq!(rejections[0].reason, RejectReason::TooFarBehind);
                assert_eq!(rejections[0].count, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((out.attempts, out.failed_attempts), (1, 0));
        assert!(out.delivered());
        assert_eq!(server.seen().len(), 1, "a 400 is never retried");
    }

    #[tokio::test]
    async fn rate_limited_then_accepted() {
        let server = ScriptedServer::start(vec![
            (429, "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '7000' lines totaling '7026890' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"),
            (204, ""),
        ])
        .await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::Accepted);
        assert_eq!((out.attempts, out.failed_attempts), (2, 1));
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].body, seen[1].body, "the same body is sent again");
    }

    #[tokio::test]
    async fn server_errors_three_times_then_accepted() {
        let server = ScriptedServer::start(vec![
            (500, "internal"),
            (502, ""),
            (503, "ingester down"),
            (204, ""),
        ])
        .await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::Accepted);
        assert_eq!((out.attempts, out.failed_attempts), (4, 3));
    }

    #[tokio::test]
    async fn unauthorized_is_retried() {
        let server =
            ScriptedServer::start(vec![(401, "no org id\n"), (403, ""), (404, ""), (204, "")])
                .await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::Accepted);
        assert_eq!(out.attempts, 4);
    }

    #[tokio::test]
    async fn too_large_is_final() {
        let server =
            ScriptedServer::start(vec![(413, "request entity too large"), (204, "")]).await;
        let c = client(server.url(), fast(None));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.result, FinalResult::TooLarge);
        assert!(!out.delivered());
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn connection_refused_then_server_appears() {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let c = client(format!("http://{addr}/loki/api/v1/push"), fast(None));
        match c.push(&body()).await {
            PushOutcome::Retryable(f) => assert_eq!(f.kind, FailureKind::Connect, "{f}"),
            other => panic!("{other:?}"),
        }
        let (_tx, rx) = no_shutdown();
        let task = tokio::spawn(async move { c.push_with_retry(&body(), &rx).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let server = ScriptedServer::start_on(addr, vec![(204, "")]).await;
        let out = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.result, FinalResult::Accepted);
        assert!(out.attempts >= 2, "{out:?}");
        assert_eq!(out.failed_attempts, out.attempts - 1);
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn max_retries_is_honored() {
        let server = ScriptedServer::start(vec![(500, "boom")]).await;
        let c = client(server.url(), fast(Some(2)));
        let (_tx, rx) = no_shutdown();
        let out = c.push_with_retry(&body(), &rx).await;
        match &out.result {
            FinalResult::RetriesExhausted { last } => {
                assert_eq!(last.kind, FailureKind::Server);
                assert_eq!(last.status, Some(500));
                assert_eq!(last.message, "boom");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((out.attempts, out.failed_attempts), (3, 3));
        assert!(!out.delivered());
        assert_eq!(server.seen().len(), 3);

        let c = client(server.url(), fast(Some(0)));
        let out = c.push_with_retry(&body(), &rx).await;
        assert_eq!(out.attempts, 1);
    }

    #[tokio::test]
    async fn shutdown_interrupts_retrying() {
        let server = ScriptedServer::start(vec![(503, "unavailable")]).await;
        let slow = Backoff {
            min: Duration::from_secs(600),
            max: Duration::from_secs(600),
            max_retries: None,
        };
        let c = client(server.url(), slow);
        let (tx, rx) = no_shutdown();
        let c2 = c.clone();
        let task = tokio::spawn(async move { c2.push_with_retry(&body(), &rx).await });
        while server.seen().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.cancel();
        let out = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("shutdown must end the wait")
            .unwrap();
        match &out.result {
            FinalResult::ShutDown { last: Some(last) } => assert_eq!(last.status, Some(503)),
            other => panic!("{other:?}"),
        }
        assert_eq!((out.attempts, out.failed_attempts), (1, 1));
        assert!(!out.delivered());

        // Already shutting down: one attempt (a last flush), then no retry.
        let rx = CancellationToken::new();
        rx.cancel();
        let fast_client = client(server.url(), fast(None));
        let out = fast_client.push_with_retry(&body(), &rx).await;
        assert!(matches!(out.result, FinalResult::ShutDown { .. }));
        assert_eq!(out.attempts, 1);

        // The first attempt of a flush at shutdown still gets its answer.
        let ok = ScriptedServer::start(vec![(204, "")]).await;
        let rx = CancellationToken::new();
        rx.cancel();
        let out = client(ok.url(), fast(None))
            .push_with_retry(&body(), &rx)
            .await;
        assert_eq!(out.result, FinalResult::Accepted);
    }
}
