//! Password hashing (argon2id) and strength checks (zxcvbn). Passwords are
//! judged by how guessable they are, not by character classes.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::ConsoleError;

/// The weakest password accepted: zxcvbn's score from 0 to 4.
const MINIMUM_SCORE: u8 = 3;

/// A hash to verify against when the username is unknown, so that an
/// unknown name takes as long to refuse as a wrong password.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2hlZXBkb2dkZWNveXNhbHQ$0u6i1mDCk8oY9V5b0m0s8WwS1D3y9o3mZb1qGQ4bH2c";

/// Refuses a guessable password, saying why and what to do instead.
pub fn check_strength(password: &str, context: &[&str]) -> Result<(), String> {
    let estimate = zxcvbn::zxcvbn(password, context);
    if u8::from(estimate.score()) >= MINIMUM_SCORE {
        return Ok(());
    }
    let mut message = String::from("this password is too easy to guess");
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            message.push_str(&format!(" ({warning})"));
        }
        for suggestion in feedback.suggestions() {
            message.push_str(&format!("; {suggestion}"));
        }
    }
    message.push_str("; a few unrelated words make a strong, memorable password");
    Err(message)
}

/// An argon2id hash in PHC form, with a fresh salt.
pub fn hash(password: &str) -> Result<String, ConsoleError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ConsoleError::Hashing(e.to_string()))
}

/// Whether `password` matches the PHC-form `hash`; a malformed hash never
/// matches.
pub fn verify(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the time a real check would, for an unknown username.
pub fn verify_decoy(password: &str) {
    let _ = verify(password, DECOY_HASH);
}

/// A random password of four invented words from the operating system's
/// random source (about 55 bits), for demo accounts and generated sign-ins.
pub fn generate() -> String {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "vu", "ze", "bo", "da", "fe", "gi", "ju",
        "ly", "mo", "nu", "pe", "qu", "re", "sa", "te", "wi",
    ];
    let pick = |n: usize| OsRng.next_u32() as usize % n;
    let words: Vec<String> = (0..4)
        .map(|_| (0..3).map(|_| SYLLABLES[pick(SYLLABLES.len())]).collect())
        .collect();
    format!("{}-{}", words.join("-"), 10 + pick(90))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        let refused = check_strength("password1", &[]).unwrap_err();
        assert!(refused.contains("too easy"), "{refused}");
        assert!(check_strength("larkmoor2026", &["larkmoor"]).is_err());
        assert!(check_strength("violet tractor sandwich pebble", &[]).is_ok());
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let password = generate();
        assert!(check_strength(&password, &[]).is_ok(), "{password}");
        let hashed = hash(&password).unwrap();
        assert!(hashed.starts_with("$argon2id$"), "{hashed}");
        assert_ne!(hashed, hash(&password).unwrap());
        assert!(verify(&password, &hashed));
        assert!(!verify("not the password", &hashed));
        assert!(!verify(&password, "not a hash"));
        verify_decoy(&password);
    }
}
