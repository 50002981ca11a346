//! The name index: a hashed table of normalised names, memory-mappable.
//!
//! A stored name is kept as its *fingerprint*: the low 48 bits of
//! SipHash-2-4 of the name under a 128-bit key drawn at random for each
//! build and kept in the section's header. Entries sit in a byte *blob* ordered by a fast
//! 64-bit hash of the name; a bucket array indexed by the top bits of that
//! hash gives where each bucket's entries start in the blob, and a 32-bit
//! filter of the names in the bucket (two bits per name, from low hash
//! bits). Looking a name up hashes it and reads its bucket entry; if the
//! filter rules the name out (about 98% of absent names), that is the only
//! memory read. Otherwise it fingerprints the query and compares it with
//! the few fingerprints of the bucket (on average two or three, usually one
//! cache line).
//!
//! Why fingerprints and not the names themselves: names were three
//! quarters of a 1-million-name index (29 of 35 MB), and the index is
//! what a DNS server touches. A stored name is always found (its own
//! fingerprint is in its own bucket). An absent name is taken for a
//! stored one only if its fingerprint equals one of its bucket's: about
//! 3 in 2^48 (one in 10^14) per lookup that passes the filter, which at a
//! billion lookups a day is once in tens of thousands of years. 48 bits,
//! not 64: two bytes less per name is 2 MB less per million names for a
//! DNS server to keep resident. The key is secret and
//! new for every build, so such a name cannot be searched for offline:
//! nobody can make a name of their choosing match an allow rule. A build
//! whose bucket holds two equal fingerprints is redone with another key.
//! The rule shown for a match is the matching suffix of the query, which
//! is the stored name.
//!
//! Suffix matching probes each label suffix of the query (`www.example.com`,
//! `example.com`, `com`); a rule for `example.com` is found for
//! `www.example.com`, never for `badexample.com`.
//!
//! Layout (little-endian), one section of the snapshot file:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `SDNAMES3` |
//! | 8..12 | bucket bits `b` (1..=31) |
//! | 12..16 | zero |
//! | 16..24 | number of names |
//! | 24..32 | blob length |
//! | 32..64 | SHA-256 of everything from byte 64 |
//! | 64..80 | the fingerprint key |
//! | 80.. | `2^b + 1` bucket entries: offset into the blob (u32), filter (u32); the last has the blob length and filter 0 |
//! | then | the blob: per name, its fingerprint (6 bytes), its membership set id (LEB128) |

use std::hash::Hasher;

use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher24;

use crate::store::Backing;

/// `SDNAMES2` held 64-bit fingerprints (never released).
const MAGIC: &[u8; 8] = b"SDNAMES3";
const HEADER: usize = 80;
/// Where the checksummed part starts: the key and the body.
const SUMMED: usize = 64;
/// Bytes per blob entry before the set id.
const PRINT: usize = 6;
/// The fingerprint bits kept: `PRINT` bytes.
const PRINT_MASK: u64 = (1 << (PRINT * 8)) - 1;
/// Bytes per bucket entry.
const ENTRY: usize = 8;

/// The bucket filter bits of a hash: two of 32, from bits the bucket
/// number does not use.
#[inline]
fn filter_bits(hash: u64) -> u32 {
    (1u32 << (hash & 31)) | (1u32 << ((hash >> 5) & 31))
}

/// The hash that orders and buckets names. Fixed (it is part of the file
/// format); quality matters only for bucket lengths, never for
/// correctness, since matches are confirmed byte for byte.
pub(crate) fn name_hash(bytes: &[u8]) -> u64 {
    const K0: u64 = 0x9E37_79B9_7F4A_7C15;
    const K1: u64 = 0xA076_1D64_78BD_642F;
    const K2: u64 = 0xE703_7ED1_A0B4_28DB;
    fn fold(a: u64, b: u64) -> u64 {
        let r = u128::from(a) * u128::from(b);
        (r as u64) ^ ((r >> 64) as u64)
    }
    let mut h = fold((bytes.len() as u64) ^ K0, K1);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = fold(h ^ u64::from_le_bytes(w), K2);
    }
    if !chunks.remainder().is_empty() {
        h = fold(h ^ crate::name::tail_word(bytes), K1);
    }
    fold(h ^ (h >> 29), K0)
}

fn bucket_of(hash: u64, bits: u32) -> usize {
    (hash >> (64 - bits)) as usize
}

/// The key a build fingerprints its names with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrintKey([u8; 16]);

impl PrintKey {
    /// A fresh key from the operating system's random source.
    pub(crate) fn random() -> Result<Self, String> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(|e| format!("no random key for the name index: {e}"))?;
        Ok(PrintKey(key))
    }

    fn halves(self) -> (u64, u64) {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&self.0[..8]);
        k1.copy_from_slice(&self.0[8..]);
        (u64::from_le_bytes(k0), u64::from_le_bytes(k1))
    }
}

/// A name's fingerprint under `key` halves.
#[inline]
fn fingerprint((k0, k1): (u64, u64), name: &[u8]) -> u64 {
    let mut h = SipHasher24::new_with_keys(k0, k1);
    h.write(name);
    h.finish() & PRINT_MASK
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Some(u64::from_le_bytes(w))
}

/// Reads one blob entry at `at`: (fingerprint, set id, next position).
fn read_entry(blob: &[u8], at: usize) -> Option<(u64, u64, usize)> {
    let b = blob.get(at..at.checked_add(PRINT)?)?;
    let mut w = [0u8; 8];
    w[..PRINT].copy_from_slice(b);
    let print = u64::from_le_bytes(w);
    let mut pos = at + PRINT;
    let mut set = 0u64;
    let mut shift = 0;
    loop {
        let b = *blob.get(pos)?;
        pos += 1;
        set |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 35 {
            return None;
        }
    }
    Some((print, set, pos))
}

/// Why a name could not be added to a [`TableBuilder`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// Its fingerprint equals another name's in the same bucket: build
    /// again with another key.
    SamePrint,
    /// Names out of order, or an index too large.
    Invalid(String),
}

/// Builds a table from names sorted by [`name_hash`] (each name once) and
/// their membership set ids.
#[derive(Debug)]
pub(crate) struct TableBuilder {
    bits: u32,
    key: PrintKey,
    halves: (u64, u64),
    /// (offset, filter) per bucket.
    offsets: Vec<(u32, u32)>,
    blob: Vec<u8>,
    next_bucket: usize,
    names: u64,
    /// The fingerprints of the bucket being filled.
    bucket_prints: Vec<u64>,
}

impl TableBuilder {
    /// A builder for about `names` names, fingerprinted under `key`.
    pub(crate) fn new(names: usize, key: PrintKey) -> Self {
        // Two to three names per bucket on average.
        let want = (names / 3).max(2);
        let bits = (usize::BITS - (want - 1).leading_zeros()).clamp(1, 31);
        let buckets = 1usize << bits;
        TableBuilder {
            bits,
            key,
            halves: key.halves(),
            offsets: Vec::with_capacity(buckets + 1),
            blob: Vec::with_capacity(names.saturating_mul(PRINT + 1)),
            next_bucket: 0,
            names: 0,
            bucket_prints: Vec::new(),
        }
    }

    /// Adds a name; names must come in [`name_hash`] order.
    pub(crate) fn push(&mut self, name: &[u8], hash: u64, set: u64) -> Result<(), PushError> {
        let bucket = bucket_of(hash, self.bits);
        if bucket + 1 < self.next_bucket {
            return Err(PushError::Invalid("names not in hash order".to_owned()));
        }
        let here = u32::try_from(self.blob.len())
            .map_err(|_| PushError::Invalid("name index larger than 4 GiB".to_owned()))?;
        if self.next_bucket <= bucket {
            self.bucket_prints.clear();
        }
        while self.next_bucket <= bucket {
            self.offsets.push((here, 0));
            self.next_bucket += 1;
        }
        if let Some(last) = self.offsets.last_mut() {
            last.1 |= filter_bits(hash);
        }
        let print = fingerprint(self.halves, name);
        if self.bucket_prints.contains(&print) {
            return Err(PushError::SamePrint);
        }
        self.bucket_prints.push(print);
        self.blob.extend_from_slice(&print.to_le_bytes()[..PRINT]);
        let mut v = set;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.blob.push(b);
                break;
            }
            self.blob.push(b | 0x80);
        }
        self.names += 1;
        Ok(())
    }

    /// The finished section, written straight into resident memory.
    pub(crate) fn finish(mut self) -> Result<Backing, String> {
        let end = u32::try_from(self.blob.len())
            .map_err(|_| "name index larger than 4 GiB".to_owned())?;
        let buckets = 1usize << self.bits;
        while self.offsets.len() <= buckets {
            self.offsets.push((end, 0));
        }
        let table = HEADER + self.offsets.len() * ENTRY;
        let len = table + self.blob.len();
        let backing = Backing::resident_with(len, |out| {
            out[..8].copy_from_slice(MAGIC);
            out[8..12].copy_from_slice(&self.bits.to_le_bytes());
            out[12..16].copy_from_slice(&0u32.to_le_bytes());
            out[16..24].copy_from_slice(&self.names.to_le_bytes());
            out[24..32].copy_from_slice(&(self.blob.len() as u64).to_le_bytes());
            out[64..80].copy_from_slice(&self.key.0);
            for (entry, (offset, filter)) in out[HEADER..table]
                .chunks_exact_mut(ENTRY)
                .zip(&self.offsets)
            {
                entry[..4].copy_from_slice(&offset.to_le_bytes());
                entry[4..].copy_from_slice(&filter.to_le_bytes());
            }
            out[table..].copy_from_slice(&self.blob);
            let digest = Sha256::digest(&out[SUMMED..]);
            out[32..64].copy_from_slice(&digest);
        });
        Ok(backing)
    }
}

/// A name index over owned or memory-mapped bytes.
#[derive(Debug)]
pub(crate) struct NameTable {
    bytes: Backing,
    bits: u32,
    blob_start: usize,
    halves: (u64, u64),
}

impl NameTable {
    /// Checks the header and section sizes (cheap: the body is not read;
    /// [`NameTable::verify`] reads it all).
    pub(crate) fn new(bytes: Backing) -> Result<Self, String> {
        let b = bytes.as_ref();
        if b.len() < HEADER || &b[..8] != MAGIC {
            return Err("not a name index of this version".to_owned());
        }
        let bits = read_u32(b, 8).unwrap_or(0);
        if !(1..=31).contains(&bits) || read_u32(b, 12) != Some(0) {
            return Err("bad bucket count".to_owned());
        }
        let blob_len = read_u64(b, 24).unwrap_or(u64::MAX);
        let blob_start = HEADER + ((1usize << bits) + 1) * ENTRY;
        if (blob_start as u64).checked_add(blob_len) != Some(b.len() as u64) {
            return Err("name index truncated or padded".to_owned());
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&b[64..80]);
        let halves = PrintKey(key).halves();
        Ok(NameTable {
            bytes,
            bits,
            blob_start,
            halves,
        })
    }

    /// The section bytes, as written to a file.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Whether the bytes come from a mapped file.
    pub(crate) fn is_mapped(&self) -> bool {
        self.bytes.is_mapped()
    }

    /// The membership set id of a stored name, if it is stored. Two
    /// dependent reads (bucket offsets, then the bucket's names); no
    /// allocation.
    #[cfg(test)]
    pub(crate) fn find(&self, name: &[u8]) -> Option<u64> {
        let bytes = self.bytes();
        let range = self.locate_in(bytes, name);
        self.scan_in(bytes, range, name)
    }

    /// The section bytes, for [`NameTable::locate_in`] and
    /// [`NameTable::scan_in`]: a lookup of several suffixes resolves the
    /// backing once instead of once per read.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// First step of a lookup: where the name's bucket is in the blob, or
    /// an empty range when the bucket's filter rules the name out. Lookups
    /// of several names run this for all of them first, so that their
    /// memory reads overlap instead of queueing one behind another.
    #[inline]
    pub(crate) fn locate_in(&self, bytes: &[u8], name: &[u8]) -> (u32, u32) {
        let hash = name_hash(name);
        let at = HEADER + bucket_of(hash, self.bits) * ENTRY;
        let want = filter_bits(hash);
        // One bounds check for the entry and the next one's offset.
        match bytes.get(at..at + ENTRY + 4) {
            Some(&[s0, s1, s2, s3, f0, f1, f2, f3, e0, e1, e2, e3]) => {
                let filter = u32::from_le_bytes([f0, f1, f2, f3]);
                if filter & want == want {
                    (
                        u32::from_le_bytes([s0, s1, s2, s3]),
                        u32::from_le_bytes([e0, e1, e2, e3]),
                    )
                } else {
                    (0, 0)
                }
            }
            _ => (0, 0),
        }
    }

    /// Second step: compares the name's fingerprint with those of its
    /// bucket (computed only when the filter let the name through).
    #[inline]
    pub(crate) fn scan_in(
        &self,
        bytes: &[u8],
        (start, end): (u32, u32),
        name: &[u8],
    ) -> Option<u64> {
        if start >= end {
            return None;
        }
        let blob = bytes.get(self.blob_start..)?;
        let bucket = blob.get(..end as usize)?;
        let want = fingerprint(self.halves, name);
        let mut pos = start as usize;
        while pos < bucket.len() {
            let (print, set, next) = read_entry(bucket, pos)?;
            if print == want {
                return Some(set);
            }
            pos = next;
        }
        None
    }

    /// Reads the whole section: checksum, bucket order and every entry.
    pub(crate) fn verify(&self, sets: usize) -> Result<(), String> {
        let b = self.bytes.as_ref();
        if Sha256::digest(&b[SUMMED..]).as_slice() != &b[32..64] {
            return Err("name index checksum does not match".to_owned());
        }
        let blob = &b[self.blob_start..];
        let buckets = 1usize << self.bits;
        let mut names = 0u64;
        let mut prev_end = 0usize;
        for i in 0..buckets {
            let at = HEADER + i * ENTRY;
            let (Some(start), Some(filter), Some(end)) = (
                read_u32(b, at),
                read_u32(b, at + 4),
                read_u32(b, at + ENTRY),
            ) else {
                return Err("bucket table truncated".to_owned());
            };
            let (start, end) = (start as usize, end as usize);
            if start != prev_end || end < start || end > blob.len() {
                return Err(format!("bucket {i} out of order"));
            }
            let mut pos = start;
            while pos < end {
                let Some((_, set, next)) = read_entry(&blob[..end], pos) else {
                    return Err(format!("bad entry in bucket {i}"));
                };
                if filter == 0 {
                    return Err(format!("bucket {i} has names and an empty filter"));
                }
                if set as usize >= sets {
                    return Err("membership set out of range".to_owned());
                }
                names += 1;
                pos = next;
            }
            prev_end = end;
        }
        if prev_end != blob.len() {
            return Err("bytes after the last bucket".to_owned());
        }
        if read_u64(b, 16) != Some(names) {
            return Err("name count does not match".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[(&str, u64)]) -> NameTable {
        let mut v: Vec<(u64, &str, u64)> = names
            .iter()
            .map(|(n, s)| (name_hash(n.as_bytes()), *n, *s))
            .collect();
        v.sort();
        let mut b = TableBuilder::new(v.len(), PrintKey::random().unwrap());
        for (h, n, s) in v {
            b.push(n.as_bytes(), h, s).unwrap();
        }
        NameTable::new(b.finish().unwrap()).unwrap()
    }

    #[test]
    fn finds_exactly_the_stored_names() {
        let names: Vec<String> = (0..5000).map(|i| format!("n{i}.example")).collect();
        let pairs: Vec<(&str, u64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u64 * 37))
            .collect();
        let t = table(&pairs);
        t.verify(usize::MAX).unwrap();
        for (n, s) in &pairs {
            assert_eq!(t.find(n.as_bytes()), Some(*s));
        }
        assert_eq!(t.find(b"n5000.example"), None);
        assert_eq!(t.find(b"example"), None);
        assert_eq!(t.find(b""), None);
    }

    #[test]
    fn one_name_and_damage() {
        let t = table(&[("a", 0)]);
        assert_eq!(t.find(b"a"), Some(0));
        // The last entry is the fingerprint (8 bytes), then the set id.
        let mut bytes = t.as_bytes().to_vec();
        let print = bytes.len() - 2;
        bytes[print] ^= 1;
        let damaged = NameTable::new(Backing::Owned(bytes)).unwrap();
        assert!(damaged.verify(1).is_err());
        assert_eq!(damaged.find(b"a"), None);
        // The key is under the checksum too.
        let mut bytes = t.as_bytes().to_vec();
        bytes[70] ^= 1;
        let damaged = NameTable::new(Backing::Owned(bytes)).unwrap();
        assert!(damaged.verify(1).is_err());
        assert_eq!(damaged.find(b"a"), None);
        assert!(NameTable::new(Backing::Owned(b"SDNAMES1".to_vec())).is_err());
    }

    #[test]
    fn a_fingerprint_twice_in_a_bucket_asks_for_another_key() {
        let mut b = TableBuilder::new(4, PrintKey::random().unwrap());
        let hash = name_hash(b"same.example");
        b.push(b"same.example", hash, 0).unwrap();
        assert_eq!(b.push(b"same.example", hash, 1), Err(PushError::SamePrint));
    }

    #[test]
    fn each_build_has_its_own_key_and_finds_the_same_names() {
        let pairs = [("a.example", 0), ("b.example", 1), ("example", 2)];
        let (one, two) = (table(&pairs), table(&pairs));
        assert_ne!(one.as_bytes(), two.as_bytes());
        for t in [&one, &two] {
            for (n, s) in pairs {
                assert_eq!(t.find(n.as_bytes()), Some(s));
            }
            assert_eq!(t.find(b"c.example"), None);
        }
    }
}
