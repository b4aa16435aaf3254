//! Slow, idle and abusive clients: header, body and idle timeouts, the connection cap, the
//! failed-authentication limit, the case of the auth scheme, and numbers out of range in
//! query strings.

use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions, sse};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A liveness guard for reads that must end by themselves (never a measured limit).
const GUARD: Duration = Duration::from_secs(60);

fn with_env(pairs: &[(&str, &str)]) -> TestOptions {
    TestOptions {
        env: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..Default::default()
    }
}

fn addr(app: &TestApp) -> String {
    app.api_url.trim_start_matches("http://").to_owned()
}

/// Everything the server sends until it closes the connection.
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .expect("the server never closed the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// One response on a kept-alive connection (a body with Content-Length).
async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a whole response: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
        }
    };
    tokio::time::timeout(GUARD, read).await.expect("no response")
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mcp_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mcp = format!("127.0.0.1:{mcp_port}");
    let app = TestApp::spawn_with(TestOptions {
        tools: true,
        ..with_env(&[("AY_HTTP_HEADER_TIMEOUT", "1s"), ("AY_MCP_ADDR", &mcp)])
    })
    .await;
    for target in [addr(&app), mcp] {
        let mut slow = TcpStream::connect(&target).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        // And one that sends nothing at all.
        let mut silent = TcpStream::connect(&target).await.unwrap();
        assert_eq!(read_until_closed(&mut slow).await, "", "{target}: closed without an answer");
        assert_eq!(read_until_closed(&mut silent).await, "", "{target}");
    }
    // A whole request is still answered.
    let mut ok = TcpStream::connect(addr(&app)).await.unwrap();
    ok.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut ok).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408_and_is_disconnected() {
    let app = TestApp::spawn_with(with_env(&[("AY_HTTP_BODY_TIMEOUT", "1s")])).await;
    let s = TcpStream::connect(addr(&app)).await.unwrap();
    let (mut rx, mut tx) = s.into_split();
    let head = format!(
        "POST /v1/threads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        app.token
    );
    tx.write_all(head.as_bytes()).await.unwrap();
    // A byte every 100 ms: never idle, never done.
    let trickle = tokio::spawn(async move {
        while tx.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, rx.read_to_end(&mut out))
        .await
        .expect("the server never closed the connection")
        .ok();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"request_timeout""#), "{text}");
    trickle.abort();
    assert_eq!(app.count("SELECT count(*) FROM threads").await, 0);
}

#[tokio::test]
async fn streams_and_long_polls_outlive_the_idle_and_header_timeouts() {
    // No workers: a run stays queued, so a long-poll waits its whole time.
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..with_env(&[("AY_HTTP_IDLE_TIMEOUT", "1s"), ("AY_HTTP_HEADER_TIMEOUT", "1s")])
    })
    .await;
    let stream = app.req(reqwest::Method::GET, "/v1/events").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // An idle kept-alive connection opened after the stream is closed by the idle timeout...
    let mut idle = TcpStream::connect(addr(&app)).await.unwrap();
    idle.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    assert_eq!(read_until_closed(&mut idle).await, "");
    // ... while the stream, silent all that time, still delivers.
    let run = app.start_run("hello").await;
    let id = run["id"].as_str().unwrap().to_owned();
    let events = sse::read(stream, GUARD, |e| e.event == "run.queued").await;
    let data: serde_json::Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(data["run_id"], id.as_str());
    // A long-poll longer than both timeouts is answered in full.
    let (s, polled) = app.get(&format!("/v1/runs/{id}?wait=3")).await;
    assert_eq!((s, polled["status"].as_str()), (200, Some("queued")), "{polled}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(with_env(&[("AY_HTTP_MAX_CONNECTIONS", "3")])).await;
    // The harness's client keeps one connection; two more fill the cap.
    let (s, _) = app.get("/healthz").await;
    assert_eq!(s, 200);
    let mut a = TcpStream::connect(addr(&app)).await.unwrap();
    let mut b = TcpStream::connect(addr(&app)).await.unwrap();
    for c in [&mut a, &mut b] {
        c.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(c).await.starts_with("HTTP/1.1 200"));
    }
    // The kernel completes the handshake (backlog), but the server does not take it.
    let mut waiting = TcpStream::connect(addr(&app)).await.unwrap();
    waiting.write_all(HEALTHZ).await.unwrap();
    // The connections it holds are served meanwhile...
    a.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut a).await.starts_with("HTTP/1.1 200"));
    // ... and the one beyond the cap got nothing.
    let mut buf = [0u8; 64];
    assert_eq!(
        waiting.try_read(&mut buf).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "a connection beyond the cap was answered"
    );
    drop(a);
    assert!(read_response(&mut waiting).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address_but_a_valid_token_still_works() {
    let app = TestApp::spawn_with(with_env(&[
        ("AY_AUTH_FAILURE_RATE", "0.1"),
        ("AY_AUTH_FAILURE_BURST", "5"),
    ]))
    .await;
    let get = |token: String| {
        let app = &app;
        async move {
            let r = app.http.get(format!("{}/v1/threads", app.api_url)).bearer_auth(token);
            let r = r.send().await.unwrap();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (status, body["error"]["code"].as_str().unwrap_or("").to_owned(), retry)
        }
    };
    assert_eq!(get(app.token.clone()).await.0, 200);
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(get("ay_wrong".into()).await);
    }
    let statuses: Vec<u16> = codes.iter().map(|c| c.0).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429], "{codes:?}");
    let (_, code, retry) = &codes[5];
    assert_eq!(code, "rate_limited");
    assert!(retry.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| r >= 1));
    // Another bad token from the same address: refused without a lookup.
    assert_eq!(get("ay_another_wrong".into()).await.0, 429);
    // A token that authenticated is not held back by its address's failures.
    assert_eq!(get(app.token.clone()).await.0, 200);
}

#[tokio::test]
async fn the_mcp_server_limits_failed_api_token_lookups_per_address_too() {
    let app = TestApp::spawn_with(TestOptions {
        tools: true,
        ..with_env(&[("AY_AUTH_FAILURE_RATE", "0.1"), ("AY_AUTH_FAILURE_BURST", "5")])
    })
    .await;
    app.wait_tools().await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let post = |token: String| {
        let (app, list) = (&app, &list);
        async move {
            let r = app
                .http
                .post(app.mcp_url())
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(list)
                .send()
                .await
                .unwrap();
            let retry = r.headers().contains_key("retry-after");
            (r.status().as_u16(), retry)
        }
    };
    let valid = post(app.token.clone()).await.0;
    assert!(valid != 401 && valid != 429, "a valid API token is let in: {valid}");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(post("ay_wrong".into()).await);
    }
    let codes: Vec<u16> = statuses.iter().map(|s| s.0).collect();
    assert_eq!(codes, [401, 401, 401, 401, 401, 429, 429], "{statuses:?}");
    assert!(statuses[5].1, "429 says when to retry");
    // The token that authenticated is not held back by its address's failures.
    assert_eq!(post(app.token.clone()).await.0, valid);
}

#[tokio::test]
async fn the_auth_scheme_is_case_insensitive() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    let with = |header: String| {
        app.http.get(format!("{}/v1/threads", app.api_url)).header("authorization", header)
    };
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let r = with(format!("{scheme} {}", app.token)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = with(format!("Basic {}", app.token)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
}

#[tokio::test]
async fn numbers_out_of_range_in_queries_are_400_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let (_, thread) = app.post("/v1/threads", json!({})).await;
    let tid = thread["id"].as_str().unwrap().to_owned();
    let run = app.start_run("hello").await;
    let rid = run["id"].as_str().unwrap().to_owned();
    app.wait_terminal(&rid, Duration::from_secs(30)).await;
    let exec = "01a20028-1945-7532-a6c5-540668696e27";
    let huge = "99999999999999999999";
    let past = "9223372036854775808"; // i64::MAX + 1
    let mut cases: Vec<(String, &str)> = Vec::new();
    for v in [huge, past, "-1", "x", ""] {
        cases.push((format!("/v1/threads/{tid}/messages?after={v}"), "after"));
        cases.push((format!("/v1/runs/{rid}/events?after={v}"), "after"));
        cases.push((format!("/v1/events?after={v}"), "after"));
        cases.push((format!("/v1/workflows/executions/{exec}/events?after={v}"), "after"));
    }
    for v in ["61", "-1", "NaN", "inf", "1e400", huge] {
        cases.push((format!("/v1/runs/{rid}?wait={v}"), "wait"));
    }
    for (path, max) in [
        ("/v1/threads", 100),
        (format!("/v1/threads/{tid}/messages").as_str(), 100),
        ("/v1/runs", 100),
        ("/v1/workflows/executions", 100),
        ("/v1/tool-invocations", 500),
        ("/v1/tickets", 200),
        ("/v1/system/alerts", 500),
        ("/v1/audit-log", 500),
    ] {
        for v in ["0", &(max + 1).to_string(), "-5", huge, "1.5"] {
            cases.push((format!("{path}?limit={v}"), "limit"));
        }
    }
    for (path, name) in &cases {
        let (s, e) = app.get(path).await;
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")), "{path}: {e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(name), "{path}: {message}");
    }
    // The largest id is valid: nothing after it.
    let max = "9223372036854775807";
    let (s, page) = app.get(&format!("/v1/threads/{tid}/messages?after={max}")).await;
    assert_eq!((s, page["data"].as_array().map(Vec::len)), (200, Some(0)), "{page}");
    let resp = app.req(reqwest::Method::GET, &format!("/v1/runs/{rid}/events?after={max}"));
    let events = sse::read_all(resp.send().await.unwrap(), GUARD).await;
    assert!(events.is_empty(), "{events:?}");
    // A Last-Event-ID past it is refused like any bad one.
    let resp = app
        .req(reqwest::Method::GET, &format!("/v1/runs/{rid}/events"))
        .header("last-event-id", past)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}
