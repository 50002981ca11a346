use super::*;
use proptest::prelude::*;

fn collect(text: &str, format: ListFormat) -> (Vec<String>, ParseReport) {
    let mut out = Vec::new();
    let report = parse_str(text, format, "test.txt", &mut |_, e| {
        out.push(match e {
            Entry::Name {
                name,
                mode,
                exception,
                rpz,
                ..
            } => format!("name {name} {mode:?} ex={exception} rpz={rpz:?}"),
            Entry::Url {
                host,
                path,
                exception,
            } => format!("url {host}{path} ex={exception}"),
            Entry::Regex {
                pattern, target, ..
            } => format!("regex {pattern} {target:?}"),
        })
    });
    (out, report)
}

#[test]
fn hosts_files() {
    let (e, r) = collect(
        "# comment\n127.0.0.1 localhost\n0.0.0.0 Ads.Example.test # x\n:: a.test b.test\nnot-an-ip x y\n",
        ListFormat::Hosts,
    );
    assert_eq!(
        e,
        vec![
            "name ads.example.test NameAndSubdomains ex=false rpz=None",
            "name a.test NameAndSubdomains ex=false rpz=None",
            "name b.test NameAndSubdomains ex=false rpz=None",
        ]
    );
    assert_eq!(r.invalid, 1);
    assert_eq!(r.bad_lines[0].line, 5);
    assert_eq!(r.bad_lines[0].file, "test.txt");
}

#[test]
fn plain_domains_and_wildcards() {
    let (e, r) = collect(
        "example-casino.test\n*.tracker.test\n.squid.test\nbad..name\nBücher.test.\n",
        ListFormat::Domains,
    );
    assert_eq!(
        e[0],
        "name example-casino.test NameAndSubdomains ex=false rpz=None"
    );
    assert_eq!(e[1], "name tracker.test Subdomains ex=false rpz=None");
    assert_eq!(e[2], "name squid.test NameAndSubdomains ex=false rpz=None");
    assert_eq!(
        e[3],
        "name xn--bcher-kva.test NameAndSubdomains ex=false rpz=None"
    );
    assert_eq!(r.invalid, 1);
    assert_eq!(r.bad_lines[0].line, 4);
}

#[test]
fn adblock_rules() {
    let text = "[Adblock Plus 2.0]\n! comment\n||ads.test^\n@@||good.ads.test^\n||x.test^$important\n\
                example.com##.banner\n||y.test^$script\n/^ad[0-9]+\\./\n||z.test/path/\n-ad-banner.\nplain.test\n";
    let (e, r) = collect(text, ListFormat::Adblock);
    assert_eq!(
        e,
        vec![
            "name ads.test NameAndSubdomains ex=false rpz=None",
            "name good.ads.test NameAndSubdomains ex=true rpz=None",
            "name x.test NameAndSubdomains ex=false rpz=None",
            "regex ^ad[0-9]+\\. Name",
            "url z.test/path/ ex=false",
            "name plain.test NameAndSubdomains ex=false rpz=None",
        ]
    );
    assert_eq!(r.unsupported, 3);
    assert_eq!(r.invalid, 0);
}

#[test]
fn rpz_zone() {
    let text = "$TTL 300\n$ORIGIN rpz.example.\n@ SOA ns.example. admin.example. (\n 1 3600\n 600 86400 300 )\n\
                @ NS ns.example.\nbad.test CNAME .\n*.bad.test CNAME .\nnodata.test 300 IN CNAME *.\n\
                ok.bad.test CNAME rpz-passthru.\nlocal.test A 192.0.2.1\n32.1.2.0.192.rpz-ip CNAME .\n\
                abs.test.rpz.example. CNAME rpz-drop.\n";
    let (e, r) = collect(text, ListFormat::Rpz);
    assert_eq!(
        e,
        vec![
            "name bad.test Exact ex=false rpz=Some(NxDomain)",
            "name bad.test Subdomains ex=false rpz=Some(NxDomain)",
            "name nodata.test Exact ex=false rpz=Some(NoData)",
            "name ok.bad.test Exact ex=true rpz=Some(Passthru)",
            "name local.test Exact ex=false rpz=Some(LocalData)",
            "name abs.test Exact ex=false rpz=Some(Drop)",
        ]
    );
    assert_eq!(r.unsupported, 1);
    assert_eq!(r.invalid, 0);
}

#[test]
fn url_lists() {
    let text = "example-abuse.invalid/gallery/123.html\nhttp://EXAMPLE2.invalid/p?id=9\nwhole-host.invalid\nbad url.invalid/x\n";
    let (e, r) = collect(text, ListFormat::Urls);
    assert_eq!(
        e,
        vec![
            "url example-abuse.invalid/gallery/123.html ex=false",
            "url example2.invalid/p?id=9 ex=false",
            "name whole-host.invalid Exact ex=false rpz=None",
        ]
    );
    assert_eq!(r.invalid, 1);
}

#[test]
fn detection() {
    assert_eq!(
        detect_format("0.0.0.0 a.test\n0.0.0.0 b.test\n"),
        ListFormat::Hosts
    );
    assert_eq!(detect_format("! x\n||a.test^\n"), ListFormat::Adblock);
    assert_eq!(detect_format("$TTL 60\na CNAME .\n"), ListFormat::Rpz);
    assert_eq!(
        detect_format("a.invalid/x\nb.invalid/y\n"),
        ListFormat::Urls
    );
    assert_eq!(detect_format("a.test\nb.test\n"), ListFormat::Domains);
}

#[test]
fn reader_and_str_agree() {
    let bytes: &[u8] = b"a.test\nb.test\n\xffbad\n";
    let text = String::from_utf8_lossy(bytes);
    let (e1, r1) = collect(&text, ListFormat::Domains);
    let mut e2 = 0;
    let r2 = parse_reader(bytes, ListFormat::Auto, "test.txt", &mut |_, _| e2 += 1).unwrap();
    assert_eq!(e1.len(), e2);
    assert_eq!(r1.invalid, r2.invalid);
}

fn any_format() -> impl Strategy<Value = ListFormat> {
    prop_oneof![
        Just(ListFormat::Auto),
        Just(ListFormat::Hosts),
        Just(ListFormat::Domains),
        Just(ListFormat::Adblock),
        Just(ListFormat::Regex),
        Just(ListFormat::Rpz),
        Just(ListFormat::Urls),
    ]
}

proptest! {
    /// Every parser survives any input, and every invalid line is counted
    /// with the file and a line number that exists.
    #[test]
    fn parsers_never_panic(text in "(\\PC{0,60}\n){0,20}", format in any_format()) {
        let mut n = 0u64;
        let report = parse_str(&text, format, "fuzz.txt", &mut |_, _| n += 1);
        prop_assert_eq!(report.entries, n);
        prop_assert_eq!(report.lines as usize, text.lines().count());
        for bad in &report.bad_lines {
            prop_assert_eq!(&bad.file, "fuzz.txt");
            prop_assert!(bad.line >= 1 && bad.line <= report.lines);
        }
    }

    #[test]
    fn list_like_lines_never_panic(
        lines in proptest::collection::vec("[|@*.$^/a-zA-Z0-9 #;:!()-]{0,40}", 0..30),
        format in any_format(),
    ) {
        let text = lines.join("\n");
        let report = parse_str(&text, format, "f", &mut |_, _| {});
        prop_assert!(report.invalid as usize >= report.bad_lines.len());
    }
}
