//! The spool's binary encoding: events packed into checksummed frames.
//!
//! A frame is one batch: a 16-byte header (`SDE1`, the payload's length,
//! the number of events, the payload's CRC-32C) and then the events, each
//! a fixed order of fields: times as integers, optional fields behind a
//! bit in one flags word, text as a LEB128 length and its bytes. Encoding
//! an event costs a few hundred instructions where JSON cost thousands,
//! which is what lets the writer put a backlog on disk at the rate the DNS
//! server answers. A frame is written with one `write` and read back only
//! whole: a crash while writing leaves a short or mismatched last frame,
//! which replay counts and skips.

use chrono::{DateTime, Utc};
use sheepdog_store::{DecisionEvent, EventSource};

pub(crate) const MAGIC: [u8; 4] = *b"SDE1";
pub(crate) const HEADER_BYTES: usize = 16;
/// A header claiming more than this is damage, not a batch; replay stops
/// there rather than allocate it.
pub(crate) const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// CRC-32C (Castagnoli, the iSCSI polynomial) of a payload: the
/// `crc32c` crate uses the CPU's CRC instruction where there is one (SSE
/// 4.2, ARMv8), a tenth of the cost of the table-driven `crc` crate this
/// format was first written with, and gives the same checksums, so
/// spools written before still replay.
fn checksum(payload: &[u8]) -> u32 {
    crc32c::crc32c(payload)
}

const HAS_DEVICE_ID: u16 = 1;
const HAS_DEVICE_NAME: u16 = 1 << 1;
const HAS_PERSON_ID: u16 = 1 << 2;
const HAS_GROUP: u16 = 1 << 3;
const HAS_QUERY_TYPE: u16 = 1 << 4;
const HAS_CATEGORY: u16 = 1 << 5;
const HAS_LIST: u16 = 1 << 6;
const HAS_RULE: u16 = 1 << 7;
const HAS_UPSTREAM_MS: u16 = 1 << 8;
const HAS_SEARCH_TERM: u16 = 1 << 9;
const ILLEGAL: u16 = 1 << 10;
const PROXY: u16 = 1 << 11;
/// Written since the event's school was added: older frames never set it,
/// so they still decode, with no school.
const HAS_SCHOOL_ID: u16 = 1 << 12;

/// Appends one frame holding `events` to `out`.
pub(crate) fn encode(events: &[DecisionEvent], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    for event in events {
        encode_event(event, out);
    }
    let payload_len = out.len() - start - HEADER_BYTES;
    let crc = checksum(&out[start + HEADER_BYTES..]);
    let header = &mut out[start..start + HEADER_BYTES];
    header[..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes());
    header[8..12].copy_from_slice(
        &u32::try_from(events.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    header[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// A frame's header, read before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub payload_len: usize,
    pub events: u32,
    pub crc: u32,
}

/// The header in `bytes`, or None when it is not a frame's.
pub(crate) fn header(bytes: &[u8; HEADER_BYTES]) -> Option<Header> {
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if bytes[..4] != MAGIC {
        return None;
    }
    let payload_len = usize::try_from(word(4)).ok()?;
    if payload_len > MAX_PAYLOAD {
        return None;
    }
    Some(Header {
        payload_len,
        events: word(8),
        crc: word(12),
    })
}

/// The events of a frame's payload, or None when the payload does not
/// match its header (a torn or damaged frame).
pub(crate) fn decode(header: &Header, payload: &[u8]) -> Option<Vec<DecisionEvent>> {
    if payload.len() != header.payload_len || checksum(payload) != header.crc {
        return None;
    }
    let mut reader = Reader { bytes: payload };
    let mut events = Vec::with_capacity(usize::try_from(header.events).ok()?.min(1 << 20));
    for _ in 0..header.events {
        events.push(reader.event()?);
    }
    reader.bytes.is_empty().then_some(events)
}

fn encode_event(event: &DecisionEvent, out: &mut Vec<u8>) {
    let mut flags = 0;
    let mut flag = |present: bool, bit: u16| {
        if present {
            flags |= bit;
        }
    };
    flag(event.device_id.is_some(), HAS_DEVICE_ID);
    flag(event.device_name.is_some(), HAS_DEVICE_NAME);
    flag(event.person_id.is_some(), HAS_PERSON_ID);
    flag(event.group.is_some(), HAS_GROUP);
    flag(event.query_type.is_some(), HAS_QUERY_TYPE);
    flag(event.category.is_some(), HAS_CATEGORY);
    flag(event.list.is_some(), HAS_LIST);
    flag(event.rule.is_some(), HAS_RULE);
    flag(event.upstream_ms.is_some(), HAS_UPSTREAM_MS);
    flag(event.search_term.is_some(), HAS_SEARCH_TERM);
    flag(event.illegal, ILLEGAL);
    flag(event.source == EventSource::Proxy, PROXY);
    flag(event.school_id.is_some(), HAS_SCHOOL_ID);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&event.at.timestamp().to_le_bytes());
    out.extend_from_slice(&event.at.timestamp_subsec_nanos().to_le_bytes());
    text(&event.client, out);
    text(&event.target, out);
    text(&event.action, out);
    if let Some(id) = event.device_id {
        out.extend_from_slice(&id.to_le_bytes());
    }
    if let Some(id) = event.person_id {
        out.extend_from_slice(&id.to_le_bytes());
    }
    if let Some(ms) = event.upstream_ms {
        out.extend_from_slice(&ms.to_le_bytes());
    }
    if let Some(id) = event.school_id {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for value in [
        &event.device_name,
        &event.group,
        &event.query_type,
        &event.category,
        &event.list,
        &event.rule,
        &event.search_term,
    ]
    .into_iter()
    .flatten()
    {
        text(value, out);
    }
}

fn text(value: &str, out: &mut Vec<u8>) {
    let mut len = value.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(value.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(taken)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn text(&mut self) -> Option<String> {
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = *self.take(1)?.first()?;
            len |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }

    fn optional_text(&mut self, flags: u16, bit: u16) -> Option<Option<String>> {
        if flags & bit == 0 {
            return Some(None);
        }
        self.text().map(Some)
    }

    fn event(&mut self) -> Option<DecisionEvent> {
        let flags = u16::from_le_bytes(self.array()?);
        let seconds = i64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        let at: DateTime<Utc> = DateTime::from_timestamp(seconds, nanos)?;
        let client = self.text()?;
        let target = self.text()?;
        let action = self.text()?;
        let device_id = if flags & HAS_DEVICE_ID != 0 {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        };
        let person_id = if flags & HAS_PERSON_ID != 0 {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        };
        let upstream_ms = if flags & HAS_UPSTREAM_MS != 0 {
            Some(u32::from_le_bytes(self.array()?))
        } else {
            None
        };
        let school_id = if flags & HAS_SCHOOL_ID != 0 {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        };
        Some(DecisionEvent {
            at,
            source: if flags & PROXY != 0 {
                EventSource::Proxy
            } else {
                EventSource::Dns
            },
            client,
            device_id,
            device_name: self.optional_text(flags, HAS_DEVICE_NAME)?,
            person_id,
            group: self.optional_text(flags, HAS_GROUP)?,
            target,
            query_type: self.optional_text(flags, HAS_QUERY_TYPE)?,
            action,
            illegal: flags & ILLEGAL != 0,
            category: self.optional_text(flags, HAS_CATEGORY)?,
            list: self.optional_text(flags, HAS_LIST)?,
            rule: self.optional_text(flags, HAS_RULE)?,
            upstream_ms,
            search_term: self.optional_text(flags, HAS_SEARCH_TERM)?,
            school_id,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    /// The frame checksum is CRC-32C: its standard check value, so frames
    /// spooled by earlier builds (table-driven `crc::CRC_32_ISCSI`) still
    /// verify.
    #[test]
    fn the_checksum_is_crc_32c() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(b""), 0);
    }

    fn text_field() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("\\PC{0,200}")
    }

    prop_compose! {
        fn any_event()(
            seconds in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000,
            proxy in any::<bool>(), client in "\\PC{0,40}",
            device_id in proptest::option::of(any::<i64>()), device_name in text_field(),
            person_id in proptest::option::of(any::<i64>()), group in text_field(),
            target in "\\PC{0,300}", query_type in text_field(), action in "\\PC{0,10}",
            illegal in any::<bool>(), category in text_field(), list in text_field(),
            rule in text_field(), upstream_ms in proptest::option::of(any::<u32>()),
            search_term in text_field(), school_id in proptest::option::of(any::<i64>()),
        ) -> DecisionEvent {
            DecisionEvent {
                at: DateTime::from_timestamp(seconds, nanos).unwrap(),
                source: if proxy { EventSource::Proxy } else { EventSource::Dns },
                client, device_id, device_name, person_id, group, target, query_type,
                action, illegal, category, list, rule, upstream_ms, search_term, school_id,
            }
        }
    }

    fn frames(bytes: &[u8]) -> Option<Vec<DecisionEvent>> {
        let mut rest = bytes;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let head: [u8; HEADER_BYTES] = rest.get(..HEADER_BYTES)?.try_into().ok()?;
            let head = header(&head)?;
            let payload = rest.get(HEADER_BYTES..HEADER_BYTES + head.payload_len)?;
            out.extend(decode(&head, payload)?);
            rest = &rest[HEADER_BYTES + head.payload_len..];
        }
        Some(out)
    }

    proptest! {
        /// Every event comes back exactly as it went in, however many
        /// frames and whatever the text.
        #[test]
        fn events_round_trip(batches in proptest::collection::vec(proptest::collection::vec(any_event(), 0..8), 0..4)) {
            let mut bytes = Vec::new();
            for batch in &batches {
                encode(batch, &mut bytes);
            }
            let all: Vec<DecisionEvent> = batches.into_iter().flatten().collect();
            prop_assert_eq!(frames(&bytes), Some(all));
        }

        /// A frame cut short anywhere, or with any byte changed, is
        /// refused rather than read as other events, and never panics.
        #[test]
        fn a_torn_or_damaged_frame_is_refused(
            events in proptest::collection::vec(any_event(), 1..4),
            cut in any::<proptest::sample::Index>(),
            flip in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut bytes = Vec::new();
            encode(&events, &mut bytes);
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert_eq!(frames(short).filter(|e| !e.is_empty()), None);
            let mut damaged = bytes.clone();
            let at = flip.index(damaged.len());
            damaged[at] ^= 1 << bit;
            prop_assert_ne!(frames(&damaged), Some(events));
        }
    }
}
