//! `sheepdog monitor`: the keyword libraries, evaluation and scanning of
//! event files, for checking monitoring without running the servers.
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sheepdog_config::Config;
use sheepdog_monitor::{
    eval, read_events, CircumventionRule, Delivery, GradingRules, GroupMonitoring, Library,
    LiveMonitor, LiveOptions, Matcher, Monitor,
};
use sheepdog_store::{Actor, AlertPolicy, NewAlert};

#[derive(clap::Subcommand, Debug)]
pub enum MonitorCommand {
    /// Print precision and recall per category and language on a labelled
    /// corpus (the shipped one by default).
    Eval {
        /// Corpus files, `LANGUAGE=PATH` (e.g. `pl=extra.txt`), instead
        /// of the shipped corpus.
        #[arg(long = "corpus", value_name = "LANGUAGE=PATH")]
        corpora: Vec<String>,
        /// School libraries to load as well as the shipped ones.
        #[arg(long = "library", value_name = "FILE")]
        libraries: Vec<PathBuf>,
        /// The grade at which a category counts as flagged.
        #[arg(long, default_value_t = 3)]
        min_grade: u8,
        /// List every case the libraries got wrong.
        #[arg(long)]
        mistakes: bool,
        /// Exit with status 1 if any category misses recall 0.95 or
        /// precision 0.90.
        #[arg(long)]
        check: bool,
    },
    /// Read JSON-lines events and print the hits and graded concerns.
    Scan {
        /// The events file (`-` for standard input).
        file: PathBuf,
        #[arg(long = "library", value_name = "FILE")]
        libraries: Vec<PathBuf>,
        /// Only concerns at or above this grade.
        #[arg(long, default_value_t = 1)]
        min_grade: u8,
        /// One JSON object per concern instead of text.
        #[arg(long)]
        json: bool,
        /// Store concerns as alerts in the configured database, for the
        /// default school.
        #[arg(long)]
        record: bool,
    },
    /// Check keyword library files and report what they hold.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub async fn run(cmd: MonitorCommand, config: &Config) -> anyhow::Result<ExitCode> {
    match cmd {
        MonitorCommand::Eval {
            corpora,
            libraries,
            min_grade,
            mistakes,
            check,
        } => run_eval(&corpora, &libraries, min_grade, mistakes, check),
        MonitorCommand::Scan {
            file,
            libraries,
            min_grade,
            json,
            record,
        } => run_scan(&file, &libraries, min_grade, json, record, config).await,
        MonitorCommand::Check { files } => {
            for file in &files {
                let library = load_library(file)?;
                let terms: usize = library.terms.iter().map(|g| g.phrases.len()).sum();
                let exclusions: usize = library.exclusions.iter().map(|e| e.phrases.len()).sum();
                println!(
                    "{}: {} ({}), {terms} terms, {exclusions} exclusions",
                    file.display(),
                    library.library.name,
                    library.library.language
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Follows the decision events the servers store and records their
/// concerns as alerts, and delivers the DSL notifications `[notify]`
/// configures, until `shutdown`; `sheepdog serve` and `demo` run it beside
/// the listeners. The DNS server never waits for it: it reads the rows the
/// event writer has already stored.
pub async fn follow_events(
    notify: sheepdog_config::NotifyConfig,
    monitoring: sheepdog_config::MonitoringConfig,
    compiled: tokio::sync::watch::Sender<Option<Arc<Matcher>>>,
    pages: Option<tokio::sync::mpsc::Receiver<sheepdog_store::PageSeen>>,
    store: sheepdog_store::Store,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let failed = |e: anyhow::Error| std::io::Error::other(format!("monitoring: {e:#}"));
    let delivery = Delivery::from_config(&notify).map_err(std::io::Error::other)?;
    let school_matcher = Arc::new(matcher(&monitoring.libraries).map_err(failed)?);
    // The console reads text from other sources with the same libraries.
    compiled.send_replace(Some(Arc::clone(&school_matcher)));
    let mut groups = Vec::new();
    for group in &monitoring.groups {
        let libraries: Vec<PathBuf> = monitoring
            .libraries
            .iter()
            .chain(&group.libraries)
            .cloned()
            .collect();
        groups.push(GroupMonitoring {
            group: group.name.clone(),
            matcher: Arc::new(matcher(&libraries).map_err(failed)?),
            min_grade: group.min_grade.unwrap_or(monitoring.min_grade),
        });
    }
    let options = LiveOptions {
        min_grade: monitoring.min_grade,
        groups,
        circumvention: CircumventionRule {
            attempts: monitoring.circumvention_attempts,
            window: chrono::Duration::minutes(i64::from(monitoring.circumvention_minutes)),
            grade: monitoring.circumvention_grade,
        },
        ..LiveOptions::default()
    };
    let mut live = LiveMonitor::start(store.clone(), school_matcher, options)
        .await
        .map_err(std::io::Error::other)?;
    if let Some(pages) = pages {
        live = live.with_pages(pages);
    }
    tracing::info!(
        after_event = live.cursor(),
        notify = delivery.is_some(),
        "monitoring follows the decision events"
    );
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let delivering = delivery.map(|delivery| {
        tokio::spawn(
            delivery.run(store, std::time::Duration::from_secs(5), async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }),
        )
    });
    live.run(shutdown).await;
    let _ = stop.send(true);
    if let Some(task) = delivering {
        task.await.map_err(std::io::Error::other)?;
    }
    Ok(())
}

fn load_library(path: &PathBuf) -> anyhow::Result<Library> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Library::parse(&text, &path.display().to_string())?)
}

/// The shipped libraries and those at `extra`, compiled.
fn matcher(extra: &[PathBuf]) -> anyhow::Result<Matcher> {
    let mut libraries = Library::shipped()?;
    for path in extra {
        libraries.push(load_library(path)?);
    }
    Ok(Matcher::new(&libraries)?)
}

fn run_eval(
    corpora: &[String],
    libraries: &[PathBuf],
    min_grade: u8,
    show_mistakes: bool,
    check: bool,
) -> anyhow::Result<ExitCode> {
    let matcher = matcher(libraries)?;
    let cases = if corpora.is_empty() {
        sheepdog_monitor::shipped_corpus()?
    } else {
        let mut cases = Vec::new();
        for spec in corpora {
            let (language, path) = spec
                .split_once('=')
                .context("give a corpus as LANGUAGE=PATH, for example en=corpus.txt")?;
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
            cases.extend(sheepdog_monitor::eval::parse_corpus(&text, language)?);
        }
        cases
    };
    let report = eval(&matcher, &cases, min_grade);
    println!(
        "{} cases ({} hard negatives), flagged at grade >= {min_grade}\n",
        report.cases, report.negatives
    );
    println!(
        "{:<9} {:<15} {:>4} {:>3} {:>3} {:>3} {:>9} {:>7}",
        "language", "category", "pos", "tp", "fp", "fn", "precision", "recall"
    );
    let mut short = false;
    for score in &report.scores {
        let miss = score.recall() < 0.95 || score.precision() < 0.90;
        short |= miss;
        println!(
            "{:<9} {:<15} {:>4} {:>3} {:>3} {:>3} {:>9.3} {:>7.3}{}",
            score.language,
            score.category.as_str(),
            score.positives,
            score.true_positives,
            score.false_positives,
            score.false_negatives,
            score.precision(),
            score.recall(),
            if miss { "  below target" } else { "" }
        );
    }
    println!();
    let mut languages: Vec<&str> = report.scores.iter().map(|s| s.language.as_str()).collect();
    languages.dedup();
    for language in languages.into_iter().map(Some).chain([None]) {
        let total = report.total(language);
        println!(
            "{:<9} {:<15} {:>4} {:>3} {:>3} {:>3} {:>9.3} {:>7.3}",
            total.language,
            "all",
            total.positives,
            total.true_positives,
            total.false_positives,
            total.false_negatives,
            total.precision(),
            total.recall()
        );
    }
    if show_mistakes {
        println!();
        for mistake in &report.mistakes {
            let labels: Vec<&str> = mistake.case.labels.iter().map(|c| c.as_str()).collect();
            let flagged: Vec<&str> = mistake.flagged.iter().map(|c| c.as_str()).collect();
            println!(
                "{}:{} labelled [{}] flagged [{}]: {}",
                mistake.case.language,
                mistake.case.line,
                labels.join(","),
                flagged.join(","),
                mistake.case.text
            );
        }
    }
    Ok(if check && short {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_scan(
    file: &PathBuf,
    libraries: &[PathBuf],
    min_grade: u8,
    json: bool,
    record: bool,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let mut monitor = Monitor::new(Arc::new(matcher(libraries)?), GradingRules::default());
    let store = if record {
        let store = super::open_store(config).await?;
        let school = store
            .school(None)
            .await
            .context("--record needs a school in the database (run `sheepdog init`)")?;
        Some((store, school.id))
    } else {
        None
    };
    let actor = Actor::system("monitor");
    let policy = AlertPolicy::default();
    let (mut events, mut concerns_total, mut recorded) = (0usize, 0usize, 0usize);
    for event in read_events(reader) {
        let event = event?;
        events += 1;
        for concern in monitor.inspect(&event) {
            if concern.grade < min_grade {
                continue;
            }
            concerns_total += 1;
            if json {
                let line = serde_json::json!({
                    "time": event.time,
                    "person": event.person,
                    "device": event.device,
                    "address": event.address,
                    "concern": concern,
                });
                println!("{line}");
            } else {
                let matched: Vec<String> = concern
                    .hits
                    .iter()
                    .map(|h| format!("{:?} ({}, {})", h.matched, h.hit.term, h.hit.language))
                    .collect();
                println!(
                    "{} {} grade {} {}: {}",
                    event.time.format("%Y-%m-%dT%H:%M:%SZ"),
                    event.subject().unwrap_or("unknown"),
                    concern.grade,
                    concern.category,
                    if matched.is_empty() {
                        "blocked attempt at an illegal list".to_string()
                    } else {
                        matched.join(", ")
                    }
                );
            }
            if let Some((store, school_id)) = &store {
                let alert = NewAlert {
                    person_id: None,
                    subject: event.subject().unwrap_or("unknown").to_string(),
                    device_id: None,
                    device_name: event.device.clone(),
                    address: event.address.clone(),
                    category: concern.category.as_str().to_string(),
                    grade: concern.grade,
                    matched_text: concern
                        .hits
                        .first()
                        .map(|h| h.matched.clone())
                        .unwrap_or_default(),
                    source: event.source.clone().unwrap_or_else(|| "file".to_string()),
                    at: event.time,
                    event_ids: event.id.into_iter().collect(),
                    context: serde_json::to_value(&event).unwrap_or_default(),
                };
                store
                    .record_alert(&actor, *school_id, &alert, &policy)
                    .await?;
                recorded += 1;
            }
        }
    }
    eprintln!(
        "{events} events, {concerns_total} concerns at grade >= {min_grade}{}",
        if record {
            format!(", {recorded} recorded as alerts")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
