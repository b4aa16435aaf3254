//! The web console at `/console`: static files compiled into the binary (`crates/api/console/`),
//! served without a token. The page asks for the token and talks only to the public `/v1` API
//! with it, so it can do nothing the token cannot. No build step, no third-party code: the
//! browser loads these files as they are in the repository.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Scripts, styles, fetches and images from this origin only; no inline code, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's files: name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../console/index.html")),
    ("console.css", "text/css; charset=utf-8", include_str!("../console/console.css")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("../console/api.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_str!("../console/dom.js")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../console/app.js")),
    ("chat.js", "text/javascript; charset=utf-8", include_str!("../console/chat.js")),
    ("runs.js", "text/javascript; charset=utf-8", include_str!("../console/runs.js")),
];

/// `GET /console`: the page.
pub(crate) async fn index() -> Response {
    serve("index.html")
}

/// `GET /console/{name}`: its scripts and styles.
pub(crate) async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return crate::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such console file")
            .into_response();
    };
    let mut resp = (*body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
