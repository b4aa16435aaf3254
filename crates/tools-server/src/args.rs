//! Tool arguments. A tool takes `Args<T>` and declares `input_schema = input::<T>()`; the
//! arguments are parsed lazily, so the tool checks its scope first, and a bad argument is a
//! tool error result naming its field (`status: unknown variant ...`), never a protocol error.

use std::sync::Arc;

use chrono::NaiveDate;
use rmcp::ErrorData;
use rmcp::handler::server::common::{FromContextPart, schema_for_input};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::JsonObject;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::DeserializeOwned;

use crate::data::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::reply::ToolError;

/// A tool's arguments, parsed into `T` when the tool asks.
pub(crate) struct Args<T>(Result<T, ToolError>);

impl<T> Args<T> {
    /// The parsed arguments.
    ///
    /// # Errors
    /// The first bad or missing field.
    pub(crate) fn parse(self) -> Result<T, ToolError> {
        self.0
    }
}

/// Parses a JSON object into `T`, naming the field of the first problem.
pub(crate) fn parse<T: DeserializeOwned>(object: JsonObject) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(|e| {
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing field fails at the top level; serde's message names it.
        let field = if field == "." { String::new() } else { field };
        ToolError::Invalid { field, message }
    })
}

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Args<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        Ok(Self(parse(context.arguments.take().unwrap_or_default())))
    }
}

/// Deserializes an optional `YYYY-MM-DD` date with a message that says so.
///
/// # Errors
/// Anything but null or such a date.
pub(crate) fn date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    match <Option<String> as serde::Deserialize>::deserialize(d)? {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map(Some).map_err(|_| {
            serde::de::Error::custom(format!("expected a date as YYYY-MM-DD, not {s:?}"))
        }),
    }
}

/// A list's `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
///
/// # Errors
/// A limit out of range, naming the field.
pub(crate) fn limit(value: Option<i64>) -> Result<i64, ToolError> {
    let limit = value.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ToolError::Invalid {
            field: "limit".into(),
            message: format!("must be 1 to {MAX_LIMIT}"),
        })
    }
}

/// The arguments of a tool that takes none (an unknown one is an error, as everywhere).
#[derive(Debug, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoArgs {}

/// The input schema of a tool taking `Args<T>`.
pub(crate) fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    schema_for_input::<T>()
        .unwrap_or_else(|e| panic!("invalid input schema of {}: {e}", std::any::type_name::<T>()))
}

fn one_of(names: &[&str]) -> Schema {
    json_schema!({ "type": "string", "enum": names })
}

/// Schemas of closed sets of names and of formatted strings, for
/// `#[schemars(schema_with = ...)]`.
pub(crate) mod names {
    use agentyard_store::domain::{Category, Priority, TicketStatus};

    use super::{Schema, SchemaGenerator, json_schema, one_of};
    use crate::data::customers::Plan;

    pub(crate) fn plan(_: &mut SchemaGenerator) -> Schema {
        one_of(Plan::NAMES)
    }

    /// A month as `YYYY-MM` (`data::revenue::Month`).
    pub(crate) fn month(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$" })
    }

    pub(crate) fn ticket_status(_: &mut SchemaGenerator) -> Schema {
        one_of(TicketStatus::NAMES)
    }

    pub(crate) fn priority(_: &mut SchemaGenerator) -> Schema {
        one_of(Priority::NAMES)
    }

    pub(crate) fn category(_: &mut SchemaGenerator) -> Schema {
        one_of(Category::NAMES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        title: String,
        limit: Option<i64>,
        status: Option<agentyard_store::domain::TicketStatus>,
    }

    fn field_of(v: serde_json::Value) -> (String, String) {
        match parse::<Sample>(v.as_object().cloned().unwrap_or_default()) {
            Err(ToolError::Invalid { field, message }) => (field, message),
            other => panic!("expected a bad argument, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_argument_names_its_field() {
        assert_eq!(field_of(serde_json::json!({"title": 5})).0, "title");
        assert_eq!(field_of(serde_json::json!({"title": "t", "limit": "x"})).0, "limit");
        let (field, message) = field_of(serde_json::json!({"title": "t", "status": "done"}));
        assert_eq!(field, "status");
        assert!(message.contains("in_progress"), "{message}");
        assert!(field_of(serde_json::json!({})).1.contains("missing field `title`"));
        assert!(
            field_of(serde_json::json!({"title": "t", "x": 1})).1.contains("unknown field `x`")
        );
    }
}
