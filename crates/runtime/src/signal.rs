//! The shutdown signal: the first SIGINT/SIGTERM cancels the token (stop taking work, finish
//! in-flight work); a second one exits at once.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM; exits the process on the second.
pub async fn cancel_on_signal(token: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutting down (a second signal exits at once)");
    token.cancel();
    wait_for_signal().await;
    std::process::exit(130);
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = ctrl_c => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
