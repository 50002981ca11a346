//! Password hashing (argon2id) and strength checks (zxcvbn) for accounts
//! created from the command line: the console's own, so that the command
//! line and sign-in can never disagree about a hash.

pub use sheepdog_console::password::{check_strength, generate};

/// An argon2id hash in PHC form, with a fresh salt.
pub fn hash(password: &str) -> anyhow::Result<String> {
    Ok(sheepdog_console::password::hash(password)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_strong_and_hashes_verify_at_sign_in() {
        let password = generate();
        assert!(check_strength(&password, &[]).is_ok(), "{password}");
        let hashed = hash(&password).unwrap();
        assert!(hashed.starts_with("$argon2id$"), "{hashed}");
        assert!(sheepdog_console::password::verify(&password, &hashed));
    }
}
