//! `sheepdog audit`.

use std::path::Path;
use std::process::ExitCode;

/// Audit log commands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain and report every altered, deleted or
    /// missing entry.
    Verify,
    /// Show the newest entries.
    Tail {
        /// How many entries.
        #[arg(long, default_value_t = 20)]
        count: i64,
    },
}

pub async fn run(command: AuditCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let store = super::open_store(&config).await?;
    let code = match command {
        AuditCommand::Verify => {
            let verification = store.verify_audit().await?;
            if verification.is_intact() {
                println!(
                    "audit log intact: {} entries; head {}",
                    verification.entries, verification.head
                );
                ExitCode::SUCCESS
            } else {
                for problem in &verification.problems {
                    println!("{problem}");
                }
                println!(
                    "audit log damaged: {} problem(s) in {} entries",
                    verification.problems.len(),
                    verification.entries
                );
                ExitCode::FAILURE
            }
        }
        AuditCommand::Tail { count } => {
            for entry in store.audit_entries(None, count).await? {
                println!(
                    "{:>6} {} {} {} {} {}",
                    entry.seq,
                    entry.at,
                    entry.actor,
                    entry.action,
                    entry.entity,
                    entry.entity_id.unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}
