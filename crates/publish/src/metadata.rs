//! The text an image carries about itself: EXIF, XMP and IPTC.
//!
//! EXIF is read by `kamadak-exif` from any container it knows (JPEG, TIFF,
//! PNG, WebP, HEIF). XMP is an XML packet inside the file: in a JPEG it is
//! the APP1 segment that starts with the Adobe namespace, elsewhere we
//! scan, within [`MAX_XMP_BYTES`], for `<x:xmpmeta` and parse the packet
//! with `quick-xml`. IPTC-IIM sits in a JPEG's APP13 (Photoshop) segment
//! as 8BIM resource 0x0404, a short run of tagged records we read
//! ourselves. Every length is checked against the bytes that are there:
//! a damaged file gives a [`MetadataError`], never a panic.

use std::io::Cursor;

use quick_xml::events::Event;
use quick_xml::Reader;

/// The largest XMP packet read.
pub const MAX_XMP_BYTES: usize = 4 * 1024 * 1024;

/// One text field found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Where it was: `EXIF ImageDescription`, `XMP dc:description`,
    /// `IPTC Keywords`.
    pub name: String,
    pub value: String,
}

/// What an image says about itself.
#[derive(Debug, Default)]
pub struct ImageMetadata {
    pub fields: Vec<Field>,
    /// The people tagged in it (XMP `Iptc4xmpExt:PersonInImage`, region
    /// names, Windows person tags).
    pub person_tags: Vec<String>,
    /// Parts that could not be read (a damaged EXIF block) while the rest
    /// could.
    pub damaged: Vec<MetadataError>,
}

/// Why an image's metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("the EXIF block is damaged ({0}); re-save the image or strip its metadata")]
    Exif(String),
    #[error("the XMP packet is not well-formed XML at byte {position}: {problem}; re-save the image or strip its metadata")]
    Xmp { position: u64, problem: String },
    #[error("the JPEG is cut short or damaged at byte {at}: {problem}")]
    Jpeg { at: usize, problem: &'static str },
}

const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const PHOTOSHOP_HEADER: &[u8] = b"Photoshop 3.0\0";

/// XMP elements (and attributes) that name the people in an image.
const PERSON_FIELDS: &[&str] = &[
    "Iptc4xmpExt:PersonInImage",
    "mwg-rs:Name",
    "MP:PersonDisplayName",
    "MPReg:PersonDisplayName",
    "MicrosoftPhoto:PersonDisplayName",
];

/// Reads every text field an image carries.
pub fn read_metadata(bytes: &[u8]) -> Result<ImageMetadata, MetadataError> {
    let mut out = ImageMetadata::default();
    if let Err(error) = read_exif(bytes, &mut out) {
        out.damaged.push(error);
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        for (marker, body) in jpeg_segments(bytes)? {
            if marker == 0xE1 && body.starts_with(XMP_HEADER) {
                read_xmp(&body[XMP_HEADER.len()..], &mut out)?;
            } else if marker == 0xED && body.starts_with(PHOTOSHOP_HEADER) {
                read_photoshop(&body[PHOTOSHOP_HEADER.len()..], &mut out);
            }
        }
    } else if let Some(packet) = find_xmp(bytes) {
        read_xmp(packet, &mut out)?;
    }
    Ok(out)
}

/// The JPEG's segments before the image data, as (marker, body).
fn jpeg_segments(bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, MetadataError> {
    let mut segments = Vec::new();
    let mut at = 2;
    loop {
        let Some(&[ff, marker]) = bytes.get(at..at + 2) else {
            // A file of metadata only (no image data) ends here.
            return Ok(segments);
        };
        if ff != 0xFF {
            return Err(MetadataError::Jpeg {
                at,
                problem: "expected a segment marker",
            });
        }
        match marker {
            // Fill bytes before a marker.
            0xFF => {
                at += 1;
                continue;
            }
            // End of image, or start of scan: the metadata is behind us.
            0xD9 | 0xDA => return Ok(segments),
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => {
                at += 2;
                continue;
            }
            _ => {}
        }
        let Some(&[hi, lo]) = bytes.get(at + 2..at + 4) else {
            return Err(MetadataError::Jpeg {
                at: at + 2,
                problem: "a segment's length is missing",
            });
        };
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        if length < 2 {
            return Err(MetadataError::Jpeg {
                at: at + 2,
                problem: "a segment's length is too small",
            });
        }
        let body = bytes
            .get(at + 4..at + 2 + length)
            .ok_or(MetadataError::Jpeg {
                at: at + 2,
                problem: "a segment runs past the end of the file",
            })?;
        segments.push((marker, body));
        at += 2 + length;
    }
}

fn read_exif(bytes: &[u8], out: &mut ImageMetadata) -> Result<(), MetadataError> {
    let exif = match exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) {
        Ok(exif) => exif,
        // No EXIF at all, or a format kamadak-exif does not read: nothing
        // to check there.
        Err(exif::Error::NotFound(_) | exif::Error::NotSupported(_)) => return Ok(()),
        Err(error) => return Err(MetadataError::Exif(error.to_string())),
    };
    for field in exif.fields() {
        let value = match &field.value {
            exif::Value::Ascii(parts) => parts
                .iter()
                .map(|p| String::from_utf8_lossy(p).trim_end_matches('\0').to_owned())
                .collect::<Vec<_>>()
                .join(" "),
            // Windows' XPTitle, XPComment, XPKeywords, XPSubject, XPAuthor
            // are UTF-16LE in BYTE arrays.
            exif::Value::Byte(raw) if is_xp_tag(field.tag) => utf16le(raw),
            exif::Value::Undefined(raw, _) if field.tag == exif::Tag::UserComment => {
                user_comment(raw)
            }
            _ => continue,
        };
        let value = value.trim().to_owned();
        if !value.is_empty() {
            out.fields.push(Field {
                name: format!("EXIF {}", field.tag),
                value,
            });
        }
    }
    Ok(())
}

fn is_xp_tag(tag: exif::Tag) -> bool {
    tag.context() == exif::Context::Tiff && (0x9C9B..=0x9C9F).contains(&tag.number())
}

fn utf16le(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// An EXIF UserComment: an 8-byte character code, then the text.
fn user_comment(raw: &[u8]) -> String {
    let (code, text) = raw.split_at(raw.len().min(8));
    if code.starts_with(b"UNICODE") {
        utf16le(text)
    } else {
        String::from_utf8_lossy(text)
            .trim_end_matches('\0')
            .to_owned()
    }
}

/// The `<x:xmpmeta …>…</x:xmpmeta>` packet in a file that is not a JPEG,
/// looked for in the first [`MAX_XMP_BYTES`] after its start.
fn find_xmp(bytes: &[u8]) -> Option<&[u8]> {
    let start = find(bytes, b"<x:xmpmeta")?;
    let rest = &bytes[start..bytes.len().min(start.saturating_add(MAX_XMP_BYTES))];
    let end = find(rest, b"</x:xmpmeta>")?;
    Some(&rest[..end + b"</x:xmpmeta>".len()])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Collects the packet's text: each text node under the nearest element
/// that is not RDF plumbing, and attribute values written in the short
/// form (`<rdf:Description dc:title="…">`).
fn read_xmp(packet: &[u8], out: &mut ImageMetadata) -> Result<(), MetadataError> {
    let packet = &packet[..packet.len().min(MAX_XMP_BYTES)];
    let mut reader = Reader::from_reader(packet);
    let mut stack: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    let error = |reader: &Reader<&[u8]>, problem: String| MetadataError::Xmp {
        position: reader.buffer_position(),
        problem,
    };
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| error(&reader, e.to_string()))?;
        match event {
            Event::Start(element) => {
                xmp_attributes(&element, out).map_err(|e| error(&reader, e))?;
                stack.push(String::from_utf8_lossy(element.name().as_ref()).into_owned());
            }
            Event::Empty(element) => {
                xmp_attributes(&element, out).map_err(|e| error(&reader, e))?;
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(text) => {
                let value = text
                    .unescape()
                    .map_err(|e| error(&reader, e.to_string()))?
                    .trim()
                    .to_owned();
                if value.is_empty() {
                    continue;
                }
                if let Some(field) = stack
                    .iter()
                    .rev()
                    .find(|n| !n.starts_with("rdf:") && !n.starts_with("x:"))
                {
                    add_xmp(out, &field.clone(), value);
                }
            }
            Event::CData(data) => {
                let value = String::from_utf8_lossy(&data).trim().to_owned();
                if let Some(field) = stack.iter().rev().find(|n| !n.starts_with("rdf:")) {
                    if !value.is_empty() {
                        add_xmp(out, &field.clone(), value);
                    }
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
        buf.clear();
    }
}

/// Attribute values written in the short form (`<rdf:Description
/// dc:title="…">`, `<mwg-rs:Region mwg-rs:Name="…">`).
fn xmp_attributes(
    element: &quick_xml::events::BytesStart<'_>,
    out: &mut ImageMetadata,
) -> Result<(), String> {
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|e| e.to_string())?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        if key.starts_with("xmlns") || key.starts_with("rdf:") || key.starts_with("xml:") {
            continue;
        }
        let value = attribute
            .unescape_value()
            .map_err(|e| e.to_string())?
            .trim()
            .to_owned();
        if !value.is_empty() {
            add_xmp(out, &key, value);
        }
    }
    Ok(())
}

fn add_xmp(out: &mut ImageMetadata, field: &str, value: String) {
    if PERSON_FIELDS.contains(&field) {
        out.person_tags.push(value.clone());
    }
    out.fields.push(Field {
        name: format!("XMP {field}"),
        value,
    });
}

/// Photoshop image resources: `8BIM`, a 2-byte id, a padded Pascal name,
/// a 4-byte size and the data, padded to even length. IPTC-IIM is 0x0404.
fn read_photoshop(mut data: &[u8], out: &mut ImageMetadata) {
    while data.len() >= 12 && data.starts_with(b"8BIM") {
        let id = u16::from_be_bytes([data[4], data[5]]);
        let name_len = usize::from(data[6]);
        // The name with its length byte is padded to an even length.
        let name_total = (name_len + 2) & !1;
        let Some(size_at) = 6usize.checked_add(name_total) else {
            return;
        };
        let Some(size_bytes) = data.get(size_at..size_at + 4) else {
            return;
        };
        let size = u32::from_be_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]]);
        let Ok(size) = usize::try_from(size) else {
            return;
        };
        let body_at = size_at + 4;
        let Some(body) = data.get(body_at..body_at.saturating_add(size)) else {
            return;
        };
        if id == 0x0404 {
            read_iptc(body, out);
        }
        let next = body_at.saturating_add((size + 1) & !1);
        data = data.get(next..).unwrap_or(&[]);
    }
}

/// IPTC-IIM records: 0x1C, record, dataset, a 2-byte length, the data.
fn read_iptc(mut data: &[u8], out: &mut ImageMetadata) {
    while data.len() >= 5 && data[0] == 0x1C {
        let (record, dataset) = (data[1], data[2]);
        let length = usize::from(u16::from_be_bytes([data[3], data[4]]));
        // Extended lengths (high bit set) are for large binary data, never
        // for the text fields read here.
        if length & 0x8000 != 0 {
            return;
        }
        let Some(value) = data.get(5..5 + length) else {
            return;
        };
        if record == 2 {
            let name = match dataset {
                5 => Some("ObjectName"),
                25 => Some("Keywords"),
                80 => Some("By-line"),
                105 => Some("Headline"),
                120 => Some("Caption-Abstract"),
                _ => None,
            };
            if let Some(name) = name {
                let value = String::from_utf8_lossy(value).trim().to_owned();
                if !value.is_empty() {
                    out.fields.push(Field {
                        name: format!("IPTC {name}"),
                        value,
                    });
                }
            }
        }
        data = &data[5 + length..];
    }
}
