//! The `agentyard` command line.

use agentyard_e2e::TestApp;

#[tokio::test]
async fn admin_create_org_prints_json_with_a_working_token() {
    let app = TestApp::spawn().await;
    let out = app
        .command("admin", &["admin", "create-org", "--name", "acme", "--json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = v["token"].as_str().unwrap();
    assert!(v["org_id"].is_string());
    let resp = app
        .http
        .post(format!("{}/v1/threads", app.api_url))
        .bearer_auth(token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let out = app
        .command(
            "admin",
            &[
                "admin",
                "create-token",
                "--org",
                v["org_id"].as_str().unwrap(),
                "--scopes",
                "runs:read",
                "--json",
            ],
        )
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let resp = app
        .http
        .post(format!("{}/v1/threads", app.api_url))
        .bearer_auth(t["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "a read-only token cannot write");

    let out = app
        .command(
            "admin",
            &[
                "admin",
                "create-token",
                "--org",
                v["org_id"].as_str().unwrap(),
                "--scopes",
                "runs:everything",
            ],
        )
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs:everything"));
}

#[tokio::test]
async fn an_unknown_or_invalid_setting_stops_the_process_naming_the_variable() {
    let app = TestApp::spawn().await;
    for (var, value) in [
        ("AY_HTTP_ADRR", "127.0.0.1:1"),
        ("AY_MAX_INPUT_BYTES", "lots"),
        ("AY_EVENTS_MAX_AGE", "forever"),
    ] {
        let out = app.command("bad-config", &["api"]).env(var, value).output().await.unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
}

#[tokio::test]
async fn chat_streams_the_reply_to_the_terminal() {
    let mut app = TestApp::spawn().await;
    let _ = &mut app;
    let out = app
        .command(
            "chat",
            &["chat", "Hello from the CLI", "--url", &app.api_url, "--token", &app.token],
        )
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = agentyard_scripted_llm::default_answer(&[
        serde_json::json!({"role": "user", "content": "Hello from the CLI"}),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
}
