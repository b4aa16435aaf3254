//! Script loading errors: each names the rule (and response) at fault.

use std::path::PathBuf;

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script file could not be read.
    #[error("failed to read script file {path}")]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The document is not valid YAML (or JSON), or its top level has unknown keys.
    #[error("script is not a valid YAML/JSON script document")]
    Document(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A rule has unknown keys or values of the wrong type.
    #[error("rule {rule} is invalid")]
    Rule {
        /// Zero-based index of the rule in `rules`.
        rule: usize,
        /// What the decoder rejected.
        #[source]
        source: serde_json::Error,
    },
    /// A rule's `match` is not a valid regex.
    #[error("rule {rule} has an invalid `match` pattern")]
    Pattern {
        /// Zero-based index of the rule in `rules`.
        rule: usize,
        /// The regex compiler's complaint.
        #[source]
        source: regex::Error,
    },
    /// A response has unknown keys or values of the wrong type.
    #[error("rule {rule} response {response} is invalid")]
    ResponseDecode {
        /// Zero-based index of the rule in `rules`.
        rule: usize,
        /// Zero-based index of the response in the rule's `responses`.
        response: usize,
        /// What the decoder rejected.
        #[source]
        source: serde_json::Error,
    },
    /// A rule or response breaks a rule of the format (see the message).
    #[error("rule {rule}: {reason}")]
    Invalid {
        /// Zero-based index of the rule in `rules`.
        rule: usize,
        /// What is wrong, naming the response where there is one.
        reason: String,
    },
}
