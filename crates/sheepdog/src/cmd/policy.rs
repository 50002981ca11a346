//! `sheepdog policy export`: the filtering policy document (F14), written
//! from the policy in force, approved unblock requests included.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use sheepdog_config::Config;
use sheepdog_policy::{report, CompiledPolicy, PolicyDocument};

/// `sheepdog policy …`
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Write the filtering policy document: what is blocked or allowed for
    /// whom, and why (Markdown).
    Export(ExportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Where to write it; standard output when absent.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// As it stands at this time (RFC 3339 or the school's local
    /// `2026-10-05 09:30`); now when absent.
    #[arg(long)]
    pub at: Option<String>,
    /// Leave out approved unblock requests (the policy file alone).
    #[arg(long)]
    pub without_requests: bool,
}

pub async fn run(command: PolicyCommand, config: &Config) -> anyhow::Result<()> {
    let PolicyCommand::Export(args) = command;
    let path = &config.filtering.policy;
    let doc = PolicyDocument::load(path)
        .with_context(|| format!("reading the policy {}", path.display()))?;
    let snapshot = Arc::new(super::check::snapshot_for(
        &doc,
        path,
        &config.data_dir,
        false,
    )?);
    let plain = CompiledPolicy::compile(&doc, snapshot.clone()).context("compiling the policy")?;
    let at = match &args.at {
        Some(text) => super::check::parse_time(text, &plain)?,
        None => Utc::now(),
    };
    let doc = if args.without_requests {
        doc
    } else {
        let store = super::open_store(config).await?;
        let approved = store.approved_exceptions(at).await?;
        store.close().await;
        let (with, unplaced) = doc.with_exceptions(super::requests::as_exceptions(&approved));
        for (group, e) in unplaced {
            eprintln!("warning: an approved request for {} names the group {group:?}, which the policy does not have", e.target);
        }
        with
    };
    let policy = CompiledPolicy::compile(&doc, snapshot).context("compiling the policy")?;
    let text = report::policy_markdown(&doc, &policy, at);
    match &args.output {
        Some(file) => {
            std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}
