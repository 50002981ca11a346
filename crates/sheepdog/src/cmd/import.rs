//! `sheepdog import people` and `sheepdog roster synthesize`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sheepdog_roster::synthetic::{Phase, SchoolSpec};
use sheepdog_roster::{Roster, RosterKind};
use sheepdog_store::{Actor, ImportOutcome, Store};

/// What to import.
#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Pupils, staff or parent contacts from an MIS CSV export. Re-importing
    /// updates; it never duplicates. A file with bad rows imports nothing.
    People(ImportPeopleArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportPeopleArgs {
    /// The CSV export.
    file: PathBuf,
    /// pupils, staff or contacts; detected from the header row when left out.
    #[arg(long)]
    kind: Option<RosterKind>,
    /// The school (name or URN); needed only when the deployment has several.
    #[arg(long)]
    school: Option<String>,
    /// Check the file and report what would change, changing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Import the valid rows even though others have problems.
    #[arg(long)]
    skip_invalid: bool,
}

/// Synthetic rosters.
#[derive(Debug, clap::Subcommand)]
pub enum RosterCommand {
    /// Write pupils.csv, staff.csv and contacts.csv for an invented school.
    Synthesize {
        /// The directory to write to.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "primary")]
        phase: PhaseArg,
        #[arg(long, default_value_t = 1)]
        classes_per_year: usize,
        #[arg(long, default_value_t = 25)]
        pupils_per_class: usize,
        /// The same seed always makes the same school.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PhaseArg {
    Primary,
    Secondary,
}

pub async fn run(command: ImportCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let ImportCommand::People(args) = command;
    let config = super::load_config(config_path)?;
    let roster = sheepdog_roster::parse(&args.file, args.kind)?;
    report(&args.file, &roster);
    if !roster.is_clean() && !args.skip_invalid {
        println!(
            "nothing imported: correct the {} row(s) above and import again, or give --skip-invalid to import the {} valid row(s)",
            roster.invalid_lines.len(),
            roster.batch.people.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let store = super::open_store(&config).await?;
    let school = store.school(args.school.as_deref()).await?;
    let outcome = import(
        &store,
        &super::command_line_actor(),
        school.id,
        &roster,
        args.dry_run,
    )
    .await?;
    print_outcome(&outcome, &school.name);
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Imports a parsed roster's valid rows.
pub async fn import(
    store: &Store,
    actor: &Actor,
    school_id: i64,
    roster: &Roster,
    dry_run: bool,
) -> anyhow::Result<ImportOutcome> {
    store
        .import_people(actor, school_id, &roster.batch, dry_run)
        .await
        .context("the import was rolled back; nothing changed")
}

fn report(file: &Path, roster: &Roster) {
    println!(
        "{}: {} export, {} row(s), {} with problems",
        file.display(),
        roster.kind,
        roster.rows,
        roster.invalid_lines.len()
    );
    for problem in &roster.problems {
        println!("  {problem}");
    }
}

fn print_outcome(outcome: &ImportOutcome, school: &str) {
    let verb = if outcome.dry_run { "would be" } else { "were" };
    println!(
        "{school}: {} created, {} updated, {} unchanged, {} parent links added ({verb} {})",
        outcome.created,
        outcome.updated,
        outcome.unchanged,
        outcome.links_created,
        if outcome.dry_run {
            "made: dry run, nothing changed"
        } else {
            "saved"
        }
    );
}

pub fn synthesize(command: RosterCommand) -> anyhow::Result<ExitCode> {
    let RosterCommand::Synthesize {
        out,
        phase,
        classes_per_year,
        pupils_per_class,
        seed,
    } = command;
    let spec = SchoolSpec {
        phase: match phase {
            PhaseArg::Primary => Phase::Primary,
            PhaseArg::Secondary => Phase::Secondary,
        },
        classes_per_year,
        pupils_per_class,
        seed,
        ..SchoolSpec::default()
    };
    let paths = write_roster(&spec, &out)?;
    for path in paths {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a synthetic roster's three exports into `dir`.
pub fn write_roster(spec: &SchoolSpec, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let roster = spec.roster();
    let mut written = Vec::new();
    for (name, text) in [
        ("pupils.csv", &roster.pupils_csv),
        ("staff.csv", &roster.staff_csv),
        ("contacts.csv", &roster.contacts_csv),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
