//! Task tools, and the idempotency of every write per invocation.

use serde_json::json;

use crate::harness::{READ_WRITE, TestServer, call, data, is_error, text};

#[tokio::test]
async fn a_write_repeated_under_one_invocation_id_writes_once() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let token = app.token(org, READ_WRITE);
    let args = json!({"title": "Pay rent", "due_date": "2026-12-01"});
    let first = app.call(&token, "add_task", args.clone()).await;
    // The redelivered call: same invocation (same token), on a new connection.
    let second = app.call(&token, "add_task", args).await;
    assert!(!is_error(&first), "{first:?}");
    assert_eq!(text(&first), text(&second));
    // Another tool under the same invocation id writes nothing either.
    let other = app.call(&token, "create_ticket", json!({"title": "t", "description": "d"})).await;
    assert!(is_error(&other) && text(&other).contains("already wrote"), "{other:?}");

    let tasks = app.store.list_tasks(org, None, None).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(data(&first)["id"], json!(tasks[0].id));
    assert!(app.store.list_tickets(org, None, 10).await.unwrap().is_empty());
    let writes: i64 = sqlx::query_scalar("SELECT count(*) FROM tool_writes")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(writes, 1);
}

#[tokio::test]
async fn concurrent_duplicates_of_one_invocation_write_once() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let token = app.token(org, READ_WRITE);
    let calls = (0..4).map(|_| app.call(&token, "add_task", json!({"title": "Once"})));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| text(r) == text(&results[0])), "{results:?}");
    assert_eq!(app.store.list_tasks(org, None, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn tasks_are_added_found_by_title_changed_completed_and_deleted() {
    let app = TestServer::start().await;
    let org = app.org().await;
    // Each call is an invocation of its own, as a tool worker makes them.
    let call_new = |tool: &'static str, args| {
        let token = app.token(org, READ_WRITE);
        let app = &app;
        async move { app.call(&token, tool, args).await }
    };
    call_new("add_task", json!({"title": "Pay rent", "description": "Before the 5th"})).await;
    call_new("add_task", json!({"title": "Call Bob"})).await;

    let r = call_new("complete_task", json!({"title": "pay RENT"})).await;
    assert!(!is_error(&r) && data(&r)["status"] == "completed", "{r:?}");
    let r = call_new("update_task", json!({"title": "Call Bob", "new_title": "Call Alice"})).await;
    assert_eq!(data(&r)["title"], "Call Alice");
    let r = call_new("update_task", json!({"title": "Call Alice"})).await;
    assert!(is_error(&r) && text(&r).contains("new_title"), "{r:?}");

    let client = app.connect(&app.token(org, READ_WRITE)).await;
    let pending = data(&call(&client, "list_tasks", json!({"status": "pending"})).await);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["title"], "Call Alice");
    let all = call(&client, "list_tasks", json!({})).await;
    assert!(text(&all).starts_with("2 task(s): 1 pending, 1 completed."), "{}", text(&all));
    client.cancel().await.unwrap();

    call_new("add_task", json!({"title": "Call Alice"})).await;
    let r = call_new("delete_task", json!({"title": "call alice"})).await;
    assert!(is_error(&r) && text(&r).contains("several tasks"), "{r:?}");
    let r = call_new("delete_task", json!({"task_id": pending[0]["id"]})).await;
    assert!(!is_error(&r), "{r:?}");
    let r = call_new("complete_task", json!({"task_id": pending[0]["id"]})).await;
    assert!(is_error(&r) && text(&r).contains("no task"), "{r:?}");
    assert_eq!(app.store.list_tasks(org, None, None).await.unwrap().len(), 2);
}
