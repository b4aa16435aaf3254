//! `agentyard admin`: organizations, tokens and the rotation of the key that seals stored
//! secrets, straight against Postgres (for operators).

use agentyard_core::{OrgId, Scope, TokenId};
use agentyard_runtime::Settings;
use agentyard_store::secrets::Pass;
use anyhow::{Context, bail};
use clap::Subcommand;

use crate::roles::connect_store;

/// Admin commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an organization with its default agent; prints its id and an admin token holding
    /// every org scope.
    CreateOrg {
        #[arg(long)]
        name: String,
        /// Print one JSON object {"org_id", "token"}.
        #[arg(long)]
        json: bool,
    },
    /// Create a token for an organization.
    CreateToken {
        #[arg(long)]
        org: String,
        /// Comma-separated scopes, e.g. runs:read,runs:write; `platform:admin` lets the token
        /// create and read organizations.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long, default_value = "cli")]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token (API processes stop accepting it within 2 seconds).
    RevokeToken {
        #[arg(long)]
        org: String,
        #[arg(long)]
        token_id: String,
    },
    /// Seal every stored secret again under the current key (`AY_SECRET_KEY`), opening those
    /// sealed under an old one with `AY_SECRET_KEY_OLD`. One pass, idempotent, safe while the
    /// system runs (see docs/secrets.md).
    RotateSecrets {
        /// Print one JSON object {"key_id", "examined", "resealed", "skipped"}.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an admin command.
///
/// # Errors
/// Invalid arguments or database failures.
pub async fn run(settings: &Settings, cmd: AdminCommand) -> anyhow::Result<()> {
    let store = connect_store(settings, false).await?;
    match cmd {
        AdminCommand::CreateOrg { name, json } => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let org = store.create_org(name.trim()).await?;
            if json {
                let out = serde_json::json!({"org_id": org.org_id, "token": org.token.secret});
                println!("{out}");
            } else {
                println!("org_id: {}\ntoken:  {}", org.org_id, org.token.secret);
            }
        }
        AdminCommand::CreateToken { org, scopes, name, json } => {
            let org: OrgId = org.parse().context("--org must be an organization id")?;
            let known = || Scope::ALL.map(Scope::as_str).join(", ");
            let scopes: Vec<Scope> = scopes
                .iter()
                .map(|s| s.parse::<Scope>())
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?;
            if scopes.is_empty() {
                bail!("--scopes must name at least one scope ({})", known());
            }
            if !store.org_exists(org).await? {
                bail!("no organization {org}");
            }
            let token = store.create_token(org, &name, &scopes).await?;
            if json {
                let out = serde_json::json!({"token_id": token.id, "token": token.secret, "scopes": token.scopes});
                println!("{out}");
            } else {
                println!("token_id: {}\ntoken:    {}", token.id, token.secret);
            }
        }
        AdminCommand::RevokeToken { org, token_id } => {
            let org: OrgId = org.parse().context("--org must be an organization id")?;
            let id: TokenId = token_id.parse().context("--token-id must be a token id")?;
            if !store.revoke_token(org, id).await? {
                bail!("no live token {id} in organization {org}");
            }
            println!("revoked {id}");
        }
        AdminCommand::RotateSecrets { json } => {
            crate::roles::require_secret_key(settings)?;
            let done = store.reseal_secrets(Pass::NotCurrent).await?;
            let key_id = store.keys()?.current_id().to_owned();
            if json {
                let out = serde_json::json!({"key_id": key_id, "examined": done.examined,
                    "resealed": done.resealed, "skipped": done.skipped});
                println!("{out}");
            } else {
                println!(
                    "{} secrets examined, {} sealed again under key {key_id}, {} changed \
                     meanwhile (left as written)",
                    done.examined, done.resealed, done.skipped
                );
            }
        }
    }
    Ok(())
}
