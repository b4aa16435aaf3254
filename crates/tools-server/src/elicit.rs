//! Asking the user for a missing value (elicitation), the way the negotiated protocol version
//! defines it:
//! - up to 2025-11-25: a server-to-client `elicitation/create` request inside the tool call;
//!   the answer comes back on the same MCP session while the call waits;
//! - from 2026-07-28 (no server-to-client requests): the call returns an `InputRequiredResult`
//!   holding the same `elicitation/create` request; the client asks the user and retries the
//!   call with the answer in `inputResponses`. Nothing is kept between the rounds: the retry
//!   carries the original arguments, and `requestState` is only a marker.
//!
//! A client that did not declare form elicitation is not asked: the tool fails naming the
//! missing field.
//!
//! The request names the call it belongs to in its `_meta` ([`INVOCATION_META`], the invocation of the
//! caller's tool token), so a tool worker that runs many calls on one session
//! can route the question to the right one (`agentyard_mcp::SharedSession`).

use std::collections::BTreeMap;

use agentyard_core::InvocationId;
use agentyard_mcp::INVOCATION_META;
use agentyard_store::tool_tokens::ToolClaims;
use axum::http::request::Parts;
use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest, InputRequiredResult, InputResponses, MetaObject, ProtocolVersion,
    RequestMetaObject,
};
use rmcp::service::{RequestContext, RoleServer};

use crate::reply::ToolError;

/// What the user answered.
#[derive(Debug)]
pub(crate) enum Answer {
    Given(String),
    /// Declined or cancelled.
    Refused(ElicitationAction),
    /// 2026-07-28: return this; the client retries with the answer.
    Ask(InputRequiredResult),
}

/// A question for one string field.
pub(crate) struct Question {
    /// The field, also the key of the input request.
    pub(crate) field: &'static str,
    pub(crate) message: String,
    /// What the field is, shown with the input box.
    pub(crate) hint: &'static str,
}

impl Question {
    fn params(&self, call: Option<InvocationId>) -> ElicitRequestParams {
        let hint = self.hint;
        let schema = ElicitationSchema::builder()
            .required_string_property(self.field, |s| s.description(hint).min_length(1))
            // Cannot fail: the one required property is the one just added.
            .build_unchecked();
        let meta = call.map(|id| {
            let mut meta = MetaObject::default();
            meta.insert(INVOCATION_META.into(), id.to_string().into());
            RequestMetaObject(meta)
        });
        ElicitRequestParams::FormElicitationParams {
            meta,
            message: self.message.clone(),
            requested_schema: schema,
        }
    }

    fn unanswerable(&self, why: &str) -> ToolError {
        ToolError::Invalid { field: self.field.to_owned(), message: format!("is required ({why})") }
    }

    /// Reads the field out of the user's answer.
    fn answer(&self, result: ElicitResult) -> Result<Answer, ToolError> {
        if result.action != ElicitationAction::Accept {
            return Ok(Answer::Refused(result.action));
        }
        let value =
            result.content.as_ref().and_then(|c| c.get(self.field)).and_then(|v| v.as_str());
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Answer::Given(v.to_owned())),
            None => Err(self.unanswerable("the user accepted but gave none")),
        }
    }

    /// Asks the client's user.
    pub(crate) async fn ask(
        &self,
        ctx: &RequestContext<RoleServer>,
        responses: Option<&InputResponses>,
    ) -> Result<Answer, ToolError> {
        // A retry of a 2026-07-28 round carries the answer.
        if let Some(response) = responses.and_then(|r| r.get(self.field)) {
            let result = serde_json::from_value(response.clone()).map_err(|_| {
                self.unanswerable("the input response is not an elicitation result")
            })?;
            return self.answer(result);
        }
        let form = ctx.client_capabilities().and_then(|c| c.elicitation).is_some_and(|e| {
            // A client that names no mode supports forms (2025-06-18).
            e.form.is_some() || e.url.is_none()
        });
        if !form {
            return Err(self.unanswerable("this client cannot be asked for it"));
        }
        let call = ctx
            .extensions
            .get::<Parts>()
            .and_then(|p| p.extensions.get::<ToolClaims>())
            .map(|c| c.invocation_id);
        if ctx.protocol_version().is_some_and(|v| v >= ProtocolVersion::V_2026_07_28) {
            let request = InputRequest::Elicitation(ElicitRequest::new(self.params(call)));
            let requests = BTreeMap::from([(self.field.to_owned(), request)]);
            let state = format!("elicit:{}", self.field);
            return Ok(Answer::Ask(InputRequiredResult::new(Some(requests), Some(state))));
        }
        match ctx.peer.create_elicitation(self.params(call)).await {
            Ok(result) => self.answer(result),
            Err(e) => {
                tracing::info!(error = %e, field = self.field, "elicitation failed");
                Err(self.unanswerable("asking the user failed"))
            }
        }
    }
}
