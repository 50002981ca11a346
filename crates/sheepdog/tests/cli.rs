//! The `sheepdog` command as a technician uses it: real processes, real
//! SQLite files, real sockets on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sheepdog() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sheepdog"));
    command.env_remove("SHEEPDOG_CONFIG").env("NO_COLOR", "1");
    command
}

fn run(args: &[&str]) -> Output {
    sheepdog().args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A deployment made by `sheepdog init` in a temporary directory.
struct Deployment {
    dir: tempfile::TempDir,
    /// The first administrator's generated password.
    password: String,
}

impl Deployment {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sheepdog.toml");
        let policy = repo().join("dist/policy.example.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"data\"\n[filtering]\npolicy = \"{}\"\n",
                policy.display()
            ),
        )
        .unwrap();
        let mut deployment = Self {
            dir,
            password: String::new(),
        };
        let output = deployment.run(&[
            "init",
            "--school",
            "Brackenfield Academy",
            "--admin",
            "admin@brackenfield.invalid",
            "--generate-password",
        ]);
        assert!(output.status.success(), "{}", text(&output));
        deployment.password = String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_string();
        deployment
    }

    fn config(&self) -> String {
        self.dir.path().join("sheepdog.toml").display().to_string()
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("data/sheepdog.sqlite")
    }

    fn run(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    fn sql(&self, statement: &str) -> i64 {
        let url = format!("sqlite://{}", self.database().display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            if statement.starts_with("SELECT") {
                let (value,): (i64,) = sqlx::query_as(statement)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                value
            } else {
                sqlx::query(statement)
                    .execute(&mut conn)
                    .await
                    .unwrap()
                    .rows_affected() as i64
            }
        })
    }
}

/// The A records a real client gets for `name` from the resolver at `server`.
fn dig_a(server: &str, name: &str) -> String {
    let (host, port) = server.rsplit_once(':').unwrap();
    let output = Command::new("dig")
        .args([
            &format!("@{host}"),
            "-p",
            port,
            "+short",
            "+tries=1",
            "+time=3",
            name,
            "A",
        ])
        .output()
        .expect("dig is installed by scripts/test");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

#[test]
fn demo_answers_on_loopback_and_removes_its_data_on_interrupt() {
    let mut child = sheepdog()
        .args([
            "demo",
            "--console",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--pupils-per-class",
            "3",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let field = |name: &str| {
        banner
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {name} in {banner:#?}"))
    };
    let console = field("console");
    let metrics = field("metrics");
    let data = PathBuf::from(field("data"));
    assert!(data.join("sheepdog.sqlite").is_file());
    assert!(banner.iter().any(|l| l.contains("admin@demo.invalid")));

    let (status, body) = http_get(&format!("{console}healthz"));
    assert_eq!((status, body.ends_with("ok\n")), (200, true), "{body}");
    let (status, body) = http_get(&format!("{console}api/v1/status"));
    assert_eq!(status, 200);
    assert!(body.contains("\"pupils\":21"), "{body}");
    let (status, body) = http_get(&metrics);
    assert_eq!(status, 200);
    assert!(
        body.contains("sheepdog_records{kind=\"pupil\"} 21"),
        "{body}"
    );

    assert_eq!(dig_a(&field("dns"), "www.example-casino.test"), "0.0.0.0");

    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(
        rest.iter().any(|l| l.starts_with("demo stopped; removed")),
        "{rest:?}"
    );
    assert!(!data.exists(), "{} was left behind", data.display());
}

#[test]
fn audit_verify_names_the_row_edited_behind_the_stores_back() {
    let deployment = Deployment::new();
    let roster = deployment.dir.path().join("roster");
    let output = run(&[
        "roster",
        "synthesize",
        "--out",
        roster.to_str().unwrap(),
        "--pupils-per-class",
        "4",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    for file in ["staff.csv", "pupils.csv", "contacts.csv"] {
        let output = deployment.run(&["import", "people", roster.join(file).to_str().unwrap()]);
        assert!(output.status.success(), "{}", text(&output));
    }
    let output = deployment.run(&["audit", "verify"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).starts_with("audit log intact"));

    assert_eq!(
        deployment.sql(
            "UPDATE audit_log SET after_state = '{\"given_name\":\"Someone Else\"}' WHERE seq = 9"
        ),
        1
    );
    let output = deployment.run(&["audit", "verify"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("audit entry 9 was altered"),
        "{}",
        text(&output)
    );

    deployment.sql("DELETE FROM audit_log WHERE seq = 20");
    let output = deployment.run(&["audit", "verify"]);
    assert!(
        text(&output).contains("audit entry 20 was deleted"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_bad_roster_is_reported_row_by_row_and_changes_nothing() {
    let deployment = Deployment::new();
    let people_before = deployment.sql("SELECT COUNT(*) FROM people");
    let audit_before = deployment.sql("SELECT COUNT(*) FROM audit_log");
    let upn = |body: &str| format!("{}{body}", sheepdog_roster_check_letter(body));
    let (a, b) = (upn("999200100001"), upn("999200100002"));
    let bad = deployment.write(
        "pupils.csv",
        &format!(
            "UPN,Legal Surname,Legal Forename,Date of Birth,Year,Reg Group\n\
             {a},Quorbin,Brisa,04/09/2016,5,5O\n\
             {b},Vesk,Coren,30/02/2016,5,5O\n\
             {a},Thalby,Ilysa,01/10/2016,5,5O\n"
        ),
    );
    let output = deployment.run(&["import", "people", &bad]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("line 3, column `Date of Birth`, value `30/02/2016`: is not a date"),
        "{report}"
    );
    assert!(report.contains("line 4, column `UPN`"), "{report}");
    assert!(report.contains("already on line 2"), "{report}");
    assert!(report.contains("nothing imported"), "{report}");

    let missing = deployment.write(
        "no-dob.csv",
        &format!("UPN,Surname,Forename,Year,Class\n{a},Quorbin,Brisa,5,5O\n"),
    );
    let output = deployment.run(&["import", "people", &missing]);
    let report = text(&output);
    assert!(!output.status.success());
    assert!(report.contains("missing `Date of Birth`"), "{report}");
    assert!(report.contains("DOB"), "{report}");

    assert_eq!(deployment.sql("SELECT COUNT(*) FROM people"), people_before);
    assert_eq!(
        deployment.sql("SELECT COUNT(*) FROM audit_log"),
        audit_before
    );

    let output = deployment.run(&["import", "people", &bad, "--skip-invalid", "--dry-run"]);
    assert!(text(&output).contains("1 created"), "{}", text(&output));
    assert_eq!(deployment.sql("SELECT COUNT(*) FROM people"), people_before);
    let output = deployment.run(&["import", "people", &bad, "--skip-invalid"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        deployment.sql("SELECT COUNT(*) FROM people"),
        people_before + 1
    );
}

/// The DfE check letter, computed independently of the roster crate.
fn sheepdog_roster_check_letter(body: &str) -> char {
    let sum: usize = body
        .bytes()
        .enumerate()
        .map(|(i, b)| usize::from(b - b'0') * (i + 2))
        .sum();
    char::from(b"ABCDEFGHJKLMNPQRTUVWXYZ"[sum % 23])
}

#[test]
fn check_config_names_file_line_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(
        &file,
        "data_dir = \"/srv\"\n[console]\nlisen = \"127.0.0.1:8080\"\n",
    )
    .unwrap();
    let output = run(&["check-config", file.to_str().unwrap()]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(2), "{report}");
    assert!(
        report.contains("site.toml:3:1: `console.lisen`"),
        "{report}"
    );
    assert!(report.contains("fix: did you mean `listen`?"), "{report}");

    std::fs::write(&file, "[console]\nlisten = \"127.0.0.1:8080\"\n").unwrap();
    let output = run(&["check-config", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn init_refuses_a_guessable_password_and_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sheepdog.toml");
    let weak = dir.path().join("weak");
    std::fs::write(&weak, "password123\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let data = dir.path().join("data");
    let base = [
        "--config",
        config_arg,
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--school",
        "Brackenfield Academy",
        "--admin",
        "admin@brackenfield.invalid",
    ];
    let mut args = base.to_vec();
    args.extend(["--password-file", weak.to_str().unwrap()]);
    let output = run(&args);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("too easy to guess"),
        "{}",
        text(&output)
    );
    assert!(!config.exists());

    let mut args = base.to_vec();
    args.push("--generate-password");
    let output = run(&args);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("password: "));
    assert!(config.is_file());
    let output = run(&args);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("already holds a deployment"),
        "{}",
        text(&output)
    );
}

#[test]
fn lists_update_then_check_explains_decisions() {
    let deployment = Deployment::new();
    let output = deployment.run(&["lists", "update"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = deployment.run(&["check", "www.example-casino.test", "--group", "ks2"]);
    let report = text(&output);
    assert!(report.contains("decision: block"), "{report}");
    assert!(report.contains("category: gambling"), "{report}");

    let output = deployment.run(&[
        "check",
        "csam-example-1.invalid/gallery/0001.html",
        "--group",
        "staff",
    ]);
    let report = text(&output);
    assert!(report.contains("decision: block"), "{report}");
    assert!(report.contains("illegal:  yes"), "{report}");

    // The policy document says the same, from the same policy.
    let file = deployment.dir.path().join("policy.md");
    let output = deployment.run(&["policy", "export", "--output", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let document = std::fs::read_to_string(&file).unwrap();
    assert!(document.starts_with("# Filtering policy: "), "{document}");
    assert!(document.contains("## Illegal content, blocked for everyone"));
    assert!(document.contains("### ks2"), "{document}");
    assert!(document.contains("| Gambling | block |"), "{document}");
}

#[test]
fn serve_answers_logs_json_and_stops_on_sigterm() {
    let deployment = Deployment::new();
    let port = |_: ()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (console, metrics, dns) = (port(()), port(()), port(()));
    // Plain HTTP: this test's client speaks no TLS (the console's TLS is
    // tested over loopback in crates/console).
    let config = deployment.dir.path().join("sheepdog.toml");
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str(&format!(
        "[console]\nlisten = \"127.0.0.1:{console}\"\ntls = false\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [dns]\nlisten = [\"127.0.0.1:{dns}\"]\n"
    ));
    std::fs::write(&config, text_config).unwrap();
    let child = sheepdog()
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
            "serve",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", console)) {
            drop(stream);
            break http_get(&format!("http://127.0.0.1:{console}/healthz"));
        }
        assert!(Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health.0, 200);
    let (status, page) = http_get(&format!("http://127.0.0.1:{console}/"));
    assert_eq!(status, 200);
    assert!(page.contains("Brackenfield Academy"), "{page}");
    let (status, _) = http_get(&format!("http://127.0.0.1:{metrics}/metrics"));
    assert_eq!(status, 200);

    // The resolver answers a blocked name from the sample policy with a
    // real client; the test address is not registered, so it is decided
    // for the default group.
    assert_eq!(
        dig_a(&format!("127.0.0.1:{dns}"), "www.example-casino.test"),
        "0.0.0.0"
    );

    let logs = stop(child);
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(parsed.get("level").is_some(), "{line}");
    }
    assert!(logs.contains("sheepdog is serving"), "{logs}");
    // The sample's IWF-style list is URLs, and DNS is not told where the
    // proxy is: the technician is told what that leaves open.
    assert!(
        logs.contains("URL-level entries") && logs.contains("url_rules_proxy_ipv4"),
        "{logs}"
    );
    // The first start put the policy on the change log as the initial one.
    assert_eq!(
        deployment.sql(
            "SELECT COUNT(*) FROM audit_log WHERE entity = 'filtering_policy' \
             AND actor = 'config file' AND reason = 'initial policy'"
        ),
        1
    );
}

#[test]
fn serve_reads_ingested_text_with_the_schools_own_libraries() {
    let deployment = Deployment::new();
    // A term only the school's library holds (a made-up name for a
    // bullying page).
    let library = deployment.write(
        "school-terms.toml",
        "[library]\nname = \"brackenfield-extra\"\nlanguage = \"en\"\n\n\
         [[terms]]\ncategory = \"bullying\"\nseverity = 4\nphrases = [\"grimble page\"]\n",
    );
    let console = free_port();
    let config = deployment.dir.path().join("sheepdog.toml");
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str(&format!(
        "[console]\nlisten = \"127.0.0.1:{console}\"\ntls = false\n\
         [monitoring]\nlibraries = [\"{library}\"]\n"
    ));
    std::fs::write(&config, text_config).unwrap();
    // An API token for the first administrator (a trust administrator,
    // who may submit monitoring text), stored as the console stores one:
    // by its SHA-256.
    let token = "sdk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    };
    assert_eq!(
        deployment.sql(&format!(
            "INSERT INTO api_tokens (account_id, label, token_hash, created_at) \
             SELECT id, 'agent', '{hash}', '2026-12-08T00:00:00.000000Z' FROM accounts \
             WHERE username = 'admin@brackenfield.invalid'"
        )),
        1
    );
    let child = wait_listening(
        spawn_serve(config.to_str().unwrap()),
        console,
        "the console",
    );
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "40", "--write-out", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", "Content-Type: application/json"])
        .args([
            "--data",
            r#"{"items": [{"source": "chat-export", "address": "10.0.4.17",
                "time": "2026-12-08T09:15:00Z", "text": "everyone post on the grimble page about her"}]}"#,
        ])
        .arg(format!(
            "http://127.0.0.1:{console}/api/v1/monitoring/ingest?school=1"
        ))
        .output()
        .expect("curl is installed by scripts/test");
    let logs = stop(child);
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    assert_eq!(code.trim(), "200", "{body}\n{logs}");
    let reply: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(reply["alerts"][0]["category"], "bullying", "{reply}");
    assert_eq!(
        deployment.sql(
            "SELECT COUNT(*) FROM monitoring_alerts WHERE category = 'bullying' \
             AND matched_text = 'grimble page' AND context LIKE '%brackenfield-extra%'"
        ),
        1
    );
}

/// A deployment whose policy blocks, for the `guest` group, the names in
/// its `blocked.txt` (initially `www.first-blocked.test`), refreshed every
/// `refresh_minutes`, with `serve`'s list check every second. So that what
/// DNS answers depends on the list alone (the example policy blocks
/// everything after hours), the policy is the test's own.
fn list_school(refresh_minutes: u32) -> (Deployment, u16) {
    let deployment = Deployment::new();
    deployment.write("blocked.txt", "www.first-blocked.test\n");
    let policy = deployment.write(
        "policy.toml",
        &format!(
            "fallback_group = \"guest\"\n[school]\nname = \"Brackenfield Academy\"\n\
             time_zone = \"Europe/London\"\n\
             [[lists]]\nname = \"local-block\"\nsource = \"blocked.txt\"\nformat = \"domains\"\n\
             category = \"gambling\"\nrefresh_minutes = {refresh_minutes}\n\
             [[groups]]\nname = \"guest\"\ndefault = \"allow\"\n[groups.categories]\ngambling = \"block\"\n"
        ),
    );
    let (console, metrics, dns) = (free_port(), free_port(), free_port());
    std::fs::write(
        deployment.config(),
        format!(
            "data_dir = \"data\"\n[filtering]\npolicy = \"{policy}\"\nlist_check_seconds = 1\n\
             [console]\nlisten = \"127.0.0.1:{console}\"\ntls = false\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [dns]\nlisten = [\"127.0.0.1:{dns}\"]\n"
        ),
    )
    .unwrap();
    (deployment, dns)
}

/// Starts `serve` for `deployment` and waits until its DNS server (on
/// `dns`) blocks `www.first-blocked.test`. Returns the child and the
/// server's address.
fn serve_lists(deployment: &Deployment, dns: u16) -> (std::process::Child, String) {
    let child = spawn_serve(&deployment.config());
    let server = format!("127.0.0.1:{dns}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while dig_a(&server, "www.first-blocked.test") != "0.0.0.0" {
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let output = child.wait_with_output().unwrap();
            panic!("serve did not answer: {}", text(&output));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, server)
}

/// Waits, bounded, until `name` is blocked: a server that never takes the
/// new list up fails here.
fn wait_blocked(server: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while dig_a(server, name) != "0.0.0.0" {
        assert!(
            Instant::now() < deadline,
            "the new list never came into force"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A technician imports a new copy of a list while `serve` runs: the DNS
/// server blocks the new name without a restart (issue 3, hot reload).
#[test]
fn serve_takes_up_an_imported_list_without_a_restart() {
    let (deployment, dns) = list_school(0);
    let (child, server) = serve_lists(&deployment, dns);
    // Allowed, and with no upstream configured, not answered with an address.
    assert_eq!(dig_a(&server, "www.lucky-meadow.test"), "");

    let copy = deployment.write(
        "new-copy.txt",
        "www.first-blocked.test\nwww.lucky-meadow.test\n",
    );
    let output = deployment.run(&["lists", "import", "--list", "local-block", &copy]);
    assert!(output.status.success(), "{}", text(&output));
    wait_blocked(&server, "www.lucky-meadow.test");

    let logs = stop(child);
    assert!(logs.contains("new list snapshot in force"), "{logs}");
}

/// Someone truncates the snapshot file in place while `serve` runs (`cp`
/// or `>` over it, not `mv`): the server read the file into memory, so it
/// keeps answering from the lists in force (a mapped file would end it
/// with SIGBUS at the next look-up), and refuses the damaged file.
#[test]
fn serve_survives_its_snapshot_file_truncated_in_place() {
    let (deployment, dns) = list_school(0);
    let (child, server) = serve_lists(&deployment, dns);
    let snapshot = deployment.dir.path().join("data/lists/snapshot.sdsnap");
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&snapshot)
        .unwrap();
    // Over two list checks (one a second): the refresh sees the file
    // change and refuses it, and look-ups go on.
    for _ in 0..10 {
        assert_eq!(dig_a(&server, "www.first-blocked.test"), "0.0.0.0");
        std::thread::sleep(Duration::from_millis(300));
    }
    let logs = stop(child);
    assert!(logs.contains("cannot reload the lists"), "{logs}");
}

/// A snapshot file whose name index was damaged on disk (its header and
/// metadata intact) is refused at start, with a warning, and rebuilt from
/// the lists, instead of putting wrong lists in force.
#[test]
fn serve_rebuilds_a_snapshot_whose_name_index_is_damaged() {
    let (deployment, dns) = list_school(0);
    let output = deployment.run(&["lists", "update"]);
    assert!(output.status.success(), "{}", text(&output));
    let snapshot = deployment.dir.path().join("data/lists/snapshot.sdsnap");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&snapshot, &bytes).unwrap();
    let (child, server) = serve_lists(&deployment, dns);
    assert_eq!(dig_a(&server, "www.first-blocked.test"), "0.0.0.0");
    let logs = stop(child);
    assert!(logs.contains("rebuilding the snapshot"), "{logs}");
    assert!(
        logs.contains("name index checksum does not match"),
        "{logs}"
    );
}

/// A list changed at its source is rebuilt by `serve` itself when due, in
/// a child process (`build-snapshot`), and put in force without a restart;
/// the file a restart loads is the new one.
#[test]
fn serve_rebuilds_a_changed_list_in_a_child_process() {
    let (deployment, dns) = list_school(30);
    // A snapshot of the old list, but no fetched copy: the first round
    // finds the list due, and its source changed since the snapshot.
    let output = deployment.run(&["lists", "update"]);
    assert!(output.status.success(), "{}", text(&output));
    std::fs::remove_dir_all(deployment.dir.path().join("data/lists/cache")).unwrap();
    deployment.write(
        "blocked.txt",
        "www.first-blocked.test\nwww.lucky-meadow.test\n",
    );
    let (child, server) = serve_lists(&deployment, dns);
    wait_blocked(&server, "www.lucky-meadow.test");

    let logs = stop(child);
    assert!(logs.contains("new list snapshot in force"), "{logs}");
    assert!(logs.contains("ListsChanged"), "{logs}");
    assert!(!logs.contains("rebuilding in this one"), "{logs}");
    // Nothing left beside the live file, and a restart loads the new lists.
    let lists = deployment.dir.path().join("data/lists");
    assert!(!lists.join("snapshot.next").exists());
    let (child, server) = serve_lists(&deployment, dns);
    assert_eq!(dig_a(&server, "www.lucky-meadow.test"), "0.0.0.0");
    stop(child);
}

/// Stops a `serve` with SIGTERM, as systemd does; it must exit cleanly.
/// Returns what it logged.
fn stop(child: std::process::Child) -> String {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `sheepdog serve` on `config`, its log to a pipe.
fn spawn_serve(config: &str) -> std::process::Child {
    sheepdog()
        .args(["--config", config, "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits, bounded, until `child` listens on loopback `port`; fails with
/// its log if it exits or takes too long.
fn wait_listening(child: std::process::Child, port: u16, what: &str) -> std::process::Child {
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "serve did not start {what}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP origin on loopback answering every request with `origin says hello`.
fn plain_origin() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\nConnection: close\r\n\r\norigin says hello\n",
            );
        }
    });
    port
}

/// curl through a proxy: the status code and body.
fn curl_via(proxy: u16, user: Option<&str>, url: &str) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args([
            "--silent",
            "--max-time",
            "20",
            "--write-out",
            "\n%{http_code}",
        ])
        .args(["--proxy", &format!("http://127.0.0.1:{proxy}")]);
    if let Some(user) = user {
        command.args(["--proxy-user", user]);
    }
    let output = command
        .arg(url)
        .output()
        .expect("curl is installed by scripts/test");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn ca_init_then_serve_inspects_and_asks_proxy_users_to_sign_in() {
    let deployment = Deployment::new();
    let output = deployment.run(&["ca", "init"]);
    assert!(output.status.success(), "{}", text(&output));
    let key = deployment.dir.path().join("data/inspection-ca.key");
    let certificate = deployment.dir.path().join("data/inspection-ca.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read_to_string(&certificate).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let again = deployment.run(&["ca", "init"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(std::fs::read_to_string(&certificate).unwrap(), pem);

    let (console, metrics, dns, proxy) = (free_port(), free_port(), free_port(), free_port());
    let origin = plain_origin();
    let config = deployment.dir.path().join("sheepdog.toml");
    // A policy without the sample's after-hours schedule, so the answer
    // does not depend on when the test runs.
    let policy = deployment.write(
        "policy.toml",
        "fallback_group = \"guest\"\n[school]\nname = \"Brackenfield Academy\"\n\
         time_zone = \"Europe/London\"\n[[groups]]\nname = \"guest\"\ndefault = \"allow\"\n",
    );
    let sample = repo().join("dist/policy.example.toml");
    let mut text_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&sample.display().to_string(), &policy);
    text_config.push_str(&format!(
        "[console]\nlisten = \"127.0.0.1:{console}\"\ntls = false\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [dns]\nlisten = [\"127.0.0.1:{dns}\"]\n\
         [proxy]\nenabled = true\nlisten = [\"127.0.0.1:{proxy}\"]\n\
         inspection = true\nauthentication = \"basic\"\n"
    ));
    std::fs::write(&config, text_config).unwrap();
    let child = wait_listening(spawn_serve(config.to_str().unwrap()), proxy, "the proxy");
    let url = format!("http://127.0.0.1:{origin}/lesson");
    let (status, _) = curl_via(proxy, None, &url);
    assert_eq!(status, 407, "no credentials: asked to sign in");
    let (status, _) = curl_via(
        proxy,
        Some("admin@brackenfield.invalid:not-the-password"),
        &url,
    );
    assert_eq!(status, 407, "a wrong password is refused");
    let user = format!("admin@brackenfield.invalid:{}", deployment.password);
    let (status, body) = curl_via(proxy, Some(&user), &url);
    assert_eq!((status, body.as_str()), (200, "origin says hello\n"));

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A command run inside the network namespace `ns`.
fn in_ns(ns: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, program]);
    command
}

fn must(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", text(&output));
}

/// Two network namespaces joined by a veth pair: a school server at
/// 10.201.N.1 (the router's redirect rules, sheepdog and the origins) and a
/// pupil's device at 10.201.N.2. Removed, with everything in them, on drop.
struct SchoolNetwork {
    server: String,
    device: String,
    subnet: u32,
    children: Vec<std::process::Child>,
}

impl SchoolNetwork {
    fn new() -> Self {
        let id = std::process::id();
        let subnet = id % 250 + 1;
        let network = Self {
            server: format!("sds{id}"),
            device: format!("sdd{id}"),
            subnet,
            children: Vec::new(),
        };
        let (sv, dv) = (format!("vs{id}"), format!("vd{id}"));
        must(Command::new("ip").args(["netns", "add", &network.server]));
        must(Command::new("ip").args(["netns", "add", &network.device]));
        must(Command::new("ip").args(["link", "add", &sv, "type", "veth", "peer", "name", &dv]));
        must(Command::new("ip").args(["link", "set", &sv, "netns", &network.server]));
        must(Command::new("ip").args(["link", "set", &dv, "netns", &network.device]));
        for (ns, dev, host) in [(&network.server, &sv, 1), (&network.device, &dv, 2)] {
            let address = format!("10.201.{subnet}.{host}/24");
            must(in_ns(ns, "ip").args(["addr", "add", &address, "dev", dev]));
            must(in_ns(ns, "ip").args(["link", "set", dev, "up"]));
            must(in_ns(ns, "ip").args(["link", "set", "lo", "up"]));
        }
        network
    }

    fn server_ip(&self) -> String {
        format!("10.201.{}.1", self.subnet)
    }

    fn spawn(&mut self, mut command: Command) {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// curl on the pupil's device: exit code, HTTP status and body.
    fn curl(&self, args: &[&str]) -> (i32, u16, String) {
        let output = in_ns(&self.device, "curl")
            .args([
                "--silent",
                "--max-time",
                "10",
                "--write-out",
                "\n%{http_code}",
            ])
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (
            output.status.code().unwrap_or(-1),
            code.trim().parse().unwrap_or(0),
            body.to_string(),
        )
    }
}

impl Drop for SchoolNetwork {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.server, &self.device] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn transparent_mode_filters_redirected_traffic_and_url_listed_hosts() {
    let deployment = Deployment::new();
    let mut network = SchoolNetwork::new();
    let server = network.server_ip();
    // The router's rules: the pupil network's web traffic goes to sheepdog.
    for (port, to) in [("80", "3129"), ("443", "3130")] {
        must(in_ns(&network.server, "iptables").args([
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "-s",
            &format!("10.201.{}.2", network.subnet),
            "--dport",
            port,
            "-j",
            "REDIRECT",
            "--to-ports",
            to,
        ]));
    }
    // The origins the pupil means: a plain web server and a TLS one.
    let site = deployment.dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("lesson.html"), "volcanoes lesson\n").unwrap();
    let mut origin = in_ns(&network.server, "python3");
    origin.args(["-m", "http.server", "80", "--bind", &server, "--directory"]);
    origin.arg(&site);
    network.spawn(origin);
    // The TLS origin's certificate, from an authority of its own that the
    // proxy is told to trust for the tunnels it inspects.
    let (key, cert) = (site.join("tls.key"), site.join("tls.crt"));
    let (origin_ca_key, origin_ca) = (site.join("origin-ca.key"), site.join("origin-ca.pem"));
    let request = site.join("tls.csr");
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    must(
        Command::new("openssl")
            .args(["req", "-x509", "-days", "2"])
            .args(new_key)
            .args([
                "-subj",
                "/CN=Origin Test Authority",
                "-keyout",
                origin_ca_key.to_str().unwrap(),
                "-out",
                origin_ca.to_str().unwrap(),
            ]),
    );
    must(Command::new("openssl").args(["req"]).args(new_key).args([
        "-subj",
        "/CN=museum.test",
        "-addext",
        "subjectAltName=DNS:museum.test,DNS:www.casino.test",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        request.to_str().unwrap(),
    ]));
    must(Command::new("openssl").args([
        "x509",
        "-req",
        "-days",
        "2",
        "-copy_extensions",
        "copyall",
        "-in",
        request.to_str().unwrap(),
        "-CA",
        origin_ca.to_str().unwrap(),
        "-CAkey",
        origin_ca_key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]));
    let mut tls_origin = in_ns(&network.server, "openssl");
    tls_origin.args(["s_server", "-www", "-accept", &format!("{server}:443")]);
    tls_origin.args([
        "-key",
        key.to_str().unwrap(),
        "-cert",
        cert.to_str().unwrap(),
    ]);
    network.spawn(tls_origin);

    // sheepdog on the school server, with a policy that blocks gambling,
    // and an IWF-style list that names one page of the museum by URL.
    std::fs::write(deployment.dir.path().join("casinos.txt"), "casino.test\n").unwrap();
    std::fs::write(
        deployment.dir.path().join("iwf.txt"),
        "museum.test/forbidden/page.html\n",
    )
    .unwrap();
    let policy = deployment.write(
        "policy.toml",
        "fallback_group = \"guest\"\n[school]\nname = \"Brackenfield Academy\"\n\
         time_zone = \"Europe/London\"\n[[lists]]\nname = \"casinos\"\nsource = \"casinos.txt\"\n\
         format = \"domains\"\ncategory = \"gambling\"\n\
         [[lists]]\nname = \"iwf\"\nsource = \"iwf.txt\"\nformat = \"urls\"\ncategory = \"iwf\"\n\
         legal_requirement = true\n[[groups]]\nname = \"guest\"\n\
         default = \"allow\"\n[groups.categories]\ngambling = \"block\"\n",
    );
    let authority = deployment.run(&["ca", "init"]);
    assert!(authority.status.success(), "{}", text(&authority));
    let config = deployment.dir.path().join("sheepdog.toml");
    let sample = repo().join("dist/policy.example.toml");
    let mut text_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&sample.display().to_string(), &policy);
    text_config.push_str(&format!(
        "[console]\nlisten = \"127.0.0.1:8443\"\ntls = false\n\
         [metrics]\nlisten = \"127.0.0.1:9100\"\n\
         [dns]\nlisten = [\"127.0.0.1:5353\", \"{server}:53\"]\n\
         url_rules_proxy_ipv4 = \"{server}\"\n\
         [proxy]\nenabled = true\nlisten = [\"127.0.0.1:3128\"]\n\
         transparent_http = [\"{server}:3129\"]\ntransparent_https = [\"{server}:3130\"]\n\
         client_networks = [\"10.201.{}.0/24\", \"127.0.0.0/8\"]\n\
         inspection = true\nupstream_roots = \"{}\"\n",
        network.subnet,
        origin_ca.display()
    ));
    std::fs::write(&config, text_config).unwrap();
    let lists = deployment.run(&["lists", "update"]);
    assert!(lists.status.success(), "{}", text(&lists));
    let mut serve = in_ns(&network.server, env!("CARGO_BIN_EXE_sheepdog"));
    serve
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_remove("SHEEPDOG_CONFIG");
    network.spawn(serve);

    // The pupil's device has no proxy settings: it asks for the origin.
    let lesson = format!("http://{server}/lesson.html");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = network.curl(&[&lesson]);
    while last.1 != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        last = network.curl(&[&lesson]);
    }
    assert_eq!(
        (last.1, last.2.as_str()),
        (200, "volcanoes lesson\n"),
        "the redirected request reached the origin it was meant for"
    );
    // The same address under a blocked Host gets the block page.
    let (_, status, body) = network.curl(&["-H", "Host: www.casino.test", &lesson]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("blocked"), "{body}");

    // TLS: decided on the server name, carried to the original address.
    let resolve = |name: &str| format!("{name}:443:{server}");
    let (exit, status, body) = network.curl(&[
        "--insecure",
        "--resolve",
        &resolve("museum.test"),
        "https://museum.test/",
    ]);
    assert_eq!((exit, status), (0, 200), "{body}");
    let (exit, _, _) = network.curl(&[
        "--insecure",
        "--resolve",
        &resolve("www.casino.test"),
        "https://www.casino.test/",
    ]);
    assert_ne!(exit, 0, "a blocked server name ends the connection");

    // A device that only uses sheepdog's DNS: a host the IWF-style list
    // names by URL is answered with the proxy's address, and there the
    // tunnel is inspected, so the listed page is refused and the rest of
    // the site is served.
    let dig = in_ns(&network.device, "dig")
        .args([&format!("@{server}"), "+short", "museum.test", "A"])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&dig.stdout).trim().to_string();
    assert_eq!(answer, server, "{}", text(&dig));
    let school_authority = deployment.dir.path().join("data/inspection-ca.pem");
    let inspected = |path: &str| {
        network.curl(&[
            "--cacert",
            school_authority.to_str().unwrap(),
            "--resolve",
            &format!("museum.test:443:{answer}"),
            &format!("https://museum.test{path}"),
        ])
    };
    let (exit, status, body) = inspected("/forbidden/page.html");
    assert_eq!((exit, status), (0, 403), "{body}");
    let (exit, status, body) = inspected("/");
    assert_eq!((exit, status), (0, 200), "{body}");

    // And every decision is in the log with the pupil's address, once
    // sheepdog has stopped and written what it queued.
    let serve = network.children.pop().unwrap();
    Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    let output = serve.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let blocked = deployment.sql(&format!(
        "SELECT COUNT(*) FROM decision_events WHERE action = 'block' AND client = '10.201.{}.2'",
        network.subnet
    ));
    assert!(blocked >= 2, "{blocked} blocked events recorded");
    let illegal = deployment.sql(&format!(
        "SELECT COUNT(*) FROM decision_events WHERE action = 'block' AND category = 'iwf' \
         AND client = '10.201.{}.2'",
        network.subnet
    ));
    assert_eq!(illegal, 1, "the listed page's block is recorded");
}

/// A JPEG holding only an XMP packet with a description and person tags.
fn jpeg_with_xmp(description: &str, people: &[&str]) -> Vec<u8> {
    let bag: String = people
        .iter()
        .map(|p| format!("<rdf:li>{p}</rdf:li>"))
        .collect();
    let packet = format!(
        "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF \
         xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"><rdf:Description \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
         xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\">\
         <dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">{description}</rdf:li></rdf:Alt></dc:description>\
         <Iptc4xmpExt:PersonInImage><rdf:Bag>{bag}</rdf:Bag></Iptc4xmpExt:PersonInImage>\
         </rdf:Description></rdf:RDF></x:xmpmeta>"
    );
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&u16::try_from(packet.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(packet.as_bytes());
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[test]
fn publish_check_reports_withdrawn_consent_and_hidden_names() {
    let deployment = Deployment::new();
    let upn = |body: &str| format!("{}{body}", sheepdog_roster_check_letter(body));
    let (a, b) = (upn("999200100001"), upn("999200100002"));
    let roster = deployment.write(
        "pupils.csv",
        &format!(
            "UPN,Legal Surname,Legal Forename,Date of Birth,Year,Reg Group\n\
             {a},Quorbin,Brisa,04/09/2016,5,5O\n\
             {b},Vesk,Coren,05/10/2016,5,5O\n"
        ),
    );
    let output = deployment.run(&["import", "people", &roster]);
    assert!(output.status.success(), "{}", text(&output));
    let id = |upn: &str| deployment.sql(&format!("SELECT id FROM people WHERE upn = '{upn}'"));
    let (brisa, coren) = (id(&a), id(&b));
    for (pupil, withdrawn) in [(brisa, "NULL"), (coren, "'2026-10-01T09:00:00.000000Z'")] {
        deployment.sql(&format!(
            "INSERT INTO image_consents (school_id, pupil_id, purpose, granted, given_by_name, \
             given_on, withdrawn_at, recorded_by, created_at) VALUES (1, {pupil}, 'website', 1, \
             'Carer', '2026-09-05', {withdrawn}, 'cli:test', '2026-09-05T09:00:00.000000Z')"
        ));
    }
    let photos = deployment.dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(
        photos.join("IMG_0001.jpg"),
        jpeg_with_xmp("Well done Brisa Quorbin", &[&a]),
    )
    .unwrap();
    std::fs::write(photos.join("IMG_0002.jpg"), jpeg_with_xmp("Relay", &[&b])).unwrap();
    let dir = photos.display().to_string();

    let output = deployment.run(&["publish-check", &dir, "--purpose", "website"]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("IMG_0001.jpg: XMP dc:description contains Brisa Quorbin's full name"),
        "{report}"
    );
    assert!(
        report.contains("IMG_0002.jpg: Coren Vesk is in the image: consent withdrawn"),
        "{report}"
    );
    assert!(
        report.contains("2 image(s) checked for website: 2 thing(s) to fix"),
        "{report}"
    );

    let output = deployment.run(&["publish-check", &dir, "--purpose", "billboards"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("not one of the school's consent purposes"),
        "{}",
        text(&output)
    );

    // The school's own list (kept as the console's purposes form keeps
    // it): a new purpose is checked, a retired one is refused by name.
    deployment.sql(
        "INSERT INTO consent_purposes (school_id, purpose, title, position, retired_at) VALUES \
         (1, 'website', 'School website', 0, '2026-10-01T09:00:00.000000Z'), \
         (1, 'sports_day', 'Sports day programme', 1, NULL)",
    );
    let output = deployment.run(&["publish-check", &dir, "--purpose", "sports_day"]);
    let report = text(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("IMG_0001.jpg: Brisa Quorbin is in the image: no consent on record"),
        "{report}"
    );
    let output = deployment.run(&["publish-check", &dir, "--purpose", "website"]);
    assert!(!output.status.success());
    let refused = text(&output);
    assert!(
        refused.contains("not one of the school's consent purposes; use one of: sports_day"),
        "{refused}"
    );
}

#[test]
fn policy_apply_puts_each_edit_of_the_file_on_the_change_log() {
    let deployment = Deployment::new();
    let base = "fallback_group = \"guest\"\n[school]\nname = \"Brackenfield Academy\"\n\
                [[groups]]\nname = \"guest\"\ndefault = \"block\"\n\
                [[groups]]\nname = \"ks2\"\ndefault = \"allow\"\n\
                [groups.categories]\ngambling = \"block\"\n";
    let policy = deployment.write("policy.toml", base);
    let config = deployment.dir.path().join("sheepdog.toml");
    let sample = repo().join("dist/policy.example.toml");
    let text_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&sample.display().to_string(), &policy);
    std::fs::write(&config, text_config).unwrap();
    let admin = "admin@brackenfield.invalid";
    let policy_entries = |reason: &str| {
        deployment.sql(&format!("SELECT COUNT(*) FROM audit_log WHERE entity = 'filtering_policy' AND reason = '{reason}'"))
    };

    // The first apply records the whole policy as one item.
    let output = deployment.run(&[
        "policy",
        "apply",
        "--reason",
        "Starting policy",
        "--by",
        admin,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("1 changed item"),
        "{}",
        text(&output)
    );
    assert_eq!(policy_entries("Starting policy"), 1);

    // An edit: each changed item with its before and after.
    deployment.write(
        "policy.toml",
        &base.replace(
            "gambling = \"block\"\n",
            "gambling = \"block\"\ngames = \"block\"\n[groups.safe_search]\nyoutube = \"moderate\"\n",
        ),
    );
    let reason = "Games blocked for KS2 in lessons";
    let output = deployment.run(&["policy", "apply", "--reason", reason, "--by", admin]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("2 changed items"),
        "{}",
        text(&output)
    );
    assert_eq!(policy_entries(reason), 2);
    assert_eq!(
        deployment.sql(
            "SELECT COUNT(*) FROM audit_log WHERE entity = 'filtering_policy' \
             AND entity_id = 'group ks2: category games' AND action = 'add' \
             AND after_state = '\"block\"' AND actor LIKE 'account:%:admin@brackenfield.invalid'"
        ),
        1
    );
    assert_eq!(
        deployment.sql(
            "SELECT COUNT(*) FROM audit_log WHERE entity_id = 'group ks2: safe_search' \
             AND before_state LIKE '%\"youtube\":\"strict\"%' AND after_state LIKE '%\"youtube\":\"moderate\"%'"
        ),
        1
    );

    // Applying the same file again records nothing.
    let output = deployment.run(&["policy", "apply", "--reason", "again", "--by", admin]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("no change"), "{}", text(&output));
    assert_eq!(policy_entries("again"), 0);

    // A file the filter would refuse is not applied, and says why.
    deployment.write("policy.toml", &base.replace("gambling", "no-such-category"));
    let output = deployment.run(&["policy", "apply", "--reason", "typo", "--by", admin]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("no-such-category"),
        "{}",
        text(&output)
    );
    assert!(
        text(&output).contains("is not applied"),
        "{}",
        text(&output)
    );
    assert_eq!(policy_entries("typo"), 0);

    // A teacher may not apply; the refusal is on the change log.
    deployment.write("policy.toml", base);
    deployment.sql(
        "INSERT INTO accounts (username, display_name, password_hash, created_at) \
         VALUES ('teacher@brackenfield.invalid', 'Teacher', '$argon2id$none', '2026-09-01T08:00:00Z')",
    );
    deployment.sql(
        "INSERT INTO account_roles (account_id, school_id, role) SELECT a.id, s.id, 'teacher' \
         FROM accounts a, schools s WHERE a.username = 'teacher@brackenfield.invalid'",
    );
    let output = deployment.run(&[
        "policy",
        "apply",
        "--reason",
        "mine",
        "--by",
        "teacher@brackenfield.invalid",
    ]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("may not change filtering"),
        "{}",
        text(&output)
    );
    assert_eq!(policy_entries("mine"), 0);
    assert_eq!(
        deployment.sql(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'refused' AND entity = 'filtering' \
             AND actor LIKE '%teacher@brackenfield.invalid'"
        ),
        1
    );

    // An account that does not exist is named.
    let output = deployment.run(&["policy", "apply", "--reason", "x", "--by", "nobody"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("no console account called \"nobody\""),
        "{}",
        text(&output)
    );

    // The PDF of the same policy.
    let file = deployment.dir.path().join("policy.pdf");
    let output = deployment.run(&[
        "policy",
        "export",
        "--format",
        "pdf",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let pdf = std::fs::read(&file).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let pdf = String::from_utf8_lossy(&pdf);
    assert!(pdf.contains("Filtering policy: Brackenfield Academy"));
    assert!(pdf.contains("ks2") && pdf.contains("Gambling"), "{pdf}");
    let output = deployment.run(&["policy", "export", "--format", "pdf"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("--out FILE"), "{}", text(&output));

    // The database still verifies: every entry is chained.
    let output = deployment.run(&["audit", "verify"]);
    assert!(output.status.success(), "{}", text(&output));
}
