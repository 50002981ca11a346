//! Name normalisation.
//!
//! Every name that enters a list or a query passes through [`normalize_name`]:
//! surrounding space is trimmed, a trailing dot is dropped, letters are lower
//! cased and internationalised names are converted to their ASCII (punycode)
//! spelling with IDNA (UTS 46). So `Bücher.Example.`, `bücher.example` and
//! `xn--bcher-kva.example` are one entry. [`display_name`] goes the other way
//! for people.

use std::borrow::Cow;

/// The longest name the DNS allows, without the trailing dot.
pub const MAX_NAME_LEN: usize = 253;
/// The longest label the DNS allows.
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a usable host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing left after trimming.
    #[error("empty name")]
    Empty,
    /// Longer than 253 characters once in ASCII form.
    #[error("name longer than 253 characters")]
    TooLong,
    /// A label is empty (two dots in a row, or a leading dot).
    #[error("empty label")]
    EmptyLabel,
    /// A label is longer than 63 characters.
    #[error("label longer than 63 characters")]
    LabelTooLong,
    /// A character that cannot appear in a host name.
    #[error("character {0:?} is not allowed in a name")]
    BadCharacter(char),
    /// IDNA conversion refused the name.
    #[error("not a valid internationalised name")]
    Idna,
}

/// Normalises a host name to the form used for storage and lookup.
///
/// Returns a borrowed string when the input is already normal (the common
/// case on the hot path), so no allocation happens then.
pub fn normalize_name(input: &str) -> Result<Cow<'_, str>, NameError> {
    // `str::trim` walks Unicode whitespace tables (a tenth of a cached
    // decision); a name that starts and ends with a visible ASCII
    // character has nothing to trim.
    let bytes = input.as_bytes();
    let trimmed = match (bytes.first(), bytes.last()) {
        (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => input,
        _ => input.trim(),
    };
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    // The hot path: one pass over a plain ASCII name.
    match scan_plain(trimmed.as_bytes()) {
        Plain::Normal => return Ok(Cow::Borrowed(trimmed)),
        Plain::NeedsLower => return Ok(Cow::Owned(trimmed.to_ascii_lowercase())),
        Plain::No => {}
    }
    if trimmed.is_ascii() {
        let needs_lower = trimmed.bytes().any(|b| b.is_ascii_uppercase());
        let is_idn = trimmed
            .split('.')
            .any(|l| l.len() >= 4 && l[..4].eq_ignore_ascii_case("xn--"));
        if !is_idn {
            check_ascii(trimmed)?;
            return Ok(if needs_lower {
                Cow::Owned(trimmed.to_ascii_lowercase())
            } else {
                Cow::Borrowed(trimmed)
            });
        }
    }
    // Internationalised (or punycode) names: let IDNA validate and convert.
    let ascii = idna::domain_to_ascii(trimmed).map_err(|_| NameError::Idna)?;
    let ascii = ascii.strip_suffix('.').map(str::to_owned).unwrap_or(ascii);
    if ascii.is_empty() {
        return Err(NameError::Empty);
    }
    check_ascii(&ascii)?;
    Ok(Cow::Owned(ascii))
}

/// The last `bytes.len() % 8` bytes of a name as a little-endian word,
/// zero-padded: the tail that word-at-a-time hashes fold in last.
///
/// Equal to copying the tail into a zeroed `[u8; 8]`, without the
/// variable-length `memcpy` call that costs a tenth of a cached decision:
/// names of 8 bytes or more read their last full word and shift the
/// already-hashed bytes out.
#[inline]
pub fn tail_word(bytes: &[u8]) -> u64 {
    let rest = bytes.len() % 8;
    if rest == 0 {
        return 0;
    }
    if let Some(last) = bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(last);
        return u64::from_le_bytes(w) >> (8 * (8 - rest));
    }
    bytes
        .iter()
        .enumerate()
        .fold(0, |w, (i, &b)| w | (u64::from(b) << (8 * i)))
}

enum Plain {
    /// Already normal.
    Normal,
    /// Valid, with upper case letters.
    NeedsLower,
    /// Not a plain valid ASCII name (or a punycode one): take the full path.
    No,
}

/// Byte classes for [`scan_plain`]: one table load per byte instead of a
/// chain of range comparisons.
const PLAIN: u8 = 0;
const UPPER: u8 = 1;
const DOT: u8 = 2;
const OTHER: u8 = 3;
static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => PLAIN,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            _ => OTHER,
        };
        c += 1;
    }
    t
};

/// Whether `b[start..end]` is a label the fast path accepts: 1 to 63
/// bytes, not starting with `xn--` (punycode goes through IDNA).
#[inline]
fn plain_label(b: &[u8], start: usize, end: usize) -> bool {
    let len = end.wrapping_sub(start);
    (1..=MAX_LABEL_LEN).contains(&len)
        && !b
            .get(start..start + 4)
            .is_some_and(|p| len >= 4 && p.eq_ignore_ascii_case(b"xn--"))
}

/// One pass over a name: valid length, labels of 1 to 63 letters, digits,
/// `-` or `_`, and no `xn--` label. Anything else goes through the full
/// checks, which give the precise error.
#[inline]
fn scan_plain(b: &[u8]) -> Plain {
    if b.len() > MAX_NAME_LEN {
        return Plain::No;
    }
    let mut classes = 0u8;
    let mut label_start = 0;
    for (i, &c) in b.iter().enumerate() {
        let class = CLASS[usize::from(c)];
        classes |= 1 << class;
        if class == DOT {
            if !plain_label(b, label_start, i) {
                return Plain::No;
            }
            label_start = i + 1;
        }
    }
    if classes & (1 << OTHER) != 0 || !plain_label(b, label_start, b.len()) {
        return Plain::No;
    }
    if classes & (1 << UPPER) != 0 {
        Plain::NeedsLower
    } else {
        Plain::Normal
    }
}

/// Checks an ASCII name's length, labels and characters.
///
/// Letters, digits, `-` and `_` are accepted (underscores appear in real
/// service names and in lists, so refusing them would only lose entries).
fn check_ascii(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(NameError::BadCharacter(c));
        }
    }
    Ok(())
}

/// The Unicode spelling of a stored (ASCII) name, for block pages and reports.
/// Falls back to the ASCII spelling when the name does not decode.
pub fn display_name(ascii: &str) -> String {
    let (unicode, result) = idna::domain_to_unicode(ascii);
    if result.is_ok() {
        unicode
    } else {
        ascii.to_owned()
    }
}

/// Writes the labels of `name` in reverse order into `out` (`www.example.com`
/// becomes `com.example.www`). Reversed names sort so that a name and all
/// its subdomains share a prefix, which is what suffix matching walks.
pub fn reverse_labels_into(name: &str, out: &mut Vec<u8>) {
    out.clear();
    let mut first = true;
    for label in name.rsplit('.') {
        if !first {
            out.push(b'.');
        }
        first = false;
        out.extend_from_slice(label.as_bytes());
    }
}

/// [`reverse_labels_into`] into a new string.
pub fn reverse_labels(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len());
    reverse_labels_into(name, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lowercases_and_strips_trailing_dot() {
        assert_eq!(
            normalize_name("WWW.Example.COM.").unwrap(),
            "www.example.com"
        );
        assert!(matches!(
            normalize_name("example.com").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn unicode_and_punycode_are_the_same_name() {
        let a = normalize_name("Bücher.example").unwrap();
        let b = normalize_name("xn--bcher-kva.example").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "xn--bcher-kva.example");
        assert_eq!(display_name(&a), "bücher.example");
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(normalize_name(""), Err(NameError::Empty));
        assert_eq!(normalize_name("."), Err(NameError::Empty));
        assert_eq!(normalize_name("a..b"), Err(NameError::EmptyLabel));
        assert!(normalize_name("exa mple.com").is_err());
        assert!(normalize_name("example.com/path").is_err());
        assert_eq!(
            normalize_name(&format!("{}.com", "a".repeat(64))),
            Err(NameError::LabelTooLong)
        );
    }

    #[test]
    fn reverses_labels() {
        assert_eq!(reverse_labels("www.example.com"), "com.example.www");
        assert_eq!(reverse_labels("com"), "com");
    }

    proptest! {
        #[test]
        fn tail_word_is_the_zero_padded_tail(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let rest = &bytes[bytes.len() - bytes.len() % 8..];
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            prop_assert_eq!(tail_word(&bytes), u64::from_le_bytes(w));
        }

        #[test]
        fn fast_path_agrees_with_full_checks(s in "[a-zA-Z0-9_.-]{0,70}|(xn--|XN--)?[a-z.-]{0,20}") {
            let fast = normalize_name(&s);
            let trimmed = s.trim().strip_suffix('.').unwrap_or(s.trim());
            let full = if trimmed.is_empty() {
                Err(NameError::Empty)
            } else if trimmed.split('.').any(|l| l.len() >= 4 && l[..4].eq_ignore_ascii_case("xn--")) {
                idna::domain_to_ascii(trimmed)
                    .map_err(|_| NameError::Idna)
                    .and_then(|a| {
                        let a = a.strip_suffix('.').map(str::to_owned).unwrap_or(a);
                        if a.is_empty() { return Err(NameError::Empty); }
                        check_ascii(&a).map(|()| a)
                    })
            } else {
                check_ascii(trimmed).map(|()| trimmed.to_ascii_lowercase())
            };
            prop_assert_eq!(fast.map(|c| c.into_owned()), full);
        }

        #[test]
        fn surrounding_space_is_trimmed(s in "[ \t\u{a0}\u{3000}]{0,2}[a-zA-Z.]{0,12}[ \t\u{a0}\u{3000}]{0,2}") {
            let expected = normalize_name(s.trim()).map(|c| c.into_owned());
            prop_assert_eq!(normalize_name(&s).map(|c| c.into_owned()), expected);
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = normalize_name(&s);
        }

        #[test]
        fn normalising_is_idempotent(s in "[a-zA-Z0-9\u{e0}-\u{ff}\u{4e00}-\u{4e10}.-]{1,40}") {
            if let Ok(once) = normalize_name(&s) {
                let twice = normalize_name(&once).unwrap();
                prop_assert_eq!(once.as_ref(), twice.as_ref());
            }
        }

        #[test]
        fn idna_equivalence(label in "[a-z\u{e0}-\u{fc}]{1,12}", tld in "[a-z]{2,6}") {
            let unicode = format!("{label}.{tld}");
            if let Ok(ascii) = normalize_name(&unicode) {
                // The punycode spelling normalises to itself ...
                let again = normalize_name(&ascii).unwrap();
                prop_assert_eq!(ascii.as_ref(), again.as_ref());
                // ... and upper case Unicode is the same entry.
                let upper_text = unicode.to_uppercase();
                let upper = normalize_name(&upper_text).unwrap();
                prop_assert_eq!(ascii.as_ref(), upper.as_ref());
                // And it reads back as the Unicode spelling.
                prop_assert_eq!(display_name(&ascii), unicode);
            }
        }
    }
}
