//! Delivering alerts to the webhooks of `config/alerts.yaml`: each open and resolve is POSTed
//! as `{"event": "alert.opened" | "alert.resolved", "alert": {...}}`, signed like incoming
//! hooks (`X-Agentyard-Timestamp`, `X-Agentyard-Signature: sha256=<hex HMAC-SHA256 of
//! "<timestamp>.<body>">`), with `X-Agentyard-Delivery` (the delivery's id: the same on every
//! retry, so a receiver can drop duplicates). A 2xx delivers; anything else is retried with
//! backoff, each attempt's outcome kept on the delivery's row.

use std::time::Duration;

use agentyard_services::alerting::delivery_backoff;
use agentyard_services::triggers::sign;
use agentyard_store::alerts::DueDelivery;
use tokio_util::sync::CancellationToken;

use crate::Ctx;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(ctx: Ctx, stop: CancellationToken) {
    if ctx.alerts.webhooks.is_empty() {
        return stop.cancelled().await;
    }
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client");
            return stop.cancelled().await;
        }
    };
    loop {
        match ctx.store.due_deliveries(20, TIMEOUT * 2).await {
            Ok(due) => {
                let sends = due.into_iter().map(|d| deliver(&ctx, &client, d));
                futures::future::join_all(sends).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the due alert deliveries"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn deliver(ctx: &Ctx, client: &reqwest::Client, d: DueDelivery) {
    let Some(secret) = ctx.alerts.secret_of(&d.url) else {
        // The webhook left the configuration: give up on it.
        let _ =
            ctx.store.record_delivery(d.id, false, None, Some("no longer configured"), None).await;
        return;
    };
    let body = serde_json::to_vec(&serde_json::json!({"event": d.event, "alert": d.alert}))
        .unwrap_or_default();
    let ts = chrono::Utc::now().timestamp();
    let sent = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-agentyard-event", &d.event)
        .header("x-agentyard-delivery", d.id.to_string())
        .header("x-agentyard-timestamp", ts.to_string())
        .header("x-agentyard-signature", sign(secret, ts, &body))
        .body(body)
        .send()
        .await;
    let (ok, status, error) = match sent {
        Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16()), None),
        Ok(r) => (false, Some(r.status().as_u16()), Some(format!("answered {}", r.status()))),
        Err(e) => (false, None, Some(format!("cannot reach it: {e}"))),
    };
    let retry = if ok { None } else { delivery_backoff(d.attempts + 1) };
    if !ok {
        tracing::warn!(delivery = d.id, url = d.url, attempt = d.attempts + 1,
            error = error.as_deref().unwrap_or(""), retry_in = ?retry, "alert delivery failed");
    }
    if let Err(e) = ctx.store.record_delivery(d.id, ok, status, error.as_deref(), retry).await {
        tracing::warn!(error = %e, "cannot record an alert delivery");
    }
}
