//! The school's certificate authority for selective TLS inspection.
//!
//! `sheepdog ca init` makes it once ([`CertificateAuthority::create`]); the
//! school installs its certificate on managed devices; the proxy then mints
//! a short-lived certificate for each inspected host, signed by it, and
//! keeps the most recent ones in memory so a browser's many connections to
//! one search engine cost one key generation.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::InspectError;

/// The file names `sheepdog ca init` writes in the data directory.
pub const CERTIFICATE_FILE: &str = "inspection-ca.pem";
pub const KEY_FILE: &str = "inspection-ca.key";

/// How many minted host certificates are kept.
const LEAF_CACHE: usize = 4096;
/// Minted certificates' lifetime: short, since the proxy can always mint
/// another, and well under the 398 days browsers accept.
const LEAF_DAYS: i64 = 30;
/// The authority's own lifetime.
const AUTHORITY_YEARS: i64 = 10;

/// A certificate authority that signs host certificates for the proxy.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
    pem: String,
    leaves: Mutex<Leaves>,
}

/// The minted certificates, evicted oldest first.
#[derive(Default)]
struct Leaves {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    order: VecDeque<String>,
}

/// A new authority's certificate and private key, in PEM.
#[derive(Debug)]
pub struct NewAuthority {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl CertificateAuthority {
    /// Makes a new authority named for the school.
    pub fn create(school: &str) -> Result<NewAuthority, InspectError> {
        let key = KeyPair::generate().map_err(InspectError::Mint)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("{school} web filter (sheepdog) inspection CA"),
        );
        name.push(DnType::OrganizationName, school);
        params.distinguished_name = name;
        // Path length 0: the authority signs host certificates and nothing
        // that could sign further.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365 * AUTHORITY_YEARS);
        let certificate = params.self_signed(&key).map_err(InspectError::Mint)?;
        Ok(NewAuthority {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes a new authority into `dir`: the certificate readable by all,
    /// the key by its owner only. An existing authority is kept unless
    /// `replace`, because replacing it means reinstalling the certificate on
    /// every device.
    pub fn write_new(
        dir: &Path,
        school: &str,
        replace: bool,
    ) -> Result<(PathBuf, PathBuf), InspectError> {
        let certificate_path = dir.join(CERTIFICATE_FILE);
        let key_path = dir.join(KEY_FILE);
        if !replace && (certificate_path.exists() || key_path.exists()) {
            return Err(InspectError::Exists(certificate_path));
        }
        let new = Self::create(school)?;
        write_file(&key_path, new.key_pem.as_bytes(), 0o600)?;
        write_file(&certificate_path, new.certificate_pem.as_bytes(), 0o644)?;
        Ok((certificate_path, key_path))
    }

    /// Loads an authority from its certificate and key files. A key that
    /// others may read is refused: whoever holds it can read every
    /// inspected connection.
    pub fn load(certificate_path: &Path, key_path: &Path) -> Result<Self, InspectError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| InspectError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let mode = std::fs::metadata(key_path)
            .map_err(|source| InspectError::Read {
                path: key_path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(InspectError::KeyPermissions {
                path: key_path.to_owned(),
                mode: mode & 0o777,
            });
        }
        let pem = read(certificate_path)?;
        let key = KeyPair::from_pem(&read(key_path)?).map_err(|error| InspectError::Parse {
            path: key_path.to_owned(),
            reason: error.to_string(),
        })?;
        Self::from_pem(&pem, key).map_err(|reason| InspectError::Parse {
            path: certificate_path.to_owned(),
            reason,
        })
    }

    fn from_pem(pem: &str, key: KeyPair) -> Result<Self, String> {
        let certificate = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        let issuer = Issuer::from_ca_cert_der(&certificate, key).map_err(|e| e.to_string())?;
        Ok(Self {
            issuer,
            certificate,
            pem: pem.to_string(),
            leaves: Mutex::new(Leaves::default()),
        })
    }

    /// The authority's certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.pem
    }

    /// The authority's certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    /// A certificate for `host`, minted on first use.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, InspectError> {
        if let Some(found) = self.lock().by_host.get(host) {
            return Ok(found.clone());
        }
        let minted = Arc::new(self.mint(host)?);
        let mut leaves = self.lock();
        if leaves.by_host.len() >= LEAF_CACHE {
            if let Some(oldest) = leaves.order.pop_front() {
                leaves.by_host.remove(&oldest);
            }
        }
        if leaves
            .by_host
            .insert(host.to_string(), minted.clone())
            .is_none()
        {
            leaves.order.push_back(host.to_string());
        }
        metrics::counter!("sheepdog_proxy_certificates_minted_total").increment(1);
        Ok(minted)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Leaves> {
        // A panic elsewhere while holding the lock leaves a usable cache.
        self.leaves.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mint(&self, host: &str) -> Result<CertifiedKey, InspectError> {
        let key = KeyPair::generate().map_err(InspectError::Mint)?;
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(InspectError::Mint)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(LEAF_DAYS);
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(InspectError::Mint)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&private)
            .map_err(|e| InspectError::Key(e.to_string()))?;
        Ok(CertifiedKey::new(
            vec![certificate.der().clone(), self.certificate.clone()],
            signing,
        ))
    }
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cached", &self.lock().by_host.len())
            .finish_non_exhaustive()
    }
}

/// Hands rustls the minted certificate for the name in the ClientHello.
#[derive(Debug)]
pub(crate) struct MintingResolver(pub(crate) Arc<CertificateAuthority>);

impl ResolvesServerCert for MintingResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        match self.0.leaf(name) {
            Ok(leaf) => Some(leaf),
            Err(error) => {
                tracing::warn!(%error, name, "cannot mint a certificate");
                None
            }
        }
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InspectError> {
    let failed = |source| InspectError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    // The mode above applies only to a new file.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests;
