//! Customer and message tools: the demo data of the onboarding and support workflows.

use serde_json::json;

use crate::harness::{READ_WRITE, TestServer, call, data, is_error, text};

async fn count(app: &TestServer, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(app.store.pool()).await.unwrap()
}

#[tokio::test]
async fn customers_are_created_found_by_id_or_email_and_listed() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let call_new = |tool: &'static str, args| {
        let token = app.token(org, READ_WRITE);
        let app = &app;
        async move { app.call(&token, tool, args).await }
    };
    let ann =
        json!({"name": "Ann Lee", "email": "Ann@Example.com", "company": "Acme", "plan": "pro"});
    let r = call_new("create_customer", ann).await;
    assert!(!is_error(&r), "{r:?}");
    let ann = data(&r);
    assert_eq!(ann["name"], "Ann Lee");
    assert_eq!(ann["email"], "Ann@Example.com");
    assert_eq!(ann["company"], "Acme");
    assert_eq!((&ann["plan"], &ann["status"]), (&json!("pro"), &json!("active")));
    assert!(ann["id"].is_string() && ann["created_at"].is_string(), "{ann}");
    let r = call_new("create_customer", json!({"name": "Bob", "email": "bob@example.com"})).await;
    assert_eq!((data(&r)["plan"].as_str(), data(&r)["company"].is_null()), (Some("free"), true));

    // The same address in another case is the same customer.
    let r =
        call_new("create_customer", json!({"name": "Ann 2", "email": " ann@example.COM"})).await;
    assert!(is_error(&r), "{r:?}");
    let message = text(&r);
    let id = ann["id"].as_str().unwrap();
    assert!(message.contains("a customer with email Ann@Example.com already exists"), "{message}");
    assert!(message.contains(id), "{message}");
    let r = call_new("create_customer", json!({"name": "Eve", "email": "eve@nowhere"})).await;
    assert!(is_error(&r) && text(&r).contains("email: must be an email address"), "{r:?}");
    assert_eq!(count(&app, "customers").await, 2);

    let client = app.connect(&app.token(org, &["runs:read"])).await;
    let r = call(&client, "get_customer", json!({"customer_id": id})).await;
    assert_eq!(data(&r), ann);
    let r = call(&client, "get_customer", json!({"email": "ANN@example.com"})).await;
    assert_eq!(data(&r), ann);
    let r = call(&client, "get_customer", json!({"email": "nobody@example.com"})).await;
    assert!(is_error(&r) && text(&r).contains("no customer with email"), "{r:?}");
    let r = call(&client, "get_customer", json!({})).await;
    assert!(is_error(&r) && text(&r).contains("customer_id"), "{r:?}");
    let all = call(&client, "list_customers", json!({})).await;
    assert!(text(&all).starts_with("2 customer(s), newest first."), "{}", text(&all));
    assert_eq!(data(&all)[0]["name"], "Bob");
    let pro = data(&call(&client, "list_customers", json!({"plan": "pro"})).await);
    assert_eq!(pro, json!([ann]));
    let one = data(&call(&client, "list_customers", json!({"limit": 1})).await);
    assert_eq!(one.as_array().unwrap().len(), 1);
    let r = call(&client, "list_customers", json!({"limit": 101})).await;
    assert!(is_error(&r) && text(&r).contains("limit"), "{r:?}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn another_organization_cannot_see_or_message_a_customer() {
    let app = TestServer::start().await;
    let (a, b) = (app.org().await, app.org().await);
    let args = json!({"name": "Ann", "email": "ann@example.com"});
    let ann = data(&app.call(&app.token(a, READ_WRITE), "create_customer", args.clone()).await);

    let client = app.connect(&app.token(b, READ_WRITE)).await;
    let r = call(&client, "get_customer", json!({"customer_id": ann["id"]})).await;
    assert!(is_error(&r) && text(&r).contains("no customer"), "{r:?}");
    let r = call(&client, "get_customer", json!({"email": "ann@example.com"})).await;
    assert!(is_error(&r) && text(&r).contains("no customer"), "{r:?}");
    assert_eq!(data(&call(&client, "list_customers", json!({})).await), json!([]));
    client.cancel().await.unwrap();
    let message = json!({"to": "ann@example.com", "subject": "Hi", "body": "Hello",
        "customer_id": ann["id"]});
    let r = app.call(&app.token(b, READ_WRITE), "send_message", message).await;
    assert!(is_error(&r) && text(&r).contains("no customer"), "{r:?}");
    assert_eq!(count(&app, "outgoing_messages").await, 0);
    // The address is free in b: the same email is another customer there.
    let r = app.call(&app.token(b, READ_WRITE), "create_customer", args).await;
    assert!(!is_error(&r) && data(&r)["id"] != ann["id"], "{r:?}");
}

#[tokio::test]
async fn a_create_repeated_under_one_invocation_id_creates_one_customer() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let token = app.token(org, READ_WRITE);
    let args = json!({"name": "Ann", "email": "ann@example.com"});
    let calls = (0..3).map(|_| app.call(&token, "create_customer", args.clone()));
    let results = futures::future::join_all(calls).await;
    assert!(!is_error(&results[0]), "{results:?}");
    // A redelivered call gets the first result, not a "duplicate email" error.
    assert!(results.iter().all(|r| text(r) == text(&results[0])), "{results:?}");
    let again = app.call(&token, "create_customer", args).await;
    assert_eq!(text(&again), text(&results[0]));
    assert_eq!(count(&app, "customers").await, 1);
    assert_eq!(count(&app, "tool_writes").await, 1);
}

#[tokio::test]
async fn send_message_records_a_message_and_links_it_to_the_customer() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let new = || app.token(org, READ_WRITE);
    let args = json!({"name": "Ann", "email": "ann@example.com"});
    let ann = data(&app.call(&new(), "create_customer", args).await);

    let welcome =
        json!({"to": "ANN@example.com", "subject": "Welcome", "body": "Hi Ann,\n\nwelcome!"});
    let token = new();
    let r = app.call(&token, "send_message", welcome.clone()).await;
    assert!(!is_error(&r), "{r:?}");
    assert!(text(&r).contains("not delivered"), "{}", text(&r));
    let m = data(&r);
    assert_eq!((&m["status"], &m["customer_id"]), (&json!("recorded"), &ann["id"]));
    assert_eq!((&m["to"], &m["subject"]), (&json!("ANN@example.com"), &json!("Welcome")));
    assert_eq!(m["body"], "Hi Ann,\n\nwelcome!");
    // The sentence and the JSON stay apart even when the body has blank lines.
    assert!(text(&r).lines().last().is_some_and(|l| l.starts_with('{')), "{}", text(&r));
    let replayed = app.call(&token, "send_message", welcome).await;
    assert_eq!(text(&replayed), text(&r));

    let other = json!({"to": "lead@example.org", "subject": "Offer", "body": "Hello"});
    let r = app.call(&new(), "send_message", other).await;
    assert!(data(&r)["customer_id"].is_null(), "{r:?}");
    let r = app.call(&new(), "send_message", json!({"to": "x", "subject": "s", "body": "b"})).await;
    assert!(is_error(&r) && text(&r).contains("to: must be an email address"), "{r:?}");

    let client = app.connect(&app.token(org, &["runs:read"])).await;
    let all = call(&client, "list_messages", json!({})).await;
    assert!(text(&all).starts_with("2 message(s)"), "{}", text(&all));
    assert_eq!(data(&all)[0]["subject"], "Offer");
    let anns = data(&call(&client, "list_messages", json!({"customer_id": ann["id"]})).await);
    assert_eq!(anns, json!([m]));
    client.cancel().await.unwrap();
    assert_eq!(count(&app, "outgoing_messages").await, 2);
}
