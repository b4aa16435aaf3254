//! The OAuth 2.0 protected-resource metadata (RFC 9728) MCP clients look for when a request is
//! refused: `GET /.well-known/oauth-protected-resource/mcp` (the well-known path inserted before
//! the endpoint's path, as RFC 9728 forms it) and `GET /.well-known/oauth-protected-resource`
//! (where clients look when they only know the host) serve the same document, without a
//! token. It names the resource (this server's `/mcp`), the scopes its tools need and that the
//! token goes in the `Authorization` header.
//!
//! It lists no `authorization_servers`: agentyard has no OAuth authorization server. Tokens are
//! the API's (`POST /v1/tokens`), and an MCP client sends one as a static header.
//!
//! The server does not know the address clients reach it under (a proxy may be in front), so
//! URLs are built from the request: `X-Forwarded-Proto` (else `http`) and `X-Forwarded-Host`
//! (else `Host`).

use axum::Json;
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::auth::{READ, WRITE};

/// The path of the document; `/mcp` appended is the path-suffixed form.
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The MCP endpoint's path.
pub(crate) const ENDPOINT: &str = "/mcp";

/// `scheme://host` as the client reached this server.
fn origin(headers: &HeaderMap) -> String {
    let value = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next())
    };
    let scheme = match value("x-forwarded-proto").map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = value("x-forwarded-host")
        .or_else(|| value(header::HOST.as_str()))
        .map(str::trim)
        // A host name, an IPv4 or bracketed IPv6 address, a port: nothing that could end the
        // quoted string of a WWW-Authenticate header.
        .filter(|h| {
            !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Where the metadata document is, for the `WWW-Authenticate` challenge.
pub(crate) fn url(headers: &HeaderMap) -> String {
    format!("{}{WELL_KNOWN}{ENDPOINT}", origin(headers))
}

/// The metadata document.
pub(crate) async fn document(headers: HeaderMap) -> Json<Value> {
    Json(json!({
        "resource": format!("{}{ENDPOINT}", origin(&headers)),
        "resource_name": "agentyard built-in tools",
        "bearer_methods_supported": ["header"],
        "scopes_supported": [READ.as_str(), WRITE.as_str()],
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn urls_follow_the_host_and_a_proxy_s_forwarded_headers() {
        assert_eq!(
            url(&headers(&[("host", "127.0.0.1:8081")])),
            "http://127.0.0.1:8081/.well-known/oauth-protected-resource/mcp"
        );
        let proxied = headers(&[
            ("host", "10.0.0.5:8081"),
            ("x-forwarded-host", "tools.example.com"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(origin(&proxied), "https://tools.example.com");
        assert_eq!(origin(&headers(&[("host", "evil\" x=\"y")])), "http://localhost");
        assert_eq!(origin(&HeaderMap::new()), "http://localhost");
    }
}
