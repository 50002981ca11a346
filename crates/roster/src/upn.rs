//! Unique pupil numbers.
//!
//! A UPN is 13 characters: a check letter, then the local authority's
//! 3-digit code, the establishment's 4-digit number, 2 digits of the year of
//! allocation and a 3-character serial. A temporary UPN ends in a letter.
//! The check letter is the weighted sum of characters 2 to 13 (weights 2 to
//! 13, letters counted by their place in [`LETTERS`]) modulo 23, as the DfE
//! specifies, so a mistyped digit is caught on import.

/// The 23 letters a check character can be (I, O and S are left out).
pub const LETTERS: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";

/// Why a text is not a UPN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpnError {
    #[error("a UPN has 13 characters, this has {0}")]
    Length(usize),
    #[error("characters 2 to 12 of a UPN are digits")]
    NotDigits,
    #[error("the last character of a UPN is a digit, or a letter for a temporary UPN")]
    BadLast,
    #[error("the check letter should be {expected}, not {found}: a character is mistyped")]
    CheckLetter { expected: char, found: char },
}

/// The check letter for the 12 characters after it, if they are well formed.
pub fn check_letter(body: &str) -> Result<char, UpnError> {
    let bytes = body.as_bytes();
    if bytes.len() != 12 {
        return Err(UpnError::Length(bytes.len() + 1));
    }
    let mut sum = 0usize;
    for (index, &byte) in bytes.iter().enumerate() {
        let value = if index < 11 {
            if !byte.is_ascii_digit() {
                return Err(UpnError::NotDigits);
            }
            usize::from(byte - b'0')
        } else if byte.is_ascii_digit() {
            usize::from(byte - b'0')
        } else {
            LETTERS
                .iter()
                .position(|&l| l == byte)
                .ok_or(UpnError::BadLast)?
        };
        sum += value * (index + 2);
    }
    Ok(char::from(LETTERS[sum % 23]))
}

/// Checks a UPN, returning it in capitals.
pub fn validate(text: &str) -> Result<String, UpnError> {
    let upn = text.trim().to_ascii_uppercase();
    let chars = upn.chars().count();
    if chars != 13 || !upn.is_ascii() {
        return Err(UpnError::Length(chars));
    }
    let (first, body) = upn.split_at(1);
    let expected = check_letter(body)?;
    let found = first.chars().next().unwrap_or(' ');
    if found != expected {
        return Err(UpnError::CheckLetter { expected, found });
    }
    Ok(upn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn computed_check_letters_validate() {
        let body = "999123426001";
        let letter = check_letter(body).unwrap();
        assert_eq!(
            validate(&format!("{letter}{body}")).unwrap(),
            format!("{letter}{body}")
        );
        let lower = format!("{}{body}", letter.to_ascii_lowercase());
        assert!(validate(&lower).is_ok());
    }

    #[test]
    fn a_mistyped_digit_is_caught() {
        let body = "999123426001";
        let letter = check_letter(body).unwrap();
        let typo = format!("{letter}999123426002");
        assert!(matches!(validate(&typo), Err(UpnError::CheckLetter { .. })));
        assert_eq!(validate("A12"), Err(UpnError::Length(3)));
        assert_eq!(validate("A99912342600X1"), Err(UpnError::Length(14)));
        assert_eq!(validate("A9991234X6001"), Err(UpnError::NotDigits));
    }

    #[test]
    fn temporary_upns_end_in_a_letter() {
        let body = "99912342600A";
        let letter = check_letter(body).unwrap();
        assert!(validate(&format!("{letter}{body}")).is_ok());
        assert_eq!(check_letter("99912342600I"), Err(UpnError::BadLast));
    }

    proptest! {
        #[test]
        fn validate_never_panics(text in "\\PC{0,20}") {
            let _ = validate(&text);
        }

        #[test]
        fn every_single_digit_change_is_caught(digits in "[0-9]{12}", place in 0usize..11, step in 1u8..10) {
            let letter = check_letter(&digits).unwrap();
            let mut changed = digits.clone().into_bytes();
            changed[place] = b'0' + (changed[place] - b'0' + step) % 10;
            let changed = String::from_utf8(changed).unwrap();
            let candidate = format!("{letter}{changed}");
            prop_assert!(validate(&candidate).is_err());
        }
    }
}
