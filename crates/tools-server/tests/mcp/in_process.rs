//! The built-in tools in the caller's own process, as a tool worker runs them: one
//! `SharedSession` over in-memory channels, each call with its own tool token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentyard_mcp::{Answer, InputBroker, McpError, SharedSession};
use agentyard_tools_server::ToolServer;
use serde_json::{Value, json};

use crate::harness::{READ_WRITE, TestServer, claims};

const T: Duration = Duration::from_secs(10);

/// A user who answers every question with `answer` and remembers what was asked.
struct User {
    answer: Value,
    asked: Mutex<Vec<String>>,
}

impl InputBroker for User {
    fn elicit(
        &self,
        message: String,
        _schema: Value,
    ) -> futures::future::BoxFuture<'static, Answer> {
        self.asked.lock().unwrap().push(message);
        let answer = self.answer.clone();
        Box::pin(async move { Answer::Accept(answer) })
    }
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test]
async fn calls_on_one_in_process_session_act_as_their_own_token_and_get_their_own_questions() {
    let app = TestServer::start().await;
    let (a, b) = (app.org().await, app.org().await);
    let tools = ToolServer::new(app.store.clone(), app.bus.clone());
    let session = SharedSession::new(tools.in_process(Arc::new(app.key())), None);
    let nobody = || Arc::new(User { answer: json!({}), asked: Mutex::default() });
    let call = |org, tool: &'static str, arguments: Value, user: Arc<User>| {
        let c = claims(org, READ_WRITE);
        let token = app.mint(&c);
        let session = &session;
        async move {
            let invocation = c.invocation_id.to_string();
            session.call(&token, &invocation, user, tool, args(arguments), T).await
        }
    };

    let listed = session.list_tools(T).await.expect("tools/list");
    assert!(listed.iter().any(|t| t.name == "add_task"), "{listed:?}");

    // Each call acts inside its own token's organization.
    let added = call(a, "add_task", json!({"title": "Water the plants"}), nobody()).await.unwrap();
    assert!(!added.is_error, "{added:?}");
    let theirs = call(b, "list_tasks", json!({}), nobody()).await.unwrap();
    assert!(!theirs.text.contains("Water the plants"), "{theirs:?}");
    let ours = call(a, "list_tasks", json!({}), nobody()).await.unwrap();
    assert!(ours.text.contains("Water the plants"), "{ours:?}");

    // Concurrent calls that ask their user: each question reaches its own call's user.
    let ada = Arc::new(User { answer: json!({"description": "Ada's"}), asked: Mutex::default() });
    let bob = Arc::new(User { answer: json!({"description": "Bob's"}), asked: Mutex::default() });
    let (x, y) = tokio::join!(
        call(a, "create_ticket", json!({"title": "Printer"}), ada.clone()),
        call(b, "create_ticket", json!({"title": "Screen"}), bob.clone()),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(!x.is_error && !y.is_error, "{x:?} {y:?}");
    assert!(x.text.contains("Ada's") && y.text.contains("Bob's"), "{x:?} {y:?}");
    assert_eq!(ada.asked.lock().unwrap().len(), 1);
    assert_eq!(bob.asked.lock().unwrap().len(), 1);
    assert!(bob.asked.lock().unwrap()[0].contains("Screen"));

    // A token the platform did not sign gets no claims: the tool refuses, nothing is written.
    let forged = agentyard_store::tool_tokens::mint(
        b"not the platform's key, 32 bytes",
        &claims(a, READ_WRITE),
    );
    let out =
        session.call(&forged, "x", nobody(), "add_task", args(json!({"title": "Forged"})), T).await;
    assert!(matches!(out, Err(McpError::Refused(_))), "{out:?}");
    let ours = call(a, "list_tasks", json!({}), nobody()).await.unwrap();
    assert!(!ours.text.contains("Forged"), "{ours:?}");
}
