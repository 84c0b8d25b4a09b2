//! The one shutdown signal of a run.
//!
//! In: one request (SIGTERM, SIGINT, the end of a dry run's input, a test). Out: the same
//! signal, seen by each part of the run at its own moment, in order:
//! 1. [`Shutdown::requested`]: the reader stops reading; the batcher hands on what it
//!    holds; the lanes send what they have.
//! 2. [`Shutdown::expired`]: the sinks are through. Either `shutdown_timeout` passed and
//!    they give up what they are still sending (it stays unacknowledged, so the next start
//!    reads it again; nothing is lost), or the last delivery is done
//!    ([`Shutdown::give_up`] then has nothing left to give up). The positions writer and
//!    the HTTP server stop at this moment too, and the final positions are written.
//!
//! A sink, the writer and the server see only the second moment, as a plain
//! [`CancellationToken`], so they need nothing of the runtime.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Clones see the same signal.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    requested: CancellationToken,
    expired: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for shutdown; the grace period starts when the run sees it.
    pub fn request(&self) {
        self.requested.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.requested.is_cancelled()
    }

    /// Resolves once shutdown is asked for.
    pub async fn requested(&self) {
        self.requested.cancelled().await;
    }

    /// Waits for the request, then `grace` (or [`give_up`](Self::give_up)), then tells the
    /// sinks to give up.
    pub async fn expire_after(&self, grace: Duration) {
        self.requested().await;
        tokio::select! {
            () = tokio::time::sleep(grace) => {
                tracing::warn!("shutdown deadline reached: unsent lines stay in their files for the next start");
            }
            () = self.expired.cancelled() => {}
        }
        self.give_up();
    }

    /// The second moment, now: the sinks give up (when the last delivery is done, there is
    /// nothing left to give up), the writer and the server stop.
    pub fn give_up(&self) {
        self.requested.cancel();
        self.expired.cancel();
    }

    /// Resolves once the sinks must give up.
    pub async fn expired(&self) {
        self.expired.cancelled().await;
    }

    /// What a sink, the positions writer and the server are given: cancelled at the
    /// second moment.
    pub fn expiry(&self) -> CancellationToken {
        self.expired.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_sinks_give_up_a_grace_period_after_the_request() {
        let shutdown = Shutdown::new();
        let clock = tokio::spawn({
            let s = shutdown.clone();
            async move { s.expire_after(Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!shutdown.is_requested() && !shutdown.expiry().is_cancelled());
        shutdown.request();
        assert!(shutdown.is_requested());
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(
            !shutdown.expiry().is_cancelled(),
            "still in the grace period"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(shutdown.expiry().is_cancelled());
        clock.await.unwrap();
    }
}
