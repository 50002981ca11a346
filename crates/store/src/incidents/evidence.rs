//! Evidence at rest: sealed with XChaCha20-Poly1305 under the deployment's
//! evidence key, bound to its incident and its SHA-256, so that a file moved
//! to another incident, altered in the database, or opened with another key
//! fails to open rather than showing something else.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// The key evidence is sealed with. The binary keeps it in a file of its
/// own (mode 0600) beside, not inside, the database, so a copy of the
/// database alone does not reveal evidence.
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
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|e| StoreError::invalid("evidence", e.to_string()))?;
    let aad = binding(incident_id, sha256);
    let sealed = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
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
    let broken = |problem: &str| StoreError::Corrupt {
        entity: "incident_evidence",
        problem: format!("evidence {evidence_id}: {problem}"),
    };
    let nonce = hex::decode(nonce).map_err(|_| broken("its nonce is not hex"))?;
    if nonce.len() != 24 {
        return Err(broken("its nonce is not 24 bytes"));
    }
    let aad = binding(incident_id, sha256);
    let plain = key
        .cipher()
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| {
            broken("it does not open with this evidence key, or it was altered or moved")
        })?;
    if digest(&plain) != sha256 {
        return Err(broken(
            "its SHA-256 no longer matches the one taken at upload",
        ));
    }
    Ok(plain)
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
