//! The shutdown signal: one [`CancellationToken`] that SIGTERM or SIGINT cancels.
//!
//! Every task of a worker watches a clone of the same token, so one signal reaches all of them;
//! what each does on cancellation (stop pulling, finish in-flight messages within the deadline)
//! is left to [`crate::worker`] and to the extractor.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Returns a token that is cancelled on the first SIGTERM or SIGINT (Ctrl-C).
///
/// Must be called inside a Tokio runtime. If the signal handlers cannot be installed, the
/// error is returned, since a worker that cannot be stopped cleanly should not start.
pub fn install() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let waiter = signal_waiter()?;
    let cancel = token.clone();
    tokio::spawn(async move {
        let signal = waiter.await;
        info!(signal, "Shutdown signal received");
        cancel.cancel();
    });
    Ok(token)
}

#[cfg(unix)]
fn signal_waiter() -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

#[cfg(not(unix))]
fn signal_waiter() -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    Ok(async move {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "Ctrl-C handler failed; shutting down");
        }
        "ctrl-c"
    })
}
