//! Asking the client's model (MCP sampling), the way the negotiated protocol version defines
//! it, like [`crate::elicit`]: a server-to-client `sampling/createMessage` request up to
//! 2025-11-25; from 2026-07-28 an `InputRequiredResult` holding that request, the answer
//! coming back in the retried call's `inputResponses`. Sampling is deprecated by SEP-2577, but
//! it is how a tool server without a model of its own gets one; agentyard's tool worker answers
//! it with the platform's model.
#![allow(deprecated)] // sampling (SEP-2577), see above

use std::collections::BTreeMap;

use rmcp::model::{
    CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult, InputRequest,
    InputRequiredResult, InputResponses, ProtocolVersion, SamplingMessage,
};
use rmcp::service::{RequestContext, RoleServer};

/// What asking the model gave.
pub(crate) enum Sampled {
    /// The model's text.
    Text(String),
    /// 2026-07-28: return this; the client retries with the answer.
    Ask(InputRequiredResult),
    /// The client cannot sample, or sampling failed: why.
    Unavailable(String),
}

/// Asks the client's model `prompt` (with `system`), or reads the answer a retry carries
/// under `key`.
pub(crate) async fn ask_model(
    ctx: &RequestContext<RoleServer>,
    responses: Option<&InputResponses>,
    key: &str,
    system: &str,
    prompt: String,
) -> Sampled {
    if let Some(response) = responses.and_then(|r| r.get(key)) {
        return match serde_json::from_value::<CreateMessageResult>(response.clone()) {
            Ok(result) => Sampled::Text(text_of(&result)),
            Err(_) => Sampled::Unavailable("the input response is not a sampling result".into()),
        };
    }
    if ctx.client_capabilities().and_then(|c| c.sampling).is_none() {
        return Sampled::Unavailable("the client does not offer a model".into());
    }
    let mut params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 200);
    params.system_prompt = Some(system.to_owned());
    params.temperature = Some(0.0);
    if ctx.protocol_version().is_some_and(|v| v >= ProtocolVersion::V_2026_07_28) {
        let request = InputRequest::CreateMessage(CreateMessageRequest::new(params));
        let requests = BTreeMap::from([(key.to_owned(), request)]);
        return Sampled::Ask(InputRequiredResult::new(
            Some(requests),
            Some(format!("sample:{key}")),
        ));
    }
    match ctx.peer.create_message(params).await {
        Ok(result) => Sampled::Text(text_of(&result)),
        Err(e) => Sampled::Unavailable(format!("the model failed: {e}")),
    }
}

fn text_of(result: &CreateMessageResult) -> String {
    let v = serde_json::to_value(&result.message.content).unwrap_or_default();
    let blocks = if v.is_array() { v.as_array().cloned().unwrap_or_default() } else { vec![v] };
    blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n")
}
