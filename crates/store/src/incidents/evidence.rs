//! Evidence at rest: sealed with XChaCha20-Poly1305 under the deployment's
//! evidence key, bound to its incident and its SHA-256, so that a file moved
//! to another incident, altered in the database, or opened with another key
//! fails to open rather than showing something else.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{actor_of, may_open, optional, refused, required};
use super::{EvidenceInfo, EvidenceLimits, EvidencePurpose, EvidenceUpload};
use crate::audit::{append, Change};
use crate::{Account, AuditEntry, Store, StoreError};

/// The key evidence is sealed with. The binary keeps it in a file of its
/// own (mode 0600) beside, not inside, the database, so a copy of the
/// database alone does not reveal evidence.
#[derive(Clone)]
pub struct EvidenceKey([u8; 32]);

impl EvidenceKey {
    /// A new random key.
    pub fn generate() -> Result<Self, StoreError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| StoreError::invalid("evidence key", e.to_string()))?;
        Ok(Self(key))
    }

    /// A key from the 32 bytes of a key file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            StoreError::invalid(
                "evidence key",
                format!(
                    "the key file holds {} bytes, not 32; restore it from the backup taken with the database",
                    bytes.len()
                ),
            )
        })?;
        Ok(Self(key))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

impl std::fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvidenceKey(..)")
    }
}

/// Hex SHA-256 of a file.
pub(crate) fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn binding(incident_id: i64, sha256: &str) -> Vec<u8> {
    format!("sheepdog-evidence-v1:{incident_id}:{sha256}").into_bytes()
}

/// Seals a file: (hex nonce, sealed bytes).
pub(crate) fn seal(
    key: &EvidenceKey,
    incident_id: i64,
    sha256: &str,
    plain: &[u8],
) -> Result<(String, Vec<u8>), StoreError> {
    seal_bound(key, &binding(incident_id, sha256), plain)
}

/// Seals bytes bound to `aad` (what they belong to): (hex nonce, sealed
/// bytes). Shared by incident evidence and governance files, which bind to
/// different things so that neither opens as the other.
pub(crate) fn seal_bound(
    key: &EvidenceKey,
    aad: &[u8],
    plain: &[u8],
) -> Result<(String, Vec<u8>), StoreError> {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|e| StoreError::invalid("evidence", e.to_string()))?;
    let sealed = key
        .cipher()
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| StoreError::invalid("evidence", "the file could not be sealed"))?;
    Ok((hex::encode(nonce), sealed))
}

/// Opens sealed evidence and checks it against the digest taken at upload.
pub(crate) fn open(
    key: &EvidenceKey,
    evidence_id: i64,
    incident_id: i64,
    sha256: &str,
    nonce: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, StoreError> {
    open_bound(key, &binding(incident_id, sha256), sha256, nonce, sealed).map_err(|problem| {
        StoreError::Corrupt {
            entity: "incident_evidence",
            problem: format!("evidence {evidence_id}: {problem}"),
        }
    })
}

/// Opens bytes sealed by [`seal_bound`] and checks their SHA-256; the error
/// says what is wrong, for the caller to name the record.
pub(crate) fn open_bound(
    key: &EvidenceKey,
    aad: &[u8],
    sha256: &str,
    nonce: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, &'static str> {
    let plain = open_sealed(key, aad, nonce, sealed)?;
    if digest(&plain) != sha256 {
        return Err("its SHA-256 no longer matches the one taken at upload");
    }
    Ok(plain)
}

/// Opens bytes sealed by [`seal_bound`] under the same `aad`.
pub(crate) fn open_sealed(
    key: &EvidenceKey,
    aad: &[u8],
    nonce: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, &'static str> {
    let nonce = hex::decode(nonce).map_err(|_| "its nonce is not hex")?;
    if nonce.len() != 24 {
        return Err("its nonce is not 24 bytes");
    }
    key.cipher()
        .decrypt(XNonce::from_slice(&nonce), Payload { msg: sealed, aad })
        .map_err(|_| "it does not open with this evidence key, or it was altered or moved")
}

/// The image format a file's first bytes announce, whatever its name or
/// declared type says: a suspected child abuse image must not get in under
/// another name.
pub(crate) fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\xff\xd8\xff", "JPEG"),
        (b"GIF87a", "GIF"),
        (b"GIF89a", "GIF"),
        (b"BM", "BMP"),
        (b"II*\0", "TIFF"),
        (b"MM\0*", "TIFF"),
    ];
    if let Some((_, name)) = SIGNATURES.iter().find(|(sig, _)| bytes.starts_with(sig)) {
        return Some(name);
    }
    let riff_webp = bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP";
    if riff_webp {
        return Some("WebP");
    }
    // ISO media (HEIC, AVIF, and video): `ftyp` at offset 4.
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Some("HEIC/AVIF/MP4");
    }
    None
}

impl Store {
    /// Attaches evidence, sealed at rest. Refused for any image on an
    /// incident of suspected child sexual abuse imagery (recognised by the
    /// file's content, not its name), and outside the size and type
    /// limits.
    pub async fn add_evidence(
        &self,
        account: &Account,
        id: i64,
        upload: &EvidenceUpload,
        key: &EvidenceKey,
        limits: &EvidenceLimits,
    ) -> Result<EvidenceInfo, StoreError> {
        let file_name = required("file name", &upload.file_name)?.to_owned();
        let incident = self.incident_unaudited(id).await?;
        if incident.path.forbids_images() {
            let declared_image =
                upload.media_type.starts_with("image/") || upload.media_type.starts_with("video/");
            if declared_image || sniff_image(&upload.bytes).is_some() {
                let actor = actor_of(account);
                let mut change = Change::new("refuse_upload", "incident", id);
                change.reason =
                    Some("image upload on a suspected child sexual abuse imagery incident");
                self.audit_only(&actor, change).await?;
                return Err(refused(
                    "no images may be uploaded to an incident of suspected child sexual abuse imagery: \
                     holding or copying such images is an offence. Leave the device isolated and record \
                     only the police reference and a written description.",
                ));
            }
        }
        if upload.bytes.is_empty() {
            return Err(StoreError::invalid("file", "the file is empty"));
        }
        if upload.bytes.len() > limits.max_bytes {
            return Err(StoreError::invalid(
                "file",
                format!(
                    "{} bytes is over the {} byte limit; attach a smaller file or a written description",
                    upload.bytes.len(),
                    limits.max_bytes
                ),
            ));
        }
        if !limits.media_types.contains(&upload.media_type) {
            return Err(StoreError::invalid(
                "file type",
                format!(
                    "`{}` is not accepted; accepted: {}",
                    upload.media_type,
                    limits.media_types.join(", ")
                ),
            ));
        }
        let sha256 = digest(&upload.bytes);
        let (nonce, sealed) = seal(key, id, &sha256, &upload.bytes)?;
        let size = i64::try_from(upload.bytes.len()).unwrap_or(i64::MAX);
        let media_type = upload.media_type.clone();
        let description = optional(&upload.description).map(str::to_owned);
        self.change_incident(account, id, "add_evidence", None, move |write, _before, actor| {
            Box::pin(async move {
                let now = crate::now();
                let row = sqlx::query(
                    "INSERT INTO incident_evidence (incident_id, file_name, media_type, size, sha256, \
                     nonce, sealed, description, uploaded_by, uploaded_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(id)
                .bind(&file_name)
                .bind(&media_type)
                .bind(size)
                .bind(&sha256)
                .bind(&nonce)
                .bind(sealed)
                .bind(&description)
                .bind(actor.as_str())
                .bind(&now)
                .fetch_one(&mut *write.tx)
                .await?;
                let evidence_id: i64 = row.try_get("id")?;
                let info = EvidenceInfo {
                    id: evidence_id,
                    incident_id: id,
                    file_name,
                    media_type,
                    size,
                    sha256,
                    description,
                    uploaded_by: actor.as_str().to_owned(),
                    uploaded_at: now,
                };
                append(
                    &mut write.tx,
                    &actor,
                    Change::new("upload", "evidence", evidence_id).after(&info),
                )
                .await?;
                Ok(info)
            })
        })
        .await
    }

    /// The evidence attached to an incident, without content.
    pub async fn evidence_list(
        &self,
        account: &Account,
        id: i64,
    ) -> Result<Vec<EvidenceInfo>, StoreError> {
        let incident = self.incident_unaudited(id).await?;
        self.audit_opening(account, &incident, "incident", id)
            .await?;
        let rows = sqlx::query(
            "SELECT id, incident_id, file_name, media_type, size, sha256, description, uploaded_by, \
             uploaded_at FROM incident_evidence WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(evidence_from_row).collect()
    }

    /// Opens a piece of evidence: checks who asks, unseals it, checks its
    /// SHA-256, and records the opening in the chain of custody.
    pub async fn open_evidence(
        &self,
        account: &Account,
        evidence_id: i64,
        key: &EvidenceKey,
        purpose: EvidencePurpose,
    ) -> Result<(EvidenceInfo, Vec<u8>), StoreError> {
        let row = sqlx::query("SELECT * FROM incident_evidence WHERE id = $1")
            .bind(evidence_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "evidence",
                key: evidence_id.to_string(),
            })?;
        let info = evidence_from_row(&row)?;
        let incident = self.incident_unaudited(info.incident_id).await?;
        let actor = actor_of(account);
        if let Err(e) = may_open(account, &incident) {
            self.audit_opening(account, &incident, "evidence", evidence_id)
                .await?;
            return Err(e);
        }
        let nonce: String = row.try_get("nonce")?;
        let sealed: Vec<u8> = row.try_get("sealed")?;
        let plain = open(
            key,
            evidence_id,
            info.incident_id,
            &info.sha256,
            &nonce,
            &sealed,
        )?;
        let action = match purpose {
            EvidencePurpose::View => "view",
            EvidencePurpose::Download => "download",
            EvidencePurpose::Export => "export",
        };
        self.audit_only(&actor, Change::new(action, "evidence", evidence_id))
            .await?;
        Ok((info, plain))
    }

    /// The chain of custody of a piece of evidence: its upload and every
    /// opening, oldest first, from the audit log.
    pub async fn evidence_custody(
        &self,
        account: &Account,
        evidence_id: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let row = sqlx::query("SELECT incident_id FROM incident_evidence WHERE id = $1")
            .bind(evidence_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "evidence",
                key: evidence_id.to_string(),
            })?;
        let incident = self.incident_unaudited(row.try_get("incident_id")?).await?;
        may_open(account, &incident)?;
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE entity = 'evidence' AND entity_id = $1 ORDER BY seq",
        )
        .bind(evidence_id.to_string())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(AuditEntry::from_row)
            .collect::<Result<_, _>>()?)
    }
}

fn evidence_from_row(row: &AnyRow) -> Result<EvidenceInfo, StoreError> {
    Ok(EvidenceInfo {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        file_name: row.try_get("file_name")?,
        media_type: row.try_get("media_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        description: row.try_get("description")?,
        uploaded_by: row.try_get("uploaded_by")?,
        uploaded_at: row.try_get("uploaded_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_evidence_opens_only_where_it_was_sealed() {
        let key = EvidenceKey::generate().unwrap();
        let plain = b"screenshot of a chat".to_vec();
        let sha = digest(&plain);
        let (nonce, sealed) = seal(&key, 7, &sha, &plain).unwrap();
        assert_ne!(sealed, plain);
        assert_eq!(open(&key, 1, 7, &sha, &nonce, &sealed).unwrap(), plain);
        // Moved to another incident, another key, a flipped bit: refused.
        assert!(open(&key, 1, 8, &sha, &nonce, &sealed).is_err());
        let other = EvidenceKey::generate().unwrap();
        assert!(open(&other, 1, 7, &sha, &nonce, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(open(&key, 1, 7, &sha, &nonce, &flipped).is_err());
    }

    #[test]
    fn images_are_recognised_by_content() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("PNG"));
        assert_eq!(sniff_image(b"\xff\xd8\xff\xe0"), Some("JPEG"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("WebP"));
        assert_eq!(sniff_image(b"%PDF-1.7"), None);
        assert_eq!(sniff_image(b""), None);
    }

    #[test]
    fn a_key_file_of_the_wrong_length_is_refused() {
        let err = EvidenceKey::from_bytes(&[0u8; 31]).unwrap_err().to_string();
        assert!(err.contains("31 bytes"), "{err}");
    }
}
