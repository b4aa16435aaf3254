//! Ticket tools, and asking the user for a missing description in both protocol generations.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ElicitResult, ElicitationAction, ProtocolVersion,
};
use serde_json::json;

use crate::harness::{READ_WRITE, TestClient, TestServer, call, data, is_error, text};

fn accept(description: &str) -> ElicitResult {
    ElicitResult::new(ElicitationAction::Accept).with_content(json!({"description": description}))
}

/// `create_ticket` without a description, answered by a user who `answer`s, on `version`.
async fn create_asking(
    app: &TestServer,
    version: ProtocolVersion,
    answer: ElicitResult,
) -> (rmcp::model::CallToolResult, Vec<String>) {
    let org = app.org().await;
    let user = TestClient::new(version, Some(answer));
    let client = app.connect_as(&app.token(org, READ_WRITE), user.clone()).await;
    let r = call(&client, "create_ticket", json!({"title": "Printer on fire"})).await;
    client.cancel().await.unwrap();
    (r, user.asked())
}

async fn tickets(app: &TestServer) -> Vec<(String, String)> {
    sqlx::query_as("SELECT title, description FROM tickets")
        .fetch_all(app.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_missing_description_is_asked_for_with_an_elicitation_request() {
    for version in [ProtocolVersion::V_2025_06_18, ProtocolVersion::V_2025_11_25] {
        let app = TestServer::start().await;
        let (r, asked) = create_asking(&app, version.clone(), accept("Flames, since noon")).await;
        assert!(!is_error(&r), "{version}: {r:?}");
        assert_eq!(asked, ["Describe the problem for the new ticket \"Printer on fire\"."]);
        assert_eq!(data(&r)["description"], "Flames, since noon");
        assert_eq!(tickets(&app).await, [("Printer on fire".into(), "Flames, since noon".into())]);
    }
}

#[tokio::test]
async fn a_missing_description_is_asked_for_with_an_input_required_result_on_2026_07_28() {
    let app = TestServer::start().await;
    let (r, asked) =
        create_asking(&app, ProtocolVersion::V_2026_07_28, accept("Flames, since noon")).await;
    assert!(!is_error(&r), "{r:?}");
    assert_eq!(asked.len(), 1);
    assert_eq!(tickets(&app).await, [("Printer on fire".into(), "Flames, since noon".into())]);

    // On the wire: the first round answers input_required with an elicitation/create request.
    let org = app.org().await;
    let user = TestClient::new(ProtocolVersion::V_2026_07_28, Some(accept("x")));
    let client = app.connect_as(&app.token(org, READ_WRITE), user).await;
    let params = CallToolRequestParams::new("create_ticket")
        .with_arguments(json!({"title": "t"}).as_object().cloned().unwrap());
    let CallToolResponse::InputRequired(round) = client.call_tool_once(params).await.unwrap()
    else {
        panic!("expected input_required");
    };
    let requests = serde_json::to_value(round.input_requests).unwrap();
    assert_eq!(requests["description"]["method"], "elicitation/create");
    let schema = &requests["description"]["params"]["requestedSchema"];
    assert_eq!(schema["required"], json!(["description"]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_declined_or_cancelled_description_creates_no_ticket() {
    let app = TestServer::start().await;
    for version in [ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2026_07_28] {
        for action in [ElicitationAction::Decline, ElicitationAction::Cancel] {
            let (r, asked) =
                create_asking(&app, version.clone(), ElicitResult::new(action.clone())).await;
            assert!(!is_error(&r), "{version} {action:?}: {r:?}");
            assert!(text(&r).starts_with("No ticket was created"), "{}", text(&r));
            assert_eq!(asked.len(), 1);
        }
    }
    assert!(tickets(&app).await.is_empty());
}

#[tokio::test]
async fn a_client_that_cannot_be_asked_gets_an_error_naming_the_description() {
    let app = TestServer::start().await;
    let org = app.org().await;
    for version in [ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2026_07_28] {
        let client = app
            .connect_as(&app.token(org, READ_WRITE), TestClient::new(version.clone(), None))
            .await;
        let r = call(&client, "create_ticket", json!({"title": "Printer on fire"})).await;
        assert!(is_error(&r) && text(&r).contains("description"), "{version}: {r:?}");
        client.cancel().await.unwrap();
    }
    assert!(tickets(&app).await.is_empty());
}

#[tokio::test]
async fn a_replayed_create_ticket_does_not_ask_again() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let token = app.token(org, READ_WRITE);
    let user = TestClient::new(ProtocolVersion::V_2025_11_25, Some(accept("Smoke")));
    for _ in 0..2 {
        let client = app.connect_as(&token, user.clone()).await;
        let r = call(&client, "create_ticket", json!({"title": "Printer on fire"})).await;
        assert!(!is_error(&r), "{r:?}");
        client.cancel().await.unwrap();
    }
    assert_eq!(user.asked().len(), 1);
    assert_eq!(tickets(&app).await.len(), 1);
}

#[tokio::test]
async fn create_ticket_with_ai_chooses_category_and_priority_and_says_why() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let text_in = "Our production API is down! Every call fails with a 500 since 9:00.";
    let r = app
        .call(&app.token(org, READ_WRITE), "create_ticket_with_ai", json!({"text": text_in}))
        .await;
    let ticket = data(&r);
    assert_eq!(
        (ticket["category"].as_str(), ticket["priority"].as_str()),
        (Some("technical"), Some("high"))
    );
    assert_eq!(ticket["title"], "Our production API is down");
    assert_eq!(ticket["description"], text_in);
    assert!(text(&r).contains("priority high (it says down, production)"), "{}", text(&r));
}

#[tokio::test]
async fn tickets_are_updated_assigned_searched_and_counted() {
    let app = TestServer::start().await;
    let org = app.org().await;
    assert!(app.store.seed_demo(org).await.unwrap());
    assert!(!app.store.seed_demo(org).await.unwrap(), "a second seed does nothing");
    let new = || app.token(org, READ_WRITE);
    let r = app.call(&new(), "search_tickets", json!({"query": "INVOICE"})).await;
    let found = data(&r);
    assert_eq!(found.as_array().unwrap().len(), 1, "{}", text(&r));
    let id = found[0]["id"].clone();

    let r = app
        .call(&new(), "update_ticket_status", json!({"ticket_id": id, "status": "in_progress"}))
        .await;
    assert_eq!(data(&r)["status"], "in_progress");
    let r = app
        .call(&new(), "assign_ticket", json!({"ticket_id": id, "assignee": "ada@example.com"}))
        .await;
    assert_eq!(data(&r)["assignee"], "ada@example.com");
    let r = app.call(&new(), "update_ticket", json!({"ticket_id": id, "priority": "high"})).await;
    assert_eq!(
        (data(&r)["priority"].as_str(), data(&r)["status"].as_str()),
        (Some("high"), Some("in_progress"))
    );
    let r = app.call(&new(), "get_ticket", json!({"ticket_id": id})).await;
    assert_eq!(data(&r)["assignee"], "ada@example.com");

    let r = app.call(&new(), "list_tickets", json!({"status": "in_progress", "limit": 10})).await;
    let listed: Vec<_> = data(&r).as_array().unwrap().iter().map(|t| t["id"].clone()).collect();
    assert!(listed.contains(&id), "{}", text(&r));
    let stats = data(&app.call(&new(), "get_ticket_stats", json!({})).await);
    assert_eq!(stats["total"], 5);
    assert_eq!(stats["by_priority"]["high"], 3);
    assert_eq!(stats["by_category"]["billing"], 1);

    let r = app.call(&new(), "delete_ticket", json!({"ticket_id": id})).await;
    assert!(!is_error(&r), "{r:?}");
    let r = app.call(&new(), "get_ticket", json!({"ticket_id": id})).await;
    assert!(is_error(&r), "{r:?}");
    let r = app.call(&new(), "get_active_integrations", json!({})).await;
    let names: Vec<_> = data(&r).as_array().unwrap().iter().map(|i| i["name"].clone()).collect();
    assert_eq!(names, ["GitHub", "Salesforce", "Slack"]);
}
