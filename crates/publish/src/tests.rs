//! The publish check on images written by the tests themselves, with
//! synthetic names only.

use std::io::Cursor;

use proptest::prelude::*;

use super::*;

fn pupil(id: i64, given: &str, family: &str, upn: &str, may_appear: bool, consent: &str) -> Pupil {
    Pupil {
        id,
        given_name: given.to_owned(),
        family_name: family.to_owned(),
        upn: Some(upn.to_owned()),
        class_name: Some("4K".to_owned()),
        may_appear,
        consent: consent.to_owned(),
    }
}

fn pupils() -> Vec<Pupil> {
    vec![
        pupil(
            1,
            "Brisa",
            "Quorbin",
            "A123456789012",
            true,
            "consent given",
        ),
        pupil(
            2,
            "Coren",
            "Maddlethwaite",
            "B123456789012",
            false,
            "consent withdrawn",
        ),
        pupil(
            3,
            "Ysolde",
            "Parrack",
            "C123456789012",
            true,
            "consent given",
        ),
    ]
}

fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, marker];
    out.extend_from_slice(&u16::try_from(body.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn xmp(description: &str, people: &[&str]) -> Vec<u8> {
    let bag: String = people
        .iter()
        .map(|p| format!("<rdf:li>{p}</rdf:li>"))
        .collect();
    let packet = format!(
        r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" dc:format="image/jpeg">
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Sports day</rdf:li></rdf:Alt></dc:title>
<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt></dc:description>
<Iptc4xmpExt:PersonInImage><rdf:Bag>{bag}</rdf:Bag></Iptc4xmpExt:PersonInImage>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"#
    );
    let mut body = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    body.extend_from_slice(packet.as_bytes());
    segment(0xE1, &body)
}

fn exif_segment(description: &str) -> Vec<u8> {
    let field = exif::Field {
        tag: exif::Tag::ImageDescription,
        ifd_num: exif::In::PRIMARY,
        value: exif::Value::Ascii(vec![description.as_bytes().to_vec()]),
    };
    let mut writer = exif::experimental::Writer::new();
    writer.push_field(&field);
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).unwrap();
    let mut body = b"Exif\0\0".to_vec();
    body.extend_from_slice(&tiff.into_inner());
    segment(0xE1, &body)
}

fn iptc_segment(keywords: &str) -> Vec<u8> {
    let mut iim = vec![0x1C, 2, 25];
    iim.extend_from_slice(&u16::try_from(keywords.len()).unwrap().to_be_bytes());
    iim.extend_from_slice(keywords.as_bytes());
    let mut body = b"Photoshop 3.0\0".to_vec();
    body.extend_from_slice(b"8BIM");
    body.extend_from_slice(&0x0404u16.to_be_bytes());
    body.extend_from_slice(&[0, 0]); // empty name, padded
    body.extend_from_slice(&u32::try_from(iim.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&iim);
    if iim.len() % 2 == 1 {
        body.push(0);
    }
    segment(0xED, &body)
}

/// A tiny JPEG: the metadata segments and an end-of-image marker.
fn jpeg(segments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    for s in segments {
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[test]
fn metadata_is_read_from_exif_xmp_and_iptc() {
    let bytes = jpeg(&[
        exif_segment("Year 4 trip"),
        xmp("Relay race &amp; prizes", &["A123456789012"]),
        iptc_segment("athletics"),
    ]);
    let metadata = read_metadata(&bytes).unwrap();
    let value = |name: &str| {
        metadata
            .fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    };
    assert_eq!(value("EXIF ImageDescription"), Some("Year 4 trip"));
    assert_eq!(value("XMP dc:description"), Some("Relay race & prizes"));
    assert_eq!(value("XMP dc:title"), Some("Sports day"));
    assert_eq!(value("XMP dc:format"), Some("image/jpeg"));
    assert_eq!(value("IPTC Keywords"), Some("athletics"));
    assert_eq!(metadata.person_tags, vec!["A123456789012".to_owned()]);
    assert!(metadata.damaged.is_empty());
}

/// G3: a full name hidden in an XMP description, a pupil whose consent was
/// withdrawn, a name in a file name and in EXIF; a clean image passes.
#[test]
fn the_check_finds_hidden_names_and_withdrawn_consent() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), bytes).unwrap();
    write(
        "IMG_0001.jpg",
        jpeg(&[xmp(
            "Well done to brisa QUORBIN for first place",
            &["A123456789012"],
        )]),
    );
    write(
        "IMG_0002.jpg",
        jpeg(&[xmp("The relay team", &["B123456789012"])]),
    );
    write("ysolde_parrack_race.jpeg", jpeg(&[exif_segment("Race")]));
    write(
        "IMG_0004.JPG",
        jpeg(&[exif_segment("Parrack, Ysolde at the finish")]),
    );
    write(
        "IMG_0005.jpg",
        jpeg(&[xmp("The crowd", &["C123456789012"])]),
    );
    write("notes.txt", b"Brisa Quorbin".to_vec());
    let report = check_dir(dir.path(), &pupils(), None).unwrap();
    assert_eq!(report.images, 5);
    assert_eq!(
        report.problems,
        vec![
            Problem::NameInField {
                file: "IMG_0001.jpg".to_owned(),
                field: "XMP dc:description".to_owned(),
                pupil: "Brisa Quorbin".to_owned(),
            },
            Problem::NoConsent {
                file: "IMG_0002.jpg".to_owned(),
                pupil: "Coren Maddlethwaite".to_owned(),
                reason: "consent withdrawn".to_owned(),
            },
            Problem::NameInField {
                file: "IMG_0004.JPG".to_owned(),
                field: "EXIF ImageDescription".to_owned(),
                pupil: "Ysolde Parrack".to_owned(),
            },
            Problem::NameInFileName {
                file: "ysolde_parrack_race.jpeg".to_owned(),
                pupil: "Ysolde Parrack".to_owned(),
            },
        ]
    );
}

#[test]
fn a_mapping_names_the_pupils_and_unknown_names_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jpg"), jpeg(&[])).unwrap();
    std::fs::write(dir.path().join("b.jpg"), jpeg(&[])).unwrap();
    let map = dir.path().join("map.csv");
    std::fs::write(
        &map,
        "\u{feff}file,pupil\na.jpg,B123456789012; Ysolde Parrack\nb.jpg,Nobody Known\n",
    )
    .unwrap();
    let mapping = read_mapping(&map).unwrap();
    let report = check_dir(dir.path(), &pupils(), Some(&mapping)).unwrap();
    assert_eq!(
        report.problems,
        vec![
            Problem::NoConsent {
                file: "a.jpg".to_owned(),
                pupil: "Coren Maddlethwaite".to_owned(),
                reason: "consent withdrawn".to_owned(),
            },
            Problem::UnknownPupil {
                file: "b.jpg".to_owned(),
                named: "Nobody Known".to_owned(),
            },
        ]
    );
    std::fs::write(&map, "file,pupil\na.jpg\n").unwrap();
    let error = read_mapping(&map).unwrap_err().to_string();
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn damaged_files_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    // A segment that claims to run past the end of the file.
    std::fs::write(
        dir.path().join("cut.jpg"),
        [0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 1, 2],
    )
    .unwrap();
    let mut broken = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    broken.extend_from_slice(b"<x:xmpmeta><dc:title>Sports day</dc:titel></x:xmpmeta>");
    let broken = segment(0xE1, &broken);
    std::fs::write(dir.path().join("badxml.jpg"), jpeg(&[broken])).unwrap();
    let report = check_dir(dir.path(), &pupils(), None).unwrap();
    assert_eq!(report.images, 2);
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    for problem in &report.problems {
        assert!(matches!(problem, Problem::Unreadable { .. }), "{problem}");
    }
    assert!(check_dir(&dir.path().join("missing"), &pupils(), None).is_err());
}

#[test]
fn names_match_whole_words_in_any_spelling() {
    let p = &pupils()[0];
    for yes in [
        "Brisa Quorbin",
        "brisa_quorbin.jpg",
        "BrisaQuorbin",
        "QUORBIN, Brisa",
        "x-Brisa-Quorbin-2",
    ] {
        assert!(names(yes, p), "{yes}");
    }
    for no in ["Brisa", "Quorbin", "Brisa Q", "Brisan Quorbin"] {
        assert!(!names(no, p), "{no}");
    }
}

proptest! {
    /// Any bytes: an answer or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_metadata(&bytes);
    }

    /// JPEG-shaped input with random segments, lengths and bodies.
    #[test]
    fn jpeg_shaped_input_never_panics(
        segments in proptest::collection::vec(
            (prop_oneof![Just(0xE1u8), Just(0xEDu8), any::<u8>()],
             proptest::collection::vec(any::<u8>(), 0..300),
             any::<bool>(), any::<u16>()),
            0..6),
        header in prop_oneof![
            Just(b"http://ns.adobe.com/xap/1.0/\0".to_vec()),
            Just(b"Photoshop 3.0\08BIM\x04\x04".to_vec()),
            Just(b"Exif\0\0II*\0".to_vec()),
            Just(Vec::new())],
    ) {
        let mut bytes = vec![0xFF, 0xD8];
        for (marker, body, lie, length) in segments {
            let mut full = header.clone();
            full.extend_from_slice(&body);
            bytes.extend_from_slice(&[0xFF, marker]);
            let stated = if lie { length } else { u16::try_from(full.len() + 2).unwrap_or(u16::MAX) };
            bytes.extend_from_slice(&stated.to_be_bytes());
            bytes.extend_from_slice(&full);
        }
        let _ = read_metadata(&bytes);
    }
}
