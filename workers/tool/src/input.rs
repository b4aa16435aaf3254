//! A server's elicitation during a call ("ask the user for ..."). The answer, once a human gave
//! it, is stored on the invocation under a key of the question (its message and schema), so a
//! call run again after the answer asks the same question and gets it at once. A question with
//! no answer yet suspends the call: the broker answers the server `cancel` (the call's result is
//! then discarded) and remembers the question, which the call handler puts on the run.

use std::sync::{Arc, Mutex};

use agentyard_core::run::{InputAction, RequiredInput};
use agentyard_mcp::{Answer, InputBroker};
use agentyard_store::tools::PendingCall;
use futures::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Answers a server's elicitations during one call, from the answers stored on it.
#[derive(Clone)]
pub(crate) struct Broker(Arc<Inner>);

struct Inner {
    call: PendingCall,
    /// The first question without an answer, with its key.
    suspended: Mutex<Option<(RequiredInput, String)>>,
}

/// The key of an elicitation's answer: its message and schema, hashed.
pub(crate) fn elicitation_key(message: &str, schema: &Value) -> String {
    let mut h = Sha256::new();
    h.update(message.as_bytes());
    h.update([0]);
    h.update(schema.to_string().as_bytes());
    format!("elicitation:{}", &hex::encode(h.finalize())[..16])
}

impl Broker {
    pub(crate) fn new(call: PendingCall) -> Self {
        Self(Arc::new(Inner { call, suspended: Mutex::new(None) }))
    }

    /// The question the call stopped at, if it did.
    pub(crate) fn suspended(&self) -> Option<(RequiredInput, String)> {
        self.0.suspended.lock().expect("broker poisoned").clone()
    }
}

impl InputBroker for Broker {
    fn elicit(&self, message: String, schema: Value) -> BoxFuture<'static, Answer> {
        let this = self.clone();
        Box::pin(async move {
            let key = elicitation_key(&message, &schema);
            if let Some(a) = this.0.call.answer(&key) {
                return match a.action {
                    InputAction::Accept => Answer::Accept(a.content.unwrap_or(Value::Null)),
                    InputAction::Cancel => Answer::Cancel,
                    _ => Answer::Decline,
                };
            }
            let mut suspended = this.0.suspended.lock().expect("broker poisoned");
            if suspended.is_none() {
                let request = RequiredInput::Elicitation {
                    invocation_id: this.0.call.id,
                    tool: this.0.call.tool.clone(),
                    message,
                    requested_schema: schema,
                };
                *suspended = Some((request, key));
            }
            Answer::Cancel
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_question_has_the_same_key_and_another_question_another() {
        let schema = serde_json::json!({"type": "object"});
        let a = elicitation_key("Describe it", &schema);
        assert_eq!(a, elicitation_key("Describe it", &schema));
        assert_ne!(a, elicitation_key("Describe it again", &schema));
        assert!(a.starts_with("elicitation:"));
    }
}
