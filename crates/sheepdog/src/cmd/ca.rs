//! `sheepdog ca init`: the school's certificate authority for selective
//! TLS inspection (docs/proxy.md).

use anyhow::Context;
use sheepdog_config::Config;
use sheepdog_policy::PolicyDocument;
use sheepdog_proxy::CertificateAuthority;

/// `sheepdog ca …`
#[derive(clap::Subcommand, Debug)]
pub enum CaCommand {
    /// Make the school's inspection authority in the data directory: a
    /// certificate to install on managed devices, and a private key only
    /// sheepdog's user can read.
    Init(InitArgs),
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The organisation named in the certificate; the policy's school name
    /// when absent.
    #[arg(long)]
    pub school: Option<String>,
    /// Replace an existing authority. Every device must then be given the
    /// new certificate, or inspected sites stop working on it.
    #[arg(long)]
    pub replace: bool,
}

pub fn run(command: CaCommand, config: &Config) -> anyhow::Result<()> {
    let CaCommand::Init(args) = command;
    let school = match args.school {
        Some(school) => school,
        None => PolicyDocument::load(&config.filtering.policy)
            .map(|doc| doc.school.name)
            .with_context(|| {
                format!(
                    "reading the school's name from the policy {} (or give --school)",
                    config.filtering.policy.display()
                )
            })?,
    };
    let (certificate, key) = config.inspection_files();
    if certificate.parent() != key.parent() {
        anyhow::bail!(
            "[proxy] inspection_certificate and inspection_key are in different directories; \
             `sheepdog ca init` writes both into one: leave them empty to use the data directory"
        );
    }
    let dir = certificate
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| config.data_dir.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (certificate, key) = CertificateAuthority::write_new(&dir, &school, args.replace)?;
    println!(
        "Made the inspection authority for {school}:\n  certificate {}  (install on managed devices; the console's Certificate page explains how)\n  private key {}  (readable by this user only; never copy it)\nThen set [proxy] inspection = true and restart.",
        certificate.display(),
        key.display()
    );
    Ok(())
}
