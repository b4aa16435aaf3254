//! Who may call what: tokens, scopes and organizations; and what every tool declares.

use std::collections::BTreeSet;

use agentyard_store::tool_tokens;
use serde_json::json;

use crate::harness::{READ_WRITE, TestServer, call, claims, data, is_error, text};

const TOOLS: &[&str] = &[
    "add_revenue",
    "add_task",
    "assign_ticket",
    "complete_task",
    "create_customer",
    "create_ticket",
    "create_ticket_with_ai",
    "delete_task",
    "delete_ticket",
    "get_active_integrations",
    "get_customer",
    "get_report",
    "get_revenue",
    "get_system_health",
    "get_ticket",
    "get_ticket_stats",
    "list_customers",
    "list_integrations",
    "list_messages",
    "list_reports",
    "list_tasks",
    "list_tickets",
    "save_report",
    "search_tickets",
    "send_message",
    "update_task",
    "update_ticket",
    "update_ticket_status",
];

#[tokio::test]
async fn every_tool_has_a_description_and_an_input_schema() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let client = app.connect(&app.token(org, READ_WRITE)).await;
    let tools = client.list_all_tools().await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOLS.iter().copied().collect());
    for tool in &tools {
        let description = tool.description.as_deref().unwrap_or_default();
        assert!(description.len() > 20, "{} has no real description", tool.name);
        assert_eq!(tool.input_schema.get("type"), Some(&json!("object")), "{}", tool.name);
        let properties = tool.input_schema.get("properties").and_then(|p| p.as_object());
        for (field, schema) in properties.into_iter().flatten() {
            assert!(
                schema.get("description").is_some(),
                "{}.{field} has no description",
                tool.name
            );
        }
    }
    let add = tools.iter().find(|t| t.name == "add_task").unwrap();
    assert_eq!(add.input_schema["required"], json!(["title"]));
    let status = tools.iter().find(|t| t.name == "update_ticket_status").unwrap();
    assert_eq!(
        status.input_schema["properties"]["status"]["enum"],
        json!(["open", "in_progress", "resolved", "closed"])
    );
    let customer = tools.iter().find(|t| t.name == "create_customer").unwrap();
    assert_eq!(customer.input_schema["required"], json!(["name", "email"]));
    assert_eq!(
        customer.input_schema["properties"]["plan"]["enum"],
        json!(["free", "pro", "enterprise"])
    );
    let revenue = tools.iter().find(|t| t.name == "get_revenue").unwrap();
    assert_eq!(revenue.input_schema["properties"]["from"]["type"], "string");
    let send = tools.iter().find(|t| t.name == "send_message").unwrap();
    assert!(send.description.as_deref().unwrap_or_default().contains("NOT delivered"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_with_401() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let mut expired = claims(org, READ_WRITE);
    expired.exp = chrono::Utc::now().timestamp() - 1;
    let forged = tool_tokens::mint(b"not the platform key", &claims(org, READ_WRITE));
    let http = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    for auth in [
        None,
        Some("Bearer nonsense".to_owned()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {}", app.mint(&expired))),
        Some(app.token(org, READ_WRITE)),
    ] {
        let mut request =
            http.post(&app.url).header("accept", "application/json, text/event-stream").json(&body);
        if let Some(a) = &auth {
            request = request.header("authorization", a);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        let error: serde_json::Value = response.json().await.unwrap();
        let code = error["error"]["code"].as_str().unwrap();
        assert_eq!(code, if auth.is_none() { "missing_token" } else { "invalid_token" });
    }
}

#[tokio::test]
async fn a_missing_scope_is_an_error_result_and_writes_nothing() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let read_only = app.token(org, &["runs:read"]);
    let r = app.call(&read_only, "add_task", json!({"title": "Pay rent"})).await;
    assert!(is_error(&r) && text(&r).contains("runs:write"), "{r:?}");
    let r = app.call(&read_only, "create_ticket", json!({"title": "t", "description": "d"})).await;
    assert!(is_error(&r) && text(&r).contains("runs:write"), "{r:?}");
    let none = app.token(org, &["runs:write"]);
    let r = app.call(&none, "list_tasks", json!({})).await;
    assert!(is_error(&r) && text(&r).contains("runs:read"), "{r:?}");
    for (tool, args) in [
        ("create_customer", json!({"name": "Ann", "email": "ann@example.com"})),
        ("send_message", json!({"to": "ann@example.com", "subject": "s", "body": "b"})),
        ("add_revenue", json!({"month": "2025-01", "amount": 1})),
        ("save_report", json!({"title": "t", "body": "b"})),
    ] {
        let r = app.call(&read_only, tool, args).await;
        assert!(is_error(&r) && text(&r).contains("runs:write"), "{tool}: {r:?}");
    }
    for (tool, args) in [
        ("list_customers", json!({})),
        ("get_revenue", json!({"from": "2025-01", "to": "2025-02"})),
        ("list_reports", json!({})),
    ] {
        let r = app.call(&none, tool, args).await;
        assert!(is_error(&r) && text(&r).contains("runs:read"), "{tool}: {r:?}");
    }

    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM tickets), \
         (SELECT count(*) FROM tool_writes), (SELECT count(*) FROM revenue_records)",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(counts, (0, 0, 0, 0));
}

#[tokio::test]
async fn bad_arguments_are_an_error_result_naming_the_field() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let client = app.connect(&app.token(org, READ_WRITE)).await;
    for (tool, args, field) in [
        ("list_tasks", json!({"status": "done"}), "status"),
        ("add_task", json!({"title": 5}), "title"),
        ("add_task", json!({}), "title"),
        ("add_task", json!({"title": "  "}), "title"),
        ("add_task", json!({"title": "t", "due_date": "next week"}), "due_date"),
        ("add_task", json!({"title": "t", "colour": "red"}), "colour"),
        ("complete_task", json!({}), "task_id"),
        ("list_tickets", json!({"limit": 0}), "limit"),
        ("get_ticket", json!({"ticket_id": "42"}), "ticket_id"),
        (
            "update_ticket_status",
            json!({"ticket_id": uuid::Uuid::nil(), "status": "done"}),
            "status",
        ),
        ("create_customer", json!({"name": "Ann", "email": "ann@"}), "email"),
        ("create_customer", json!({"name": "Ann", "email": "a@x.io", "plan": "gold"}), "plan"),
        ("get_customer", json!({"customer_id": "7"}), "customer_id"),
        ("list_customers", json!({"limit": 0}), "limit"),
        ("send_message", json!({"to": "a@x.io", "subject": "s"}), "body"),
        ("add_revenue", json!({"month": "2025-01", "amount": -1}), "amount"),
        ("add_revenue", json!({"month": "Jan 2025", "amount": 1}), "month"),
        ("add_revenue", json!({"month": "2025-01", "amount": 1, "currency": "$"}), "currency"),
        ("get_revenue", json!({"from": "2025-13", "to": "2025-12"}), "from"),
        ("save_report", json!({"title": "t", "body": "b", "data": "x"}), "data"),
        ("get_report", json!({}), "report_id"),
        ("list_reports", json!({"kind": "a b"}), "kind"),
    ] {
        let r = call(&client, tool, args.clone()).await;
        assert!(is_error(&r), "{tool} {args}: {r:?}");
        assert!(text(&r).contains(field), "{tool} {args}: {}", text(&r));
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(count, 0);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_organization_sees_and_changes_only_its_own_data() {
    let app = TestServer::start().await;
    let (a, b) = (app.org().await, app.org().await);
    app.store.seed_demo(a).await.unwrap();
    let a_token = app.token(a, READ_WRITE);
    let task = data(&app.call(&a_token, "add_task", json!({"title": "Secret plan"})).await);
    let ticket = app.store.list_tickets(a, None, 1).await.unwrap().remove(0);

    let client = app.connect(&app.token(b, READ_WRITE)).await;
    for tool in ["list_tasks", "list_tickets", "list_integrations", "get_active_integrations"] {
        let r = call(&client, tool, json!({})).await;
        assert_eq!(data(&r), json!([]), "{tool}: {}", text(&r));
    }
    let stats = data(&call(&client, "get_ticket_stats", json!({})).await);
    assert_eq!(stats["total"], 0);
    let r = call(&client, "search_tickets", json!({"query": "invoice"})).await;
    assert_eq!(data(&r), json!([]));
    for (tool, args) in [
        ("get_ticket", json!({"ticket_id": ticket.id})),
        ("update_ticket_status", json!({"ticket_id": ticket.id, "status": "closed"})),
        ("delete_ticket", json!({"ticket_id": ticket.id})),
        ("complete_task", json!({"task_id": task["id"]})),
        ("delete_task", json!({"title": "Secret plan"})),
    ] {
        let r = call(&client, tool, args).await;
        assert!(is_error(&r) && text(&r).contains("no "), "{tool}: {r:?}");
    }
    client.cancel().await.unwrap();

    let tasks = app.store.list_tasks(a, None, None).await.unwrap();
    assert_eq!((tasks.len(), tasks[0].status.as_str()), (1, "pending"));
    assert_eq!(app.store.get_ticket(a, ticket.id).await.unwrap(), Some(ticket));
}

#[tokio::test]
async fn system_health_counts_the_agent_workers_that_answer() {
    use futures::StreamExt;
    let app = TestServer::start().await;
    let org = app.org().await;
    let token = app.token(org, &["runs:read"]);
    let r = app.call(&token, "get_system_health", json!({})).await;
    assert_eq!(data(&r)["agent_workers"], 0, "{}", text(&r));
    assert!(text(&r).starts_with("The platform is degraded"), "{}", text(&r));
    // A stand-in agent worker: answers status requests.
    let client = app.bus.client().clone();
    let mut requests = client.subscribe(app.bus.subjects().agent_worker_status()).await.unwrap();
    client.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            if let Some(reply) = msg.reply {
                let _ = client.publish(reply, r#"{"model_reachable":true}"#.into()).await;
            }
        }
    });
    let r = app.call(&token, "get_system_health", json!({})).await;
    assert_eq!(
        data(&r),
        json!({"postgres": true, "nats": true, "agent_workers": 1, "healthy": true}),
        "{}",
        text(&r)
    );
}
