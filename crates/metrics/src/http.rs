//! The endpoint: `GET /metrics` on a router (the API's, the MCP server's) or on a listener of
//! its own (the workers'), and the middleware that counts HTTP requests by route template.
//!
//! `/metrics` has no authentication: it carries no tenant data (no ids, no content), only
//! counts. Operators should still not expose it publicly.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `router` with its requests counted and `GET /metrics` added (itself not counted); unchanged
/// when metrics are off.
pub fn instrument(router: Router) -> Router {
    if !crate::enabled() {
        return router;
    }
    router.layer(axum::middleware::from_fn(track)).route("/metrics", get(scrape))
}

/// `GET /metrics`.
pub async fn scrape() -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], crate::render().await).into_response()
}

/// Records one request: its route template (never the raw path, which holds ids), method and
/// status, and the time to the response head.
async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let seconds = started.elapsed().as_secs_f64();
    crate::metrics().http.with(&[route, method, resp.status().as_str()], |h| h.observe(seconds));
    resp
}

/// The method, from the standard set only (a client can send any token).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

/// Binds `addr` and serves `GET /metrics` there with `limits` until `shutdown` (for processes
/// without an HTTP server of their own); returns the bound address.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    limits: agentyard_runtime::http::HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(scrape));
    tokio::spawn(async move {
        let served = agentyard_runtime::http::serve(listener, app, limits, shutdown);
        if let Err(e) = served.await {
            tracing::warn!(error = %e, "the metrics listener failed");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_metrics_are_served() {
        let app = instrument(
            Router::new()
                .route("/v1/things/{id}", get(|| async { "ok" }))
                .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no") }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let get = |path: String| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            body
        };
        get("/v1/things/0190abcd".into()).await;
        get("/v1/things/0190ef01".into()).await;
        get("/nowhere/0190ef01".into()).await;
        let text = get("/metrics".into()).await;
        assert!(text.contains(CONTENT_TYPE), "{text}");
        let counted = "agentyard_http_requests_total{route=\"/v1/things/{id}\",method=\"GET\",status=\"200\"} 2";
        assert!(text.contains(counted), "{text}");
        assert!(
            text.contains(
                "agentyard_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("0190"), "a raw path leaked into a label: {text}");
        assert!(!text.contains("route=\"/metrics\""), "{text}");
    }
}
