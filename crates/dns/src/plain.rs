//! Plain requests read straight from the packet's bytes.
//!
//! Nearly every query a school's clients send is the same shape: one
//! question for a host name, no records but perhaps an EDNS OPT record.
//! Parsing it into a hickory `Message` cost 1 500 instructions, a fifth of
//! answering a blocked name, and the answer needs only the header's ID and
//! two flags, the question and the client's payload size. This reader takes
//! those from the bytes and declines anything else (more than one
//! question, compression, other opcodes or flags, other records, options
//! hickory reads itself, trailing bytes), which then takes hickory's path.
//! A property test in `resolver.rs` holds the two paths to the same
//! answers: whatever this reader accepts, hickory parses to the same parts.

use hickory_proto::rr::RecordType;

/// The longest name on the wire (RFC 1035 §3.1), labels, their lengths and
/// the root's zero.
const MAX_WIRE_NAME: usize = 255;
/// Record type numbers the reader must recognise.
const TYPE_OPT: u16 = 41;
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
const CLASS_IN: u16 = 1;
/// EDNS option codes hickory parses itself (and may refuse): DAU and
/// client subnet. Any other option is kept as opaque bytes, which the
/// answer never looks at.
const OPTION_DAU: u16 = 5;
const OPTION_SUBNET: u16 = 8;

/// Each byte of a plain host-name label (letters, digits, `-`, `_`) in
/// lower case, and 0 for any other byte: checking and lower-casing a
/// name's bytes in one look-up each cost a third of testing them in turn.
const PLAIN_LOWER: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            table[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    table
};

/// A request read from the packet without hickory.
#[derive(Debug)]
pub(crate) struct PlainRequest<'p> {
    pub id: u16,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    /// The question's name on the wire, as asked (case kept): its labels
    /// and the root's zero byte. Answers repeat it.
    pub wire_name: &'p [u8],
    /// The name as the policy and the cache read it: lower case, no
    /// trailing dot (what `question_name` gives for the same labels).
    pub name: String,
    /// Whether `name` is what `normalize_name` would return unchanged.
    pub normal: bool,
    pub record_type: RecordType,
    /// The payload size of the client's OPT record, when it sent one.
    pub payload: Option<u16>,
}

/// A cursor over the packet that never reads past its end.
struct Bytes<'p> {
    packet: &'p [u8],
    at: usize,
}

impl<'p> Bytes<'p> {
    fn take(&mut self, n: usize) -> Option<&'p [u8]> {
        let end = self.at.checked_add(n)?;
        let bytes = self.packet.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        match self.take(2)? {
            &[high, low] => Some(u16::from_be_bytes([high, low])),
            _ => None,
        }
    }

    fn u32(&mut self) -> Option<u32> {
        match self.take(4)? {
            &[a, b, c, d] => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        }
    }
}

impl<'p> PlainRequest<'p> {
    /// The request, when the packet is a plain query (see the module's
    /// documentation); `None` declines it, saying nothing about whether it
    /// is well formed.
    pub fn read(packet: &'p [u8]) -> Option<Self> {
        let mut bytes = Bytes { packet, at: 0 };
        let id = bytes.u16()?;
        // QR, opcode, AA and TC all zero: a plain query. RD either way.
        let first = bytes.u8()?;
        if first & 0xfe != 0 {
            return None;
        }
        // RA, Z and the response code zero; AD (dig sets it) and CD
        // either way.
        let second = bytes.u8()?;
        if second & !0x30 != 0 {
            return None;
        }
        let (questions, answers, authority, additional) =
            (bytes.u16()?, bytes.u16()?, bytes.u16()?, bytes.u16()?);
        if questions != 1 || answers != 0 || authority != 0 || additional > 1 {
            return None;
        }

        let name_start = bytes.at;
        let mut name = Vec::with_capacity(64);
        let mut normal = true;
        loop {
            let length = usize::from(bytes.u8()?);
            if length == 0 {
                break;
            }
            // 64 and above: compression pointers and reserved codes.
            if length > 63 {
                return None;
            }
            let label = bytes.take(length)?;
            // Plain host-name labels only, as `question_name` writes
            // without escaping: letters, digits, `-` (not first) and `_`.
            if label.first() == Some(&b'-') {
                return None;
            }
            if !name.is_empty() {
                name.push(b'.');
            }
            let start = name.len();
            for &b in label {
                let lower = PLAIN_LOWER[usize::from(b)];
                if lower == 0 {
                    return None;
                }
                name.push(lower);
            }
            if name[start..].starts_with(b"xn--") {
                normal = false;
            }
        }
        let wire_name = packet.get(name_start..bytes.at)?;
        // The root is no host name; a name too long hickory refuses.
        if name.is_empty() || wire_name.len() > MAX_WIRE_NAME {
            return None;
        }
        normal &= name.len() <= sheepdog_lists::name::MAX_NAME_LEN;
        // Only ASCII was written, so this never fails.
        let name = String::from_utf8(name).ok()?;
        let record_type = bytes.u16()?;
        if bytes.u16()? != CLASS_IN || matches!(record_type, TYPE_AXFR | TYPE_IXFR) {
            return None;
        }

        let payload = if additional == 1 {
            Some(read_opt(&mut bytes)?)
        } else {
            None
        };
        if bytes.at != packet.len() {
            return None;
        }
        Some(Self {
            id,
            recursion_desired: first & 0x01 != 0,
            checking_disabled: second & 0x10 != 0,
            wire_name,
            name,
            normal,
            record_type: RecordType::from(record_type),
            payload,
        })
    }
}

/// The one additional record, an OPT record of EDNS version 0 with no
/// extended response code, no flags but DO, and options hickory keeps as
/// they are; its payload size.
fn read_opt(bytes: &mut Bytes<'_>) -> Option<u16> {
    // The root as owner, then the type.
    if bytes.u8()? != 0 || bytes.u16()? != TYPE_OPT {
        return None;
    }
    let payload = bytes.u16()?;
    // Extended response code, version, flags (DO is 0x8000).
    let ttl = bytes.u32()?;
    if ttl & !0x8000 != 0 {
        return None;
    }
    let length = usize::from(bytes.u16()?);
    let mut options = Bytes {
        packet: bytes.take(length)?,
        at: 0,
    };
    while options.at < options.packet.len() {
        let code = options.u16()?;
        let length = usize::from(options.u16()?);
        options.take(length)?;
        if matches!(code, OPTION_DAU | OPTION_SUBNET) {
            return None;
        }
    }
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of type A, with an OPT record when `payload`.
    fn query(name: &[&[u8]], payload: Option<u16>) -> Vec<u8> {
        let mut packet = vec![0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0];
        packet.push(u8::from(payload.is_some()));
        for label in name {
            packet.push(u8::try_from(label.len()).unwrap());
            packet.extend_from_slice(label);
        }
        packet.extend_from_slice(&[0, 0, 1, 0, 1]);
        if let Some(payload) = payload {
            packet.extend_from_slice(&[0, 0, 41]);
            packet.extend_from_slice(&payload.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0x80, 0, 0, 8, 0, 10, 0, 4, 1, 2, 3, 4]);
        }
        packet
    }

    #[test]
    fn a_plain_query_is_read_in_lower_case() {
        let packet = query(&[b"WWW", b"Example", b"test"], Some(1232));
        let read = PlainRequest::read(&packet).unwrap();
        assert_eq!(read.id, 0x1234);
        assert!(read.recursion_desired);
        assert!(!read.checking_disabled);
        assert_eq!(read.name, "www.example.test");
        assert!(read.normal);
        assert_eq!(read.wire_name, b"\x03WWW\x07Example\x04test\x00");
        assert_eq!(read.record_type, RecordType::A);
        assert_eq!(read.payload, Some(1232));
        assert_eq!(
            PlainRequest::read(&query(&[b"a"], None)).unwrap().payload,
            None
        );
    }

    #[test]
    fn punycode_is_read_but_not_normal() {
        let packet = query(&[b"XN--bcher-kva", b"test"], None);
        let read = PlainRequest::read(&packet).unwrap();
        assert_eq!(read.name, "xn--bcher-kva.test");
        assert!(!read.normal);
    }

    #[test]
    fn anything_unusual_is_declined() {
        let plain = query(&[b"example", b"test"], None);
        assert!(PlainRequest::read(&plain).is_some());
        let changed = |at: usize, byte: u8| {
            let mut packet = plain.clone();
            packet[at] = byte;
            PlainRequest::read(&packet).is_some()
        };
        assert!(changed(0, 0xff));
        // A response, another opcode, TC, Z, a response code.
        assert!(!changed(2, 0x81));
        assert!(!changed(2, 0x09));
        assert!(!changed(2, 0x03));
        assert!(!changed(3, 0x40));
        assert!(!changed(3, 0x01));
        // Two questions, an answer record.
        assert!(!changed(5, 2));
        assert!(!changed(7, 1));
        // A compression pointer, an escaped byte, a leading hyphen.
        assert!(!changed(12, 0xc0));
        assert!(!changed(13, b'.'));
        assert!(!changed(13, b'-'));
        // Class CH, a zone transfer, trailing bytes, a truncated packet.
        assert!(!changed(plain.len() - 1, 3));
        assert!(!changed(plain.len() - 3, 252));
        let mut longer = plain.clone();
        longer.push(0);
        assert!(PlainRequest::read(&longer).is_none());
        assert!(PlainRequest::read(&plain[..plain.len() - 1]).is_none());
        // The root.
        assert!(PlainRequest::read(&query(&[], None)).is_none());
        // An OPT record with a client subnet option.
        let mut subnet = query(&[b"a"], Some(4096));
        let options = subnet.len() - 8;
        subnet[options + 1] = 8;
        assert!(PlainRequest::read(&subnet).is_none());
    }
}
