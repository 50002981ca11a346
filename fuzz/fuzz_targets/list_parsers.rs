//! Every list parser, on any bytes: never panics; the snapshot builds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sheepdog_lists::parse::parse_reader;
use sheepdog_lists::{parse_url, ListFormat, SnapshotBuilder};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let format = [
        ListFormat::Auto,
        ListFormat::Hosts,
        ListFormat::Domains,
        ListFormat::Adblock,
        ListFormat::Regex,
        ListFormat::Rpz,
        ListFormat::Urls,
    ][usize::from(selector) % 7];
    let mut b = SnapshotBuilder::new();
    let Ok(id) = b.add_list("fuzz", false, Some("c")) else {
        return;
    };
    let _ = parse_reader(text, format, "fuzz", &mut |o, e| {
        b.add_entry(id, None, o, e)
    });
    if let Ok(snap) = b.build() {
        let s = String::from_utf8_lossy(text);
        for line in s.lines().take(20) {
            snap.for_each_name_hit(line, |_| {});
            if let Ok(u) = parse_url(line) {
                snap.for_each_url_hit(&u, |_| {});
            }
        }
    }
});
