//! `sheepdog policy export`: the filtering policy document (F14), written
//! from the policy in force, approved unblock requests included.
//! `sheepdog policy apply`: puts an edit of the policy file on the change
//! log, item by item, with who applied it and why (F8).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use sheepdog_config::Config;
use sheepdog_policy::changes::{policy_changes, ItemChange};
use sheepdog_policy::{report, CompiledPolicy, PolicyDocument};
use sheepdog_store::{PolicyItemChange, Store, StoreError};

/// `sheepdog policy …`
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Write the filtering policy document: what is blocked or allowed for
    /// whom, and why (Markdown, or PDF).
    Export(ExportArgs),
    /// Record an edit of the policy file on the change log: check the file,
    /// compare it with the policy last applied, and write each changed
    /// item with its before, after and the reason. Only a filtering
    /// manager (technician) may apply.
    Apply(ApplyArgs),
}

/// What `policy export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExportFormat {
    #[default]
    Markdown,
    Pdf,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Where to write it; standard output when absent (Markdown only).
    #[arg(long, short, alias = "out")]
    pub output: Option<PathBuf>,
    /// Markdown (the default) or PDF.
    #[arg(long, value_enum, default_value_t)]
    pub format: ExportFormat,
    /// As it stands at this time (RFC 3339 or the school's local
    /// `2026-10-05 09:30`); now when absent.
    #[arg(long)]
    pub at: Option<String>,
    /// Leave out approved unblock requests (the policy file alone).
    #[arg(long)]
    pub without_requests: bool,
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Why the policy changes, for the change log.
    #[arg(long)]
    pub reason: String,
    /// The console account applying it (a technician); the operating-system
    /// user's name when absent.
    #[arg(long)]
    pub by: Option<String>,
}

pub async fn run(command: PolicyCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Export(args) => export(args, config).await,
        PolicyCommand::Apply(args) => apply(args, config).await,
    }
}

async fn export(args: ExportArgs, config: &Config) -> anyhow::Result<()> {
    if args.format == ExportFormat::Pdf && args.output.is_none() {
        anyhow::bail!("a PDF is written to a file: add --out FILE (such as --out policy.pdf)");
    }
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
    let bytes = match args.format {
        ExportFormat::Markdown => report::policy_markdown(&doc, &policy, at).into_bytes(),
        ExportFormat::Pdf => report::policy_pdf(&doc, &policy, at),
    };
    match &args.output {
        Some(file) => {
            std::fs::write(file, bytes).with_context(|| format!("writing {}", file.display()))?
        }
        None => print!("{}", String::from_utf8_lossy(&bytes)),
    }
    Ok(())
}

async fn apply(args: ApplyArgs, config: &Config) -> anyhow::Result<()> {
    let path = &config.filtering.policy;
    // The file must be one the filter would run: read, then compiled with
    // its lists, exactly as `serve` would.
    let doc = PolicyDocument::load(path)
        .with_context(|| format!("reading the policy {}", path.display()))?;
    let snapshot = Arc::new(super::check::snapshot_for(
        &doc,
        path,
        &config.data_dir,
        false,
    )?);
    CompiledPolicy::compile(&doc, snapshot).with_context(|| {
        format!(
            "{} is not applied: fix it and run `sheepdog policy apply` again",
            path.display()
        )
    })?;
    let username = match &args.by {
        Some(name) => name.clone(),
        None => std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .context("say which console account applies the policy: --by USERNAME")?,
    };
    let store = super::open_store(config).await?;
    let result = apply_as(&store, &doc, &username, &args.reason).await;
    store.close().await;
    let (count, id) = result?;
    if count == 0 {
        println!(
            "{}: no change since the policy last applied; nothing recorded",
            path.display()
        );
    } else {
        println!(
            "{}: applied as {username} (copy {id}); {count} changed item{} on the change log",
            path.display(),
            if count == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Compares `doc` with the copy last applied and records the difference
/// as `username`'s. Returns the items recorded and the new copy's id.
async fn apply_as(
    store: &Store,
    doc: &PolicyDocument,
    username: &str,
    reason: &str,
) -> anyhow::Result<(usize, i64)> {
    let Some((account, _)) = store.account_for_sign_in(username).await? else {
        anyhow::bail!(
            "there is no console account called {username:?}: name a technician's account with --by USERNAME"
        );
    };
    let last = store.applied_policy().await?;
    let changes = items(last.as_ref().map(|l| l.policy.as_str()), doc);
    if let Some(last) = &last {
        if changes.is_empty() && store.manages_all_filtering(&account).await? {
            return Ok((0, last.id));
        }
    }
    match store
        .apply_policy(
            &account,
            last.as_ref().map(|l| l.id),
            &doc.canonical_json(),
            &changes,
            reason,
        )
        .await
    {
        Ok(applied) => Ok((changes.len(), applied.id)),
        Err(StoreError::Forbidden { reason }) => anyhow::bail!("{reason}"),
        Err(StoreError::Invalid { field, problem }) => anyhow::bail!("{field}: {problem}"),
        Err(other) => Err(other.into()),
    }
}

/// The changed items, for the store; against no copy, the whole policy is
/// one item.
fn items(last: Option<&str>, doc: &PolicyDocument) -> Vec<PolicyItemChange> {
    let Some(last) = last else {
        return vec![PolicyItemChange {
            item: "policy".to_owned(),
            before: None,
            after: Some(doc.canonical_json()),
        }];
    };
    policy_changes(last, doc)
        .into_iter()
        .map(
            |ItemChange {
                 item,
                 before,
                 after,
             }| PolicyItemChange {
                item,
                before: before.map(|v| v.to_string()),
                after: after.map(|v| v.to_string()),
            },
        )
        .collect()
}

/// At start-up: if the policy file in force differs from the copy last
/// applied, the difference goes on the change log as the file's, so an
/// edit made without `sheepdog policy apply` is still recorded. The first
/// start records the whole policy as the initial one.
pub async fn record_unapplied_edits(store: &Store, doc: &PolicyDocument) -> anyhow::Result<usize> {
    // Two servers sharing one PostgreSQL database may start together; the
    // one that records second compares again with what the first wrote.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = store.applied_policy().await?;
        let changes = items(last.as_ref().map(|l| l.policy.as_str()), doc);
        if changes.is_empty() {
            return Ok(0);
        }
        match store
            .record_unapplied_policy(last.as_ref().map(|l| l.id), &doc.canonical_json(), &changes)
            .await
        {
            Ok(_) => {
                if last.is_some() {
                    tracing::warn!(
                        items = changes.len(),
                        "the policy file was edited without `sheepdog policy apply`; the edit is on the change log as the config file's"
                    );
                }
                return Ok(changes.len());
            }
            Err(StoreError::Invalid {
                field: "policy", ..
            }) if attempts < 3 => continue,
            Err(error) => {
                return Err(anyhow::Error::new(error)
                    .context("recording the policy file's edits on the change log"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sheepdog_store::requests::ChangeFilter;
    use sheepdog_store::{StoreOptions, UNAPPLIED_EDIT_REASON};

    use super::*;

    const POLICY: &str = "[school]\nname = \"Larkmoor Primary\"\n\
                          [[groups]]\nname = \"ks2\"\n[groups.categories]\ngambling = \"block\"\n";

    /// What `serve` does at start-up: the first policy is recorded as the
    /// initial one, an unchanged file adds nothing, and an edit nobody
    /// applied is recorded item by item as the config file's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn edits_found_at_start_up_are_recorded_as_the_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let first = PolicyDocument::from_toml(POLICY).unwrap();
        assert_eq!(record_unapplied_edits(&store, &first).await.unwrap(), 1);
        assert_eq!(record_unapplied_edits(&store, &first).await.unwrap(), 0);
        let edited = PolicyDocument::from_toml(&POLICY.replace(
            "gambling = \"block\"",
            "gambling = \"block\"\ngames = \"block\"\n[groups.safe_search]\nbing = false",
        ))
        .unwrap();
        assert_eq!(record_unapplied_edits(&store, &edited).await.unwrap(), 2);
        let changes = store
            .filtering_changes(&ChangeFilter::default())
            .await
            .unwrap();
        let seen: Vec<(&str, &str, &str, &str)> = changes
            .iter()
            .map(|c| {
                (
                    c.actor.as_str(),
                    c.action.as_str(),
                    c.entity_id.as_deref().unwrap_or(""),
                    c.reason.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "config file",
                    "change",
                    "group ks2: safe_search",
                    UNAPPLIED_EDIT_REASON
                ),
                (
                    "config file",
                    "add",
                    "group ks2: category games",
                    UNAPPLIED_EDIT_REASON
                ),
                ("config file", "add", "policy", "initial policy"),
            ]
        );
        assert_eq!(
            store.applied_policy().await.unwrap().unwrap().policy,
            edited.canonical_json()
        );
    }
}
