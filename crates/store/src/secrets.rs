//! Secrets at rest: every secret the platform keeps in Postgres (MCP servers' bearer tokens,
//! the platform's own keys in `platform_secrets`) is sealed with XChaCha20-Poly1305 under a key
//! from the environment (`AY_SECRET_KEY`), so a dump of the database alone reveals none of them.
//!
//! A sealed value is text: `aysec1:<key id>:<base64url of nonce ‖ ciphertext ‖ tag>`.
//! - `aysec1` is the format's version.
//! - The key id is 8 hex digits derived from the key (not secret: SHA-256 of a label and the
//!   key), so a value names the key it needs and rotation can tell which rows are done.
//! - The nonce is 24 random bytes (XChaCha's extended nonce: random nonces never collide in
//!   practice).
//! - The associated data is where the value lives (`mcp_servers.bearer_token:<id>`), so a
//!   sealed value copied onto another row does not open there.
//!
//! [`Keyring`] holds the current key (sealing and opening) and old keys (opening only), which is
//! how rotation works (docs/secrets.md). A value that does not start with the prefix was stored
//! before sealing existed: it is read as plaintext and sealed at the next start or rotation.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use agentyard_core::McpServerId;

use crate::{Store, StoreError};

/// The prefix of every sealed value (format version 1).
pub const PREFIX: &str = "aysec1:";

/// The variable holding the current key.
pub const KEY_VAR: &str = "AY_SECRET_KEY";
/// The variable holding old keys (comma-separated), used to open values only.
pub const OLD_KEYS_VAR: &str = "AY_SECRET_KEY_OLD";

const NONCE: usize = 24;
const TAG: usize = 16;

/// Why a secret could not be sealed or opened. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No key configured in this process.
    #[error("no secret key: set {KEY_VAR} (base64 of 32 bytes, e.g. `openssl rand -base64 32`)")]
    NoKey,
    /// A key variable that is not base64 of 32 bytes.
    #[error("{var}: {problem}")]
    BadKey { var: &'static str, problem: String },
    /// Sealed under a key this process does not have.
    #[error(
        "{what} is sealed with key {kid}, which is neither {KEY_VAR} (key {current}) nor in \
         {OLD_KEYS_VAR}: start with the key it was sealed with"
    )]
    UnknownKey { what: String, kid: String, current: String },
    /// The key id matched but the value does not open: altered, or moved from another row.
    #[error("{what} does not open under key {kid}: the value was altered or moved")]
    Tampered { what: String, kid: String },
    /// Not a sealed value of a version we know.
    #[error("{what} is not a valid sealed value")]
    Malformed { what: String },
}

/// One key and its id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Self {
        Self { id: key_id(bytes), cipher: XChaCha20Poly1305::new(&(*bytes).into()) }
    }
}

/// The id of a key: the first 4 bytes of SHA-256("agentyard secret key id\0" ‖ key), in hex.
pub fn key_id(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"agentyard secret key id\0");
    h.update(key);
    hex::encode(&h.finalize()[..4])
}

/// The keys of a process: one to seal with, any number of old ones to open with.
#[derive(Clone)]
pub struct Keyring {
    current: Key,
    old: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let old: Vec<&str> = self.old.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("current", &self.current.id).field("old", &old).finish()
    }
}

/// Decodes a base64 (standard or URL-safe, padded or not) key of exactly 32 bytes.
fn decode_key(var: &'static str, text: &str) -> Result<[u8; 32], SecretError> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|_| SecretError::BadKey { var, problem: "is not base64".into() })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| SecretError::BadKey {
        var,
        problem: format!("must be 32 bytes, base64-encoded (it holds {})", bytes.len()),
    })
}

impl Keyring {
    /// A keyring of one key.
    pub fn new(current: &[u8; 32]) -> Self {
        Self { current: Key::new(current), old: Vec::new() }
    }

    /// The keyring the variables describe: `current` (`AY_SECRET_KEY`) and `old`
    /// (`AY_SECRET_KEY_OLD`, comma-separated). None without a current key.
    ///
    /// # Errors
    /// A key that is not base64 of 32 bytes, naming its variable; old keys without a current.
    pub fn from_vars(
        current: Option<&str>,
        old: Option<&str>,
    ) -> Result<Option<Self>, SecretError> {
        let old: Vec<&str> =
            old.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let Some(current) = current.map(str::trim).filter(|s| !s.is_empty()) else {
            if old.is_empty() {
                return Ok(None);
            }
            return Err(SecretError::BadKey {
                var: OLD_KEYS_VAR,
                problem: format!("is set but {KEY_VAR} is not: old keys only open values"),
            });
        };
        let mut ring = Self::new(&decode_key(KEY_VAR, current)?);
        for k in old {
            let key = Key::new(&decode_key(OLD_KEYS_VAR, k)?);
            if key.id != ring.current.id && !ring.old.iter().any(|o| o.id == key.id) {
                ring.old.push(key);
            }
        }
        Ok(Some(ring))
    }

    /// A fresh random key, base64-encoded (what `agentyard dev` keeps).
    pub fn generate_encoded() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    /// The id of the current key.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext` under the current key, bound to `context` (where it is stored).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            // Encryption fails only for messages over 256 GiB.
            .expect("a secret is small enough to seal");
        let mut body = Vec::with_capacity(NONCE + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current.id, URL_SAFE_NO_PAD.encode(body))
    }

    /// Opens a value stored at `context`. A value without the sealed prefix was stored before
    /// sealing existed and is returned as it is.
    ///
    /// # Errors
    /// A key this keyring lacks, a value altered or moved, a malformed value.
    pub fn open(&self, context: &str, stored: &[u8]) -> Result<Vec<u8>, SecretError> {
        match parse(stored) {
            Stored::Plain => Ok(stored.to_vec()),
            Stored::Malformed => Err(SecretError::Malformed { what: context.to_owned() }),
            Stored::Sealed { kid, body } => {
                let key = std::iter::once(&self.current)
                    .chain(&self.old)
                    .find(|k| k.id == kid)
                    .ok_or_else(|| SecretError::UnknownKey {
                        what: context.to_owned(),
                        kid: kid.to_owned(),
                        current: self.current.id.clone(),
                    })?;
                let (nonce, sealed) = body.split_at(NONCE);
                let nonce = XNonce::try_from(nonce)
                    .map_err(|_| SecretError::Malformed { what: context.to_owned() })?;
                key.cipher
                    .decrypt(&nonce, Payload { msg: sealed, aad: context.as_bytes() })
                    .map_err(|_| SecretError::Tampered {
                        what: context.to_owned(),
                        kid: kid.to_owned(),
                    })
            }
        }
    }

    /// Opens a value that must be UTF-8 text (a bearer token).
    ///
    /// # Errors
    /// As [`Keyring::open`]; text that is not UTF-8 is malformed.
    pub fn open_text(&self, context: &str, stored: &str) -> Result<String, SecretError> {
        String::from_utf8(self.open(context, stored.as_bytes())?)
            .map_err(|_| SecretError::Malformed { what: context.to_owned() })
    }

    /// True when `stored` is sealed under the current key (nothing for rotation to do).
    pub fn is_current(&self, stored: &[u8]) -> bool {
        matches!(parse(stored), Stored::Sealed { kid, .. } if kid == self.current.id)
    }
}

/// What a stored value is.
enum Stored<'a> {
    /// Written before sealing existed.
    Plain,
    Sealed {
        kid: &'a str,
        body: Vec<u8>,
    },
    Malformed,
}

fn parse(stored: &[u8]) -> Stored<'_> {
    let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else {
        return Stored::Plain;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return Stored::Malformed;
    };
    let Some((kid, body)) = rest.split_once(':') else {
        return Stored::Malformed;
    };
    match URL_SAFE_NO_PAD.decode(body) {
        Ok(body) if kid.len() == 8 && body.len() >= NONCE + TAG => Stored::Sealed { kid, body },
        _ => Stored::Malformed,
    }
}

/// True when `stored` is a sealed value (of any key).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(PREFIX.as_bytes())
}

/// What a pass over the stored secrets did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resealed {
    /// Secrets looked at.
    pub examined: u64,
    /// Secrets written again under the current key.
    pub resealed: u64,
    /// Secrets changed by someone else between our read and our write (left as they are: the
    /// writer sealed them under its own current key).
    pub skipped: u64,
}

/// Which stored secrets a pass seals again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Only those stored before sealing existed (plaintext): what every process does at start.
    Plaintext,
    /// Every one not sealed under the current key: `agentyard admin rotate-secrets`.
    NotCurrent,
}

impl Store {
    /// Seals stored secrets again under the current key, one row at a time with a
    /// compare-and-set (a row changed meanwhile is left alone), so it is idempotent and safe
    /// while the system runs.
    ///
    /// # Errors
    /// No key; a secret sealed under a key this process lacks (the error names the row and the
    /// key id); database failures.
    pub async fn reseal_secrets(&self, pass: Pass) -> crate::Result<Resealed> {
        let keys = self.keys()?;
        let mut done = Resealed::default();
        let platform: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT name, value FROM platform_secrets ORDER BY name")
                .fetch_all(self.pool())
                .await
                .map_err(|e| StoreError::db("reseal.platform_secrets", e))?;
        for (name, stored) in platform {
            done.examined += 1;
            let context = crate::tool_tokens::platform_secret_context(&name);
            let Some(fresh) = reseal_one(keys, pass, &context, &stored)? else { continue };
            let r = sqlx::query(
                "UPDATE platform_secrets SET value = $2 WHERE name = $1 AND value = $3",
            )
            .bind(&name)
            .bind(fresh.into_bytes())
            .bind(&stored)
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::db("reseal.platform_secrets", e))?;
            count(&mut done, r.rows_affected());
        }
        let servers: Vec<(McpServerId, String)> = sqlx::query_as(
            "SELECT id, bearer_token FROM mcp_servers WHERE bearer_token IS NOT NULL ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| StoreError::db("reseal.mcp_servers", e))?;
        for (id, stored) in servers {
            done.examined += 1;
            let context = crate::tools::server_token_context(id);
            let Some(fresh) = reseal_one(keys, pass, &context, stored.as_bytes())? else {
                continue;
            };
            let r = sqlx::query(
                "UPDATE mcp_servers SET bearer_token = $2 WHERE id = $1 AND bearer_token = $3",
            )
            .bind(id)
            .bind(fresh)
            .bind(&stored)
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::db("reseal.mcp_servers", e))?;
            count(&mut done, r.rows_affected());
        }
        Ok(done)
    }
}

fn count(done: &mut Resealed, rows: u64) {
    if rows == 1 {
        done.resealed += 1;
    } else {
        done.skipped += 1;
    }
}

/// The value to store instead of `stored`, or None when it needs nothing.
fn reseal_one(
    keys: &Keyring,
    pass: Pass,
    context: &str,
    stored: &[u8],
) -> Result<Option<String>, SecretError> {
    let skip = match pass {
        Pass::Plaintext => is_sealed(stored),
        Pass::NotCurrent => keys.is_current(stored),
    };
    if skip {
        return Ok(None);
    }
    Ok(Some(keys.seal(context, &keys.open(context, stored)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn a_sealed_value_opens_under_its_key_and_context_only() {
        let ring = Keyring::new(&key(1));
        let sealed = ring.seal("mcp_servers.bearer_token:a", b"tok-123");
        assert!(sealed.starts_with(&format!("aysec1:{}:", ring.current_id())), "{sealed}");
        assert!(!sealed.contains("tok-123"));
        assert_eq!(ring.open("mcp_servers.bearer_token:a", sealed.as_bytes()).unwrap(), b"tok-123");
        assert_ne!(ring.seal("c", b"x"), ring.seal("c", b"x"), "a fresh nonce each time");
        // Moved to another row: refused.
        let moved = ring.open("mcp_servers.bearer_token:b", sealed.as_bytes()).unwrap_err();
        assert!(matches!(moved, SecretError::Tampered { .. }), "{moved}");
    }

    #[test]
    fn a_wrong_key_is_a_clear_error_naming_both_key_ids() {
        let a = Keyring::new(&key(1));
        let b = Keyring::new(&key(2));
        let sealed = a.seal("ctx", b"secret");
        let err = b.open("ctx", sealed.as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(a.current_id()) && text.contains(b.current_id()), "{text}");
        assert!(text.contains("AY_SECRET_KEY") && !text.contains("secret\""), "{text}");
    }

    #[test]
    fn a_tampered_value_is_refused_never_garbage() {
        let ring = Keyring::new(&key(1));
        let sealed = ring.seal("ctx", b"secret");
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in [0, NONCE, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            let t = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&b));
            assert!(matches!(ring.open("ctx", t.as_bytes()), Err(SecretError::Tampered { .. })));
        }
        bytes.truncate(NONCE + TAG - 1);
        let short = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert!(matches!(ring.open("ctx", short.as_bytes()), Err(SecretError::Malformed { .. })));
        assert!(matches!(ring.open("ctx", b"aysec1:zz"), Err(SecretError::Malformed { .. })));
    }

    #[test]
    fn an_old_key_opens_and_the_current_one_seals() {
        let a = STANDARD.encode(key(1));
        let b = STANDARD.encode(key(2));
        let before = Keyring::from_vars(Some(&a), None).unwrap().unwrap();
        let sealed = before.seal("ctx", b"secret");
        let after = Keyring::from_vars(Some(&b), Some(&format!(" {a} ,"))).unwrap().unwrap();
        assert!(!after.is_current(sealed.as_bytes()));
        assert_eq!(after.open("ctx", sealed.as_bytes()).unwrap(), b"secret");
        let resealed = after.seal("ctx", b"secret");
        assert!(after.is_current(resealed.as_bytes()));
        assert!(before.open("ctx", resealed.as_bytes()).is_err(), "the old ring lacks the new key");
    }

    #[test]
    fn plaintext_from_before_sealing_reads_as_it_is() {
        let ring = Keyring::new(&key(1));
        assert_eq!(ring.open_text("ctx", "legacy-token").unwrap(), "legacy-token");
        assert!(!is_sealed(b"legacy-token") && !ring.is_current(b"legacy-token"));
    }

    #[test]
    fn bad_key_variables_are_named() {
        assert!(Keyring::from_vars(None, None).unwrap().is_none());
        let e = Keyring::from_vars(Some("not base64!"), None).unwrap_err();
        assert!(e.to_string().starts_with("AY_SECRET_KEY:"), "{e}");
        let e = Keyring::from_vars(Some(&STANDARD.encode([1u8; 16])), None).unwrap_err();
        assert!(e.to_string().contains("32 bytes"), "{e}");
        let e = Keyring::from_vars(Some(&STANDARD.encode(key(1))), Some("x")).unwrap_err();
        assert!(e.to_string().starts_with("AY_SECRET_KEY_OLD:"), "{e}");
        let e = Keyring::from_vars(None, Some(&STANDARD.encode(key(1)))).unwrap_err();
        assert!(e.to_string().starts_with("AY_SECRET_KEY_OLD:"), "{e}");
        let generated = Keyring::generate_encoded();
        assert!(Keyring::from_vars(Some(&generated), None).unwrap().is_some());
    }
}
