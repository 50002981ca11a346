//! `sheepdog init`: a new deployment's data directory, database, first
//! school and first administrator, from flags or by asking.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use sheepdog_config::Config;
use sheepdog_store::{AccountRole, StaffRole};

use crate::password;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The data directory (overrides the configuration's data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL URL, for a trust or a large school; embedded SQLite otherwise.
    #[arg(long)]
    database: Option<String>,
    /// The school's name.
    #[arg(long)]
    school: Option<String>,
    /// The school's DfE unique reference number.
    #[arg(long)]
    urn: Option<String>,
    /// The first administrator's username (an email address is a good choice).
    #[arg(long)]
    admin: Option<String>,
    /// The first administrator's name as the console shows it.
    #[arg(long)]
    admin_name: Option<String>,
    /// Read the administrator's password from the first line of this file.
    #[arg(long, conflicts_with = "generate_password")]
    password_file: Option<PathBuf>,
    /// Generate a strong password and print it once.
    #[arg(long)]
    generate_password: bool,
}

pub async fn run(args: InitArgs, config_path: &Path) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    let existing = config_path.exists();
    let mut config = if existing {
        Config::load(config_path)?
    } else {
        Config::default()
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = absolute(dir)?;
    }
    if let Some(url) = &args.database {
        let text = format!("[database]\nurl = {}\n", toml_string(url));
        config.database = Config::parse(&text, Path::new("--database"))?.database;
    }
    let school = value(args.school, "the school's name", "--school", interactive)?;
    let admin = value(
        args.admin,
        "the administrator's username",
        "--admin",
        interactive,
    )?;
    let admin_name = match args.admin_name {
        Some(name) => name,
        None if interactive => ask("the administrator's full name")?,
        None => admin.clone(),
    };
    let (secret, generated) = if args.generate_password {
        (password::generate(), true)
    } else if let Some(file) = &args.password_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        (text.lines().next().unwrap_or("").to_string(), false)
    } else if interactive {
        (ask_password()?, false)
    } else {
        bail!("give --password-file FILE or --generate-password (no terminal to ask on)");
    };
    if let Err(reason) = password::check_strength(&secret, &[&admin, &admin_name, &school]) {
        bail!("{reason}");
    }

    super::create_private_dir(&config.data_dir)?;
    let store = super::open_store(&config).await?;
    if !store.schools().await?.is_empty() {
        bail!(
            "{} already holds a deployment; add schools and accounts from the console",
            config.database_url()
        );
    }
    let actor = super::command_line_actor();
    let made = store
        .create_school(
            &actor,
            &school,
            args.urn.as_deref(),
            config.school.timezone.0.name(),
        )
        .await?;
    let roles = [AccountRole {
        school_id: None,
        role: StaffRole::TrustAdministrator,
    }];
    store
        .create_account(
            &actor,
            &admin,
            &admin_name,
            &password::hash(&secret)?,
            &roles,
        )
        .await?;
    store.close().await;
    if !existing {
        write_config(config_path, &config)?;
        println!("wrote {}", config_path.display());
    }
    println!("created {} in {}", made.name, config.database_url());
    println!("administrator: {admin}");
    if generated {
        println!("password: {secret}   (shown once: store it in the school's password manager)");
    }
    println!("next: sheepdog serve --config {}", config_path.display());
    Ok(ExitCode::SUCCESS)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn write_config(path: &Path, config: &Config) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = format!(
        "# Written by `sheepdog init`. Every other key has its default:\n\
         # see dist/sheepdog.example.toml.\n\
         data_dir = {}\n\n[database]\nurl = {}\n\n[school]\ntimezone = {}\n",
        toml_string(&config.data_dir.display().to_string()),
        toml_string(config.database.url.as_str()),
        toml_string(config.school.timezone.0.name()),
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn value(
    given: Option<String>,
    what: &str,
    flag: &str,
    interactive: bool,
) -> anyhow::Result<String> {
    match given {
        Some(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ if interactive => ask(what),
        _ => bail!("give {flag} ({what}); there is no terminal to ask on"),
    }
}

fn ask(what: &str) -> anyhow::Result<String> {
    loop {
        print!("{what}: ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            bail!("no answer for {what}");
        }
        if !line.trim().is_empty() {
            return Ok(line.trim().to_string());
        }
    }
}

fn ask_password() -> anyhow::Result<String> {
    loop {
        let first = rpassword::prompt_password("administrator's password: ")?;
        if let Err(reason) = password::check_strength(&first, &[]) {
            eprintln!("{reason}");
            continue;
        }
        if rpassword::prompt_password("the same password again: ")? == first {
            return Ok(first);
        }
        eprintln!("the two passwords differ; try again");
    }
}
