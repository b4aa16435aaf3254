//! The `agentyard` command line.

use agentyard_e2e::TestApp;

async fn admin(app: &TestApp, args: &[&str]) -> std::process::Output {
    let args: Vec<&str> = std::iter::once("admin").chain(args.iter().copied()).collect();
    app.command("admin", &args).output().await.unwrap()
}

async fn create_thread_status(app: &TestApp, token: &str) -> u16 {
    let url = format!("{}/v1/threads", app.api_url);
    app.http
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn admin_create_org_prints_json_with_a_working_token() {
    let app = TestApp::spawn().await;
    let out = admin(&app, &["create-org", "--name", "acme", "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let org = v["org_id"].as_str().unwrap();
    assert_eq!(create_thread_status(&app, v["token"].as_str().unwrap()).await, 201);

    let out = admin(&app, &["create-token", "--org", org, "--scopes", "runs:read", "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let read_only = t["token"].as_str().unwrap();
    assert_eq!(create_thread_status(&app, read_only).await, 403, "a read-only token cannot write");

    let out = admin(&app, &["create-token", "--org", org, "--scopes", "runs:everything"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs:everything"));

    let out =
        admin(&app, &["revoke-token", "--org", org, "--token-id", t["token_id"].as_str().unwrap()])
            .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Revocation reaches the API within its 2 s auth cache.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let url = format!("{}/v1/threads/00000000-0000-0000-0000-000000000000", app.api_url);
    let resp = app.http.get(url).bearer_auth(read_only).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn an_invalid_setting_stops_the_process_and_an_unknown_one_is_a_warning() {
    let app = TestApp::spawn().await;
    for (var, value) in [("AY_MAX_INPUT_BYTES", "lots"), ("AY_EVENTS_MAX_AGE", "forever")] {
        let out = app
            .command("bad-config", &["api"])
            .env(var, value)
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
    // Orchestrators inject variables such as AY_SERVICE_HOST: the API starts and says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut api = app
        .command("unknown-var", &["api"])
        .env("AY_SERVICE_HOST", "10.0.0.1")
        .env("AY_HTTP_ADRR", "oops")
        .env("AY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        let r = app.http.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = api.start_kill();
    let out = api.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(ready, "the API did not start with an unknown AY_ variable: {err}");
    assert!(err.contains("AY_SERVICE_HOST") && err.contains("did you mean AY_HTTP_ADDR"), "{err}");
}

#[tokio::test]
async fn a_broken_agents_file_stops_every_role_naming_its_line_and_field() {
    let app =
        TestApp::spawn_with(agentyard_e2e::TestOptions { workers: 0, ..Default::default() }).await;
    let dir = temp_home("bad-agents");
    std::fs::create_dir_all(&dir).unwrap();
    let good = include_str!("../../../config/agents.yaml");
    assert!(good.contains("    temperature: 0.3\n"));
    std::fs::write(
        dir.join("agents.yaml"),
        good.replacen("    temperature: 0.3\n", "    tempreature: 0.3\n", 1),
    )
    .unwrap();
    for role in [&["api"][..], &["worker", "agent"], &["dev"]] {
        let out = app
            .command("bad-agents", role)
            .env("AY_CONFIG_DIR", &dir)
            .env("AY_HTTP_ADDR", "127.0.0.1:0")
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{role:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("agents.yaml") && err.contains("tempreature"), "{role:?}: {err}");
        assert!(err.contains("line"), "{role:?} names no line: {err}");
    }
    // The same directory with a good file is accepted.
    std::fs::write(dir.join("agents.yaml"), good).unwrap();
    let mut ok = app
        .command("good-agents", &["worker", "agent"])
        .env("AY_CONFIG_DIR", &dir)
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(ok.try_wait().unwrap().is_none(), "the worker runs with a good file");
    let _ = ok.kill().await;
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

#[tokio::test]
async fn chat_talks_to_the_agent_named_and_asks_at_the_prompt_when_the_run_needs_it() {
    let app =
        TestApp::spawn_with(agentyard_e2e::TestOptions { tools: true, ..Default::default() }).await;
    app.wait_tools().await;
    let chat = |args: Vec<String>| {
        let mut all = vec![
            "chat".to_owned(),
            "--url".into(),
            app.api_url.clone(),
            "--token".into(),
            app.token.clone(),
        ];
        all.extend(args);
        all
    };
    let args =
        chat(vec!["--agent".into(), "task_assistant".into(), "add a task to buy milk".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = app
        .command("chat-agent", &args)
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.to_lowercase().contains("buy milk") && stdout.ends_with('\n'), "{stdout:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("(thread "), "no thread hint");
    assert_eq!(app.count("SELECT count(*) FROM tasks WHERE title ILIKE '%buy milk%'").await, 1);
    // A call that needs approval asks at the prompt; "n" denies it.
    let args = chat(vec![
        "--agent".into(),
        "task_assistant".into(),
        "call delete_task {\"title\": \"buy milk\"}".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = app
        .command("chat-approve", &args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    child.stdin.take().unwrap().write_all(b"n\n").await.unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Approve? [y/N]"), "{stderr}");
    assert!(stdout.contains("did not approve"), "{stdout}");
    assert_eq!(app.count("SELECT count(*) FROM tasks").await, 1, "the denied delete never ran");
}

#[tokio::test]
async fn ctrl_c_in_chat_cancels_the_run_and_exits() {
    let app = TestApp::spawn().await;
    let mut child = app
        .command(
            "chat-ctrl-c",
            &["chat", "--url", &app.api_url, "--token", &app.token, "slow answer to interrupt"],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 3];
    use tokio::io::AsyncReadExt;
    stdout.read_exact(&mut first).await.unwrap();
    let pid = child.id().unwrap().to_string();
    tokio::process::Command::new("kill").args(["-INT", &pid]).status().await.unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
        .await
        .expect("chat ignored Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let cancelled = app.count("SELECT count(*) FROM runs WHERE status = 'cancelled'").await;
    assert_eq!(cancelled, 1);
}

/// Starts `dev` with `env`, waits for its API, posts a message and waits for the answer;
/// returns the token it printed and saved.
async fn dev_round_trip(app: &TestApp, home: &std::path::Path, env: &[(&str, &str)]) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = app.command("dev", &["dev"]);
    cmd.env("AY_HOME", home)
        .env("AY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("OPENAI_BASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut ready = false;
    for _ in 0..300 {
        if app.http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "dev did not start; see target/e2e-logs/{}-dev.log", app.prefix);
    let token = std::fs::read_to_string(home.join("dev-token")).unwrap().trim().to_owned();
    let post = app
        .http
        .post(format!("{url}/v1/runs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"input": "hello dev"}));
    let run: serde_json::Value = post.send().await.unwrap().json().await.unwrap();
    let id = run["id"].as_str().expect("a run").to_owned();
    let done: serde_json::Value = app
        .http
        .get(format!("{url}/v1/runs/{id}?wait=30"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    // The web console is served, without a token, and the banner names its address.
    let console = app.http.get(format!("{url}/console")).send().await.unwrap();
    assert_eq!(console.status(), 200);
    // A graceful stop (SIGTERM) also stops the private servers dev started.
    let pid = child.id().unwrap().to_string();
    tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await;
    assert!(status.is_ok(), "dev did not stop on SIGTERM");
    if std::env::var_os("TEST_LOG").is_none() {
        let log = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/e2e-logs/{}-dev.log", app.prefix));
        let banner = std::fs::read_to_string(log).unwrap();
        assert!(banner.contains(&format!("web:   {url}/console")), "{banner}");
    }
    token
}

#[tokio::test]
async fn dev_exits_non_zero_naming_the_part_that_cannot_start() {
    let app =
        TestApp::spawn_with(agentyard_e2e::TestOptions { workers: 0, ..Default::default() }).await;
    let home = temp_home(&format!("{}-taken", app.prefix));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = app.command("dev-taken", &["dev"]);
    cmd.env("AY_HOME", &home)
        .env("AY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("AY_MCP_ADDR", taken.local_addr().unwrap().to_string())
        .env_remove("OPENAI_BASE_URL")
        .stderr(std::process::Stdio::piped());
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("dev kept running with a part that could not start")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AY_MCP_ADDR"), "{err}");
    drop(taken);
    let _ = std::fs::remove_dir_all(&home);
}

fn temp_home(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ay-{prefix}-home"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn dev_runs_the_system_and_a_second_dev_on_the_same_database_reuses_the_dev_org() {
    let app = TestApp::spawn().await;
    let home = temp_home(&app.prefix);
    let first = dev_round_trip(&app, &home, &[]).await;
    let second = dev_round_trip(&app, &home, &[]).await;
    assert_eq!(first, second, "the saved token is reused");
    assert_eq!(app.count("SELECT count(*) FROM organizations WHERE name = 'dev'").await, 1);
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test]
async fn dev_starts_private_nats_and_postgres_when_none_answer() {
    let app = TestApp::spawn().await;
    let home = temp_home(&format!("{}-private", app.prefix));
    let nowhere = [
        ("NATS_URL", "nats://127.0.0.1:1"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/agentyard"),
        // Nothing set: dev makes the key that seals stored secrets and keeps it.
        ("AY_SECRET_KEY", ""),
    ];
    dev_round_trip(&app, &home, &nowhere).await;
    let key = std::fs::read_to_string(home.join("secret-key")).unwrap();
    assert!(agentyard_store::secrets::Keyring::from_vars(Some(&key), None).unwrap().is_some());
    assert!(home.join("pg/PG_VERSION").is_file());
    assert!(home.join("nats").is_dir());
    let pid = std::fs::read_to_string(home.join("nats.pid")).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "nats-server left running"
    );
    assert!(!home.join("pg/postmaster.pid").exists(), "postgres left running");
    let _ = std::fs::remove_dir_all(&home);
}
