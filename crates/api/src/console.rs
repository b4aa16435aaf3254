//! The web console at `/console`: static files compiled into the binary (`crates/api/console/`),
//! served without a token. The page asks for the token and talks only to the public `/v1` API
//! with it, so it can do nothing the token cannot. No build step, no third-party code: the
//! browser loads these files as they are in the repository. With `AY_CONSOLE_DIR` set, the
//! same files are read from that directory on each request instead (edit, reload).

use std::borrow::Cow;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

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
    ("chart.js", "text/javascript; charset=utf-8", include_str!("../console/chart.js")),
    ("agents.js", "text/javascript; charset=utf-8", include_str!("../console/agents.js")),
    ("tools.js", "text/javascript; charset=utf-8", include_str!("../console/tools.js")),
    ("workflows.js", "text/javascript; charset=utf-8", include_str!("../console/workflows.js")),
    ("system.js", "text/javascript; charset=utf-8", include_str!("../console/system.js")),
    ("favicon.svg", "image/svg+xml", include_str!("../console/favicon.svg")),
];

/// `GET /console`: the page.
pub(crate) async fn index(State(state): State<AppState>) -> Response {
    serve(&state, "index.html").await
}

/// `GET /console/{name}`: its scripts and styles.
pub(crate) async fn file(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    serve(&state, &name).await
}

async fn serve(state: &AppState, name: &str) -> Response {
    // Only the listed names, from the directory too: a request cannot name another file.
    let Some((name, content_type, compiled)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return crate::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such console file")
            .into_response();
    };
    let body: Cow<'static, str> = match &state.services.settings.console_dir {
        None => Cow::Borrowed(compiled),
        Some(dir) => match tokio::fs::read_to_string(dir.join(name)).await {
            Ok(text) => Cow::Owned(text),
            Err(e) => {
                let message = format!("cannot read {name} from AY_CONSOLE_DIR: {e}");
                return crate::ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
                    .into_response();
            }
        },
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
