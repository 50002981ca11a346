//! Random tokens and their hashes.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ConsoleError;

/// `bytes` random bytes from the operating system, as hex.
pub fn random_hex(bytes: usize) -> Result<String, ConsoleError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer)
        .map_err(|e| ConsoleError::Settings(format!("no random numbers from the system: {e}")))?;
    Ok(hex::encode(buffer))
}

/// Random bytes from the operating system.
pub fn random_bytes(bytes: usize) -> Result<Vec<u8>, ConsoleError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer)
        .map_err(|e| ConsoleError::Settings(format!("no random numbers from the system: {e}")))?;
    Ok(buffer)
}

/// The SHA-256 hash the store keeps instead of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
