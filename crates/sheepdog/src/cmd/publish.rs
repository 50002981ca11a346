//! `sheepdog publish-check DIR --purpose website`: before images of pupils
//! are published, report pupils in them without consent for the purpose
//! (withdrawn, refused, expired or never given) and every file name and
//! metadata field that holds a pupil's full name (G3). The reading and
//! matching live in `sheepdog-publish`; this command supplies the pupils
//! and their consent from the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sheepdog_config::Config;
use sheepdog_publish::{check_dir, read_mapping, Pupil};
use sheepdog_store::governance::today;
use sheepdog_store::PersonKind;

#[derive(clap::Args, Debug)]
pub struct PublishCheckArgs {
    /// The folder of images to check (files directly inside it).
    pub dir: PathBuf,
    /// The consent purpose the images are for (`website`, `social_media`,
    /// `local_press`…).
    #[arg(long)]
    pub purpose: String,
    /// A CSV of `file,pupil` rows (pupil by UPN or full name, several
    /// separated by `;`); without it, pupils are found from the person tags
    /// in the images.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// The school, by name or URN, when the deployment has several.
    #[arg(long)]
    pub school: Option<String>,
}

/// Runs the check; exits 1 when anything needs fixing before publishing.
pub async fn run(args: PublishCheckArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let mapping = match &args.mapping {
        Some(path) => Some(read_mapping(path)?),
        None => None,
    };
    let store = super::open_store(config).await?;
    let school = store.school(args.school.as_deref()).await?;
    let purposes = store.consent_purposes(school.id).await?;
    if !purposes.iter().any(|p| p.key == args.purpose) {
        let keys: Vec<&str> = purposes.iter().map(|p| p.key.as_str()).collect();
        anyhow::bail!(
            "`{}` is not one of the school's consent purposes; use one of: {}",
            args.purpose,
            keys.join(", ")
        );
    }
    let appearances = store
        .who_may_appear(school.id, None, &args.purpose, today())
        .await?;
    let people = store.people(school.id, Some(PersonKind::Pupil)).await?;
    store
        .audit_view(
            &super::command_line_actor(),
            "image_consent",
            &format!("publish-check:{}", args.purpose),
        )
        .await?;
    store.close().await;
    let pupils: Vec<Pupil> = people
        .into_iter()
        .filter(|p| p.details.active)
        .map(|p| {
            let state = appearances
                .iter()
                .find(|a| a.pupil_id == p.id)
                .map(|a| a.state);
            Pupil {
                id: p.id,
                given_name: p.details.given_name,
                family_name: p.details.family_name,
                upn: p.details.upn,
                class_name: p.details.class_name,
                may_appear: state.is_some_and(|s| s.may_appear()),
                consent: state
                    .map_or("no consent on record", |s| s.describe())
                    .to_owned(),
            }
        })
        .collect();
    let dir = args.dir.clone();
    let report = tokio::task::spawn_blocking(move || check_dir(&dir, &pupils, mapping.as_ref()))
        .await
        .context("the publish check stopped")??;
    for problem in &report.problems {
        println!("{problem}");
    }
    if report.problems.is_empty() {
        println!(
            "{} image(s) checked for {}: nothing to fix",
            report.images, args.purpose
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} image(s) checked for {}: {} thing(s) to fix before publishing",
            report.images,
            args.purpose,
            report.problems.len()
        );
        Ok(ExitCode::from(1))
    }
}
