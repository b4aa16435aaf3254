//! `agentyard dlq`: the dead letters, straight from JetStream and Postgres (for operators): what
//! failed, why, how often, when; one in full; replayed; dropped once dealt with.

use agentyard_bus::Outbox;
use agentyard_bus::dlq::DeadLetter;
use agentyard_runtime::Settings;
use agentyard_services::Services;
use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::roles::{connect_bus, connect_store};

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Counts by kind and reason, then the newest dead letters.
    List {
        /// How many of the newest to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print one JSON object {"total", "counts", "data"}.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter with its job.
    Show { id: u64 },
    /// Run a dead-lettered agent step again as a new attempt of its run (once its cause is
    /// fixed), and remove the dead letter. A run that finished meanwhile is not run again.
    Replay { id: u64 },
    /// Remove a dead letter (its job is not run again).
    Drop { id: u64 },
}

/// Runs a dead-letter command.
///
/// # Errors
/// NATS unreachable; an unknown id.
pub async fn run(settings: &Settings, cmd: DlqCommand) -> anyhow::Result<()> {
    let store = connect_store(settings, false).await?;
    let bus = connect_bus(settings).await?;
    let shutdown = CancellationToken::new();
    let outbox = Outbox::start(bus.clone(), store.clone(), shutdown.clone());
    let services =
        Services::new(settings.clone(), store, bus, outbox).map_err(anyhow::Error::msg)?;
    let result = command(&services, cmd).await;
    shutdown.cancel();
    result
}

async fn command(services: &Services, cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List { limit, json } => {
            let all = services.dead_letters(limit).await?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
                return Ok(());
            }
            println!("{} dead letters", all.total);
            for c in &all.counts {
                println!(
                    "{:>6}  {:<9} {:<28} first {}  last {}",
                    c.count,
                    c.kind,
                    c.code,
                    c.first_at.format("%F %T"),
                    c.last_at.format("%F %T")
                );
            }
            for d in &all.data {
                println!("{}", line(d));
            }
        }
        DlqCommand::Show { id } => {
            let d = services.dead_letter(id).await.with_context(|| format!("dead letter {id}"))?;
            println!("{}", serde_json::to_string_pretty(&d)?);
        }
        DlqCommand::Replay { id } => {
            let r = services
                .replay_dead_letter(id)
                .await
                .with_context(|| format!("dead letter {id}"))?;
            println!("{}", serde_json::to_string(&r)?);
        }
        DlqCommand::Drop { id } => {
            services.drop_dead_letter(id).await.with_context(|| format!("dead letter {id}"))?;
            println!("dropped {id}");
        }
    }
    Ok(())
}

/// One dead letter on one line: id, when, kind, the job's run, the reason.
fn line(d: &DeadLetter) -> String {
    let run = d.job.get("run_id").and_then(|v| v.as_str()).unwrap_or("-");
    format!("#{} {} {} run {} {}", d.id, d.dead_lettered_at.format("%F %T"), d.kind, run, d.reason)
}
