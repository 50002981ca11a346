//! A fast hasher for the small string maps a decision looks up (group
//! names, local allow/deny names).
//!
//! The standard SipHash protects maps whose *keys* an attacker chooses;
//! here the keys come from the school's own policy document and a query
//! only looks them up, so a multiply-rotate hash (FxHash-style) is safe and
//! several times faster on short names.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A string-keyed map with [`FastHasher`].
pub(crate) type FastMap<V> = HashMap<String, V, BuildHasherDefault<FastHasher>>;

/// FxHash-style hasher: 8 bytes at a time, rotate, xor, multiply.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder().len();
        if rest != 0 {
            self.add(sheepdog_lists::name::tail_word(bytes) ^ ((rest as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Spread the high bits down: hashbrown uses the top seven bits for
        // its control bytes and the low bits for the bucket.
        self.0 ^ (self.0 >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinguishes_names() {
        let mut m: FastMap<u32> = FastMap::default();
        for i in 0..1000u32 {
            m.insert(format!("n{i}.example"), i);
        }
        for i in 0..1000u32 {
            assert_eq!(m.get(&format!("n{i}.example")), Some(&i));
        }
        assert_eq!(m.get("example"), None);
    }
}
