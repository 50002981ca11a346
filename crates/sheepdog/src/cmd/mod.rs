//! One module per subcommand; what they share is here.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sheepdog_config::Config;
use sheepdog_store::{Actor, Store, StoreOptions};

pub mod agreements;
pub mod audit;
pub mod ca;
pub mod check;
pub mod demo;
pub mod dns;
pub mod import;
pub mod init;
pub mod list_refresh;
pub mod lists;
pub mod monitor;
pub mod policy;
pub mod proxy;
pub mod publish;
pub mod requests;
pub mod serve;

/// Reads the configuration named on the command line.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// Opens the configured store, creating the data directory for SQLite.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        create_private_dir(&config.data_dir)?;
    }
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        busy_timeout: Duration::from_millis(u64::from(config.database.busy_timeout_ms)),
    };
    Ok(Store::open(&url, &options).await?)
}

/// Creates a directory readable by its owner alone: it holds records about
/// children.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict permissions on {}", dir.display()))?;
    }
    Ok(())
}

/// The operating-system user running a command, for the audit log.
pub fn command_line_actor() -> Actor {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_string());
    Actor::command_line(&user)
}

pub fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: the configuration is valid", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::from(2))
        }
    }
}

pub fn version() -> String {
    format!(
        "sheepdog {} (databases: embedded SQLite, PostgreSQL)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Waits for Ctrl-C or, on Unix, SIGTERM from the service manager.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// What the subcommands' tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use sheepdog_store::{
        Actor, GroupKind, ImportBatch, PersonDetails, PersonKind, Store, StoreOptions,
    };

    /// A school in a fresh SQLite file under `dir`, with one synthetic
    /// pupil (`given` `family`, class `class`) in its "Key stage 2"
    /// filtering group (profile `ks2`): the store, the school's id and the
    /// pupil's id.
    pub async fn school_with_ks2_pupil(
        dir: &std::path::Path,
        (given, family): (&str, &str),
        class: &str,
    ) -> (Store, i64, i64) {
        let url = format!("sqlite://{}", dir.join("db.sqlite").display());
        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let actor = Actor::command_line("test");
        let school = store
            .create_school(&actor, "Larkmoor Primary", None, "Europe/London")
            .await
            .unwrap()
            .id;
        let pupil = PersonDetails {
            kind: PersonKind::Pupil,
            external_id: None,
            upn: Some("A123456789012".to_owned()),
            given_name: given.to_owned(),
            family_name: family.to_owned(),
            date_of_birth: None,
            year_group: class.get(..1).map(str::to_owned),
            class_name: Some(class.to_owned()),
            email: None,
            roles: vec![],
            active: true,
        };
        let batch = ImportBatch {
            people: vec![pupil],
            guardians: vec![],
        };
        store
            .import_people(&actor, school, &batch, false)
            .await
            .unwrap();
        let pupil_id = store.people(school, Some(PersonKind::Pupil)).await.unwrap()[0].id;
        let ks2 = store
            .ensure_group(
                &actor,
                school,
                "Key stage 2",
                GroupKind::Filtering,
                Some("ks2"),
            )
            .await
            .unwrap();
        store
            .add_group_member(&actor, ks2.id, pupil_id, "a key stage 2 pupil")
            .await
            .unwrap();
        (store, school, pupil_id)
    }
}
