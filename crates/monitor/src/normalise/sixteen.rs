//! The step over plain prose sixteen bytes at a time, with SSE2, which
//! every x86-64 processor has: the same run and the same findings as
//! [`super::plain_shape_words`], which does eight bytes a step in a
//! `u64` and is what other processors use.
//!
//! A step costs about as many instructions as an eight-byte one (the
//! byte tests are one instruction each here, where the word needs a few
//! for each to keep its additions from carrying), so it halves the steps
//! of a run: most runs in a search or a title are longer than eight
//! bytes. The findings are kept as masks of one bit a byte (bit `i` for
//! byte `i`), so the shifts that relate a byte to the one before it are
//! by one bit, not eight. `safe_arch` wraps the intrinsics, so the crate
//! keeps `forbid(unsafe_code)`.

use safe_arch::{
    bitand_m128i, bitandnot_m128i, bitor_m128i, byte_shl_imm_u128_m128i, cmp_eq_mask_i8_m128i,
    cmp_gt_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i, m128i, move_mask_i8_m128i,
    set_splat_i8_m128i, store_unaligned_m128i,
};

use super::{Carried, PlainShape};

/// Every byte of a step.
const ALL: u32 = 0xffff;

fn splat(byte: u8) -> m128i {
    set_splat_i8_m128i(byte as i8)
}

/// The fewer than sixteen bytes of `input` from `at` on, padded with
/// zeros: when `input` has sixteen bytes, by one load of its last sixteen
/// shifted down.
#[inline(always)]
fn tail_block(input: &[u8], at: usize) -> m128i {
    let rest = input.len().saturating_sub(at);
    if rest == 0 {
        return m128i::from(0u128);
    }
    let mut block = [0u8; 16];
    match input
        .len()
        .checked_sub(16)
        .and_then(|from| input.get(from..))
    {
        Some(last) => {
            block.copy_from_slice(last);
            m128i::from(u128::from_le_bytes(block) >> (8 * (16 - rest)))
        }
        None => {
            for (to, &from) in block.iter_mut().zip(input.get(at..).unwrap_or_default()) {
                *to = from;
            }
            load_unaligned_m128i(&block)
        }
    }
}

/// See [`super::plain_shape_words`], whose contract this keeps exactly.
///
/// Inlined into the normaliser's loop: out of line, its call, the
/// registers it saves and the shape returned through memory cost some
/// sixty instructions a run.
#[inline(always)]
pub(super) fn plain_shape(
    input: &[u8],
    from: usize,
    carried: Carried,
    text: &mut Vec<u8>,
) -> PlainShape {
    let bytes = input.get(from..).unwrap_or_default();
    let at = text.len();
    let mut n = 0;
    // The last step's findings for its last bytes, moved to where this
    // step's shifted masks expect them: whether the byte before was a
    // separator, the byte before (lower-cased) in lane 0, whether it
    // equalled the one before it, and whether the two before were
    // separators (bits 0 and 1, for bytes -2 and -1).
    let mut carry = 0u32;
    let mut carry_byte = u128::from(carried.letter);
    let mut carry_equal = u32::from(carried.twice);
    let mut carry_space = if carried.word_start { 0b10 } else { 0 };
    let mut stretched = 0u32;
    let mut single = 0u32;
    let mut last_spaces = (0, 0u32);
    let mut block = [0u8; 16];
    loop {
        let v = match bytes.get(n..n + 16) {
            Some(chunk) => {
                block.copy_from_slice(chunk);
                load_unaligned_m128i(&block)
            }
            // The last bytes, padded with zeros, which end the run.
            None => tail_block(input, from + n),
        };
        // Letters lower-cased by setting 0x20, which takes no other byte
        // into `a`..=`z`; bytes from 0x80 are negative and never above
        // 0x60. Separators become 0x20 (' ') and 0x2a ('\n'), and then
        // both 0x20 by clearing 0x0a.
        let x = bitor_m128i(v, splat(0x20));
        let letters = bitand_m128i(
            cmp_gt_mask_i8_m128i(x, splat(0x60)),
            cmp_lt_mask_i8_m128i(x, splat(0x7b)),
        );
        let separators = bitor_m128i(
            cmp_eq_mask_i8_m128i(v, splat(b' ')),
            cmp_eq_mask_i8_m128i(v, splat(b'\n')),
        );
        let lower = bitandnot_m128i(bitand_m128i(separators, splat(0x0a)), x);
        store_unaligned_m128i(&mut block, lower);
        text.extend_from_slice(&block);
        let letters = move_mask_i8_m128i(letters) as u32;
        let spaces = move_mask_i8_m128i(separators) as u32;
        let repeated = spaces & ((spaces << 1) | carry);
        let stop = (!(letters | spaces) | repeated) & ALL;
        // The bytes before the stop (all of them when there is none).
        let valid = (stop & stop.wrapping_neg()).wrapping_sub(1) & ALL;
        // Lower-cased letters are equal only to the same letter;
        // separators are equal to each other, but two in a row stop the
        // run, so none of those is before the stop.
        let before = bitor_m128i(byte_shl_imm_u128_m128i::<1>(lower), m128i::from(carry_byte));
        let equal = move_mask_i8_m128i(cmp_eq_mask_i8_m128i(lower, before)) as u32 & valid;
        stretched |= equal & ((equal << 1) | carry_equal);
        let space = spaces & valid;
        single |= space & ((space << 2) | carry_space);
        if space != 0 {
            last_spaces = (n, space);
        }
        if stop != 0 {
            let k = stop.trailing_zeros();
            let len = n + k as usize;
            text.truncate(at + len);
            let (step, spaces) = last_spaces;
            // Whether the byte before the stop (this step's, or the one
            // carried into it) is a separator, and whether it equals the
            // letter before it.
            let ends_spaced = (((space << 1) | (carry_space >> 1)) >> k) & 1;
            let ends_twice = (((equal << 1) | carry_equal) >> k) & 1;
            return PlainShape {
                len,
                stretched: stretched != 0,
                single: single != 0,
                last_space: (spaces != 0).then(|| step + (31 - spaces.leading_zeros() as usize)),
                // A separator is never equal to the byte before it here.
                run: 1 + ends_twice - ends_spaced,
            };
        }
        carry = spaces >> 15;
        carry_byte = u128::from(block[15]);
        carry_equal = equal >> 15;
        carry_space = space >> 14;
        n += 16;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{plain_shape_words, Carried};
    use super::plain_shape;

    /// Both steps on `input` from `from`, as what they return and what
    /// they copied after a byte already in the text.
    fn both(input: &[u8], from: usize, carried: Carried) -> [(String, Vec<u8>); 2] {
        let run = |step: fn(&[u8], usize, Carried, &mut Vec<u8>) -> super::PlainShape| {
            let mut text = b"x".to_vec();
            let shape = step(input, from, carried, &mut text);
            (format!("{shape:?}"), text)
        };
        [run(plain_shape), run(plain_shape_words)]
    }

    /// Bytes that end, continue or collapse a run, weighted towards the
    /// ones a run is made of.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            6 => prop::sample::select(b"aAbBzZqQeeE".to_vec()),
            3 => prop::sample::select(b" \n".to_vec()),
            1 => prop::sample::select(b"@[`{0 9.'-\t\0".to_vec()),
            1 => any::<u8>(),
        ]
    }

    fn carried() -> impl Strategy<Value = Carried> {
        (
            prop::sample::select(b"\0aeZ".to_vec()),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(letter, twice, word_start)| Carried {
                letter,
                twice: twice && letter != 0,
                word_start,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn sixteen_bytes_a_step_find_what_eight_do(
            input in prop::collection::vec(byte(), 0..80),
            from in 0usize..80,
            carried in carried(),
        ) {
            let from = from.min(input.len());
            let [sixteen, eight] = both(&input, from, carried);
            prop_assert_eq!(sixteen, eight, "{:?} from {}", input, from);
        }
    }

    #[test]
    fn every_byte_at_every_place_of_a_step_ends_runs_alike() {
        let base = *b"abcdEFGHijkl mnopqrstuvwxyzABCDEFghij";
        for byte in 0..=255u8 {
            for at in 0..base.len() {
                for len in [at + 1, base.len()] {
                    let mut input = base;
                    input[at] = byte;
                    for from in [0, 1, 7] {
                        let [sixteen, eight] =
                            both(&input[..len], from.min(len), Carried::default());
                        assert_eq!(sixteen, eight, "{byte:#x} at {at}, {len} bytes from {from}");
                    }
                }
            }
        }
    }
}
