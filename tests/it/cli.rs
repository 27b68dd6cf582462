//! The `tollgate` binary: check, gen-secret, gen-key, hash-password, and run with its exit codes
//! and SIGTERM handling.

use crate::common::{self, refused_url, Upstream};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn tollgate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the tollgate binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

pub(crate) fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write file");
    path
}

/// `N` different loopback addresses that were free a moment ago (the OS picked them): all
/// held while it picks, so that none is picked twice, as separate picks now and then are.
pub(crate) fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let held: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").expect("bind loopback"));
    held.map(|listener| listener.local_addr().expect("bound"))
}

/// A config with two open routes that needs no verifier, listening on the given ports;
/// `/api/mail/x` reaches the upstream as `/x`.
pub(crate) fn valid_config(listen: SocketAddr, internal: SocketAddr, upstream: &str) -> String {
    format!(
        r#"[server]
listen = "{listen}"
internal_listen = "{internal}"

[oauth]
store = "memory"

[[routes]]
name = "mail"
path_prefix = "/api/mail"
upstream = "{upstream}"
strip_prefix = true
auth = "none"

[[routes]]
name = "files"
path_prefix = "/files"
upstream = ["{upstream}", "http://127.0.0.1:9/"]
timeout = "5s"
auth = "none"
"#
    )
}

/// `tollgate run` as a child process, killed if a test fails before it stops.
pub(crate) struct Running {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Running {
    pub(crate) fn start(config: &Path) -> Running {
        let stderr = config.with_extension("stderr");
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("tollgate starts");
        Running {
            child: Some(child),
            stderr,
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("not yet reaped")
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Polls (at most 10 s) until `addr` accepts connections.
    pub(crate) fn wait_until_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                panic!("tollgate exited with {status}:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "{addr} not listening after 10 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigterm(&mut self) {
        self.signal("TERM");
    }

    /// Sends `kill -NAME` to the process.
    pub(crate) fn signal(&mut self, name: &str) {
        let pid = self.child().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Polls (at most 15 s) for the exit and returns its code.
    fn wait_for_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                self.child = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "no exit 15 s after SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn check_reports_every_mistake_with_the_file_and_key_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        dir.path(),
        "gateway.toml",
        r#"[server]
listen = "not-an-address"
internal_listen = "127.0.0.1:0"

[[routes]]
name = "mail"
path_prefix = "/api/mail"
upstream = "http://127.0.0.1:3000"
auth = "none"
colour = "blue"

[[routes]]
name = "files"
path_prefix = "/files"
upstream = "ftp://files.internal"
auth = "none"
"#,
    );
    let out = tollgate(&["check", "-c", path.to_str().expect("UTF-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let file = path.display().to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
    assert_eq!(lines.len(), 3, "one line per mistake:\n{stderr}");
    let line_with = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line names {needle}:\n{stderr}"))
            .to_string()
    };
    assert!(line_with("[server].listen").contains("not-an-address"));
    assert!(line_with("[server].listen").starts_with(&format!("{file}:2:1: ")));
    assert!(line_with(r#"[[routes]] "mail".colour"#).starts_with(&format!("{file}:10:1: ")));
    assert!(line_with(r#"[[routes]] "files".upstream"#).contains("ftp://files.internal"));
    assert!(line_with(r#"[[routes]] "files".upstream"#).starts_with(&format!("{file}:15:1: ")));
    assert!(out.stdout.is_empty(), "no route table for a broken config");
}

#[test]
fn check_refuses_credentials_in_upstream_urls_without_printing_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let [listen, internal] = free_addrs();
    let config = valid_config(listen, internal, "http://u:p@127.0.0.1:1");
    let path = write(dir.path(), "gateway.toml", &config);
    let out = tollgate(&["check", "-c", path.to_str().expect("UTF-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let file = path.display().to_string();
    for (route, line) in [("mail", 11), ("files", 18)] {
        let key =
            format!("{file}:{line}:1: [[routes]] \"{route}\".upstream: \"http://***@127.0.0.1:1\"");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&key) && l.contains("credentials")),
            "no line for {route}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("u:p@"),
        "the password was printed:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "no route table for a broken config");
}

/// One way start-up can fail: a config (`{L}`, `{I}`, `{T}` stand for free loopback
/// addresses), the files beside it, and the one problem line both commands must print,
/// after the file name.
struct StartFailure {
    what: &'static str,
    config: &'static str,
    files: &'static [(&'static str, &'static str)],
    line: &'static str,
}

/// Lines 1–5 of most cases below.
const HEAD: &str =
    "[server]\nlisten = \"{L}\"\ninternal_listen = \"{I}\"\n[oauth]\nstore = \"memory\"\n";

const START_FAILURES: &[StartFailure] = &[
    StartFailure {
        what: "a users file named in [users] that is missing",
        config: "{HEAD}[users]\nfile = \"nope.toml\"\n",
        files: &[],
        line: ":7:1: [users].file: cannot read the users file",
    },
    StartFailure {
        what: "a users file that does not parse",
        config: "{HEAD}[users]\nfile = \"users.toml\"\n",
        files: &[("users.toml", "[[users]]\nusername = 1\n")],
        line: ":7:1: [users].file: cannot read the users file",
    },
    StartFailure {
        what: "a TLS certificate file that is missing",
        config: "{HEAD}[server.tls]\nlisten = \"{T}\"\ncert = \"missing.pem\"\nkey = \"key.pem\"\n",
        files: &[],
        line: ":8:1: [server.tls].cert: cannot read",
    },
    StartFailure {
        what: "a TLS key file without a key",
        config: "{HEAD}[server.tls]\nlisten = \"{T}\"\ncert = \"cert.pem\"\nkey = \"bad.pem\"\n",
        files: &[("bad.pem", "not a key\n")],
        line: ":9:1: [server.tls].key: ",
    },
    StartFailure {
        what: "a Cluster URL with a database",
        config: "[server]\nlisten = \"{L}\"\ninternal_listen = \"{I}\"\n[oauth]\nstore = \"redis+cluster://127.0.0.1:6379/0\"\n",
        files: &[],
        line: ":5:1: [oauth].store: \"redis+cluster://127.0.0.1:6379/0\": a Redis Cluster has no database number",
    },
    StartFailure {
        what: "a Sentinel URL without a master name",
        config: "[server]\nlisten = \"{L}\"\ninternal_listen = \"{I}\"\n[oauth]\nstore = \"redis+sentinel://127.0.0.1:26379\"\n",
        files: &[],
        line: ":5:1: [oauth].store: \"redis+sentinel://127.0.0.1:26379\": no master name",
    },
    StartFailure {
        what: "an SQLite path below a file",
        config: "[server]\nlisten = \"{L}\"\ninternal_listen = \"{I}\"\n[oauth]\nstore = \"sqlite:blocker/tollgate.db\"\n",
        files: &[("blocker", "a file, not a directory\n")],
        line: ":5:1: [oauth].store: cannot create",
    },
    StartFailure {
        what: "an access log below a file",
        config: "{HEAD}[log]\naccess = \"blocker/access.log\"\n",
        files: &[("blocker", "a file, not a directory\n")],
        line: ":7:1: [log].access: cannot create",
    },
    StartFailure {
        what: "a port out of range",
        config: "[server]\nlisten = \"127.0.0.1:99999\"\ninternal_listen = \"{I}\"\n",
        files: &[],
        line: ":2:1: [server].listen: \"127.0.0.1:99999\" is not an address",
    },
    StartFailure {
        what: "two listeners on one address",
        config: "[server]\nlisten = \"{L}\"\ninternal_listen = \"{L}\"\n",
        files: &[],
        line: ":3:1: [server].internal_listen: ",
    },
    StartFailure {
        what: "a secret file that cannot be read",
        config: "{HEAD}[verify]\nsource = \"remote\"\nurl = \"http://127.0.0.1:1/verify\"\nclient_id = \"gw\"\nclient_secret_file = \"missing-secret\"\n",
        files: &[],
        line: ":10:1: [verify].client_secret_file: cannot read",
    },
    StartFailure {
        what: "an LDAP CA file that does not load",
        config: "{HEAD}[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"ldaps://127.0.0.1:1\"\nuser_dn = \"uid={username},dc=example\"\nca_file = \"ca.pem\"\n",
        files: &[("ca.pem", "not a certificate\n")],
        line: ":11:1: [users.ldap].ca_file: cannot load the CA certificates",
    },
    StartFailure {
        what: "a JWT signing key file that is missing",
        config: "{HEAD}token_format = \"jwt\"\nsigning_key = \"missing.pem\"\n",
        files: &[],
        line: ":7:1: [oauth].signing_key: \"missing.pem\": cannot read",
    },
    StartFailure {
        what: "a JWT signing key of a type tollgate does not sign with",
        config: "{HEAD}token_format = \"jwt\"\nsigning_key = \"rsa.pem\"\n",
        files: &[("rsa.pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n")],
        line: ":7:1: [oauth].signing_key: \"rsa.pem\": not an ECDSA P-256 (ES256) or Ed25519",
    },
    StartFailure {
        what: "a typo in a key",
        config: "{HEAD}[users]\nsorce = \"ldap\"\nfile = \"nope.toml\"\n",
        files: &[],
        line: ":7:1: [users].sorce: unknown key",
    },
];

/// Writes the case's config and files into `dir` and returns the config's path.
fn write_case(dir: &Path, case: &StartFailure) -> PathBuf {
    crate::common::tls::write_self_signed(dir);
    for (name, body) in case.files {
        write(dir, name, body);
    }
    let [listen, internal, tls] = free_addrs();
    let config = case
        .config
        .replace("{HEAD}", HEAD)
        .replace("{L}", &listen.to_string())
        .replace("{I}", &internal.to_string())
        .replace("{T}", &tls.to_string());
    write(dir, "gateway.toml", &config)
}

/// `tollgate run` on a config it must refuse: its exit code and stderr (killed after 10 s).
fn run_refused(config: &Path) -> (Option<i32>, String) {
    let mut running = Running::start(config);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = running.child().try_wait().expect("try_wait") {
            running.child = None;
            return (status.code(), running.stderr());
        }
        if Instant::now() > deadline {
            return (None, running.stderr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn check_refuses_everything_run_refuses_with_the_same_one_line() {
    for case in START_FAILURES {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_case(dir.path(), case);
        let file = path.display().to_string();
        let want = format!("{file}{}", case.line);

        let out = tollgate(&["check", "-c", &file]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: check\n{stderr}", case.what);
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: exactly one problem\n{stderr}",
            case.what
        );
        assert!(
            lines[0].starts_with(&want),
            "{}: check said\n{stderr}\nwanted a line starting {want}",
            case.what
        );
        let parts: Vec<&str> = lines[0].split(": ").collect();
        assert!(
            parts.windows(2).all(|w| w[0] != w[1]),
            "{}: a cause said twice\n{}",
            case.what,
            lines[0]
        );
        assert!(out.stdout.is_empty(), "{}: no route table", case.what);

        let (code, run_stderr) = run_refused(&path);
        assert_eq!(code, Some(1), "{}: run\n{run_stderr}", case.what);
        assert!(
            run_stderr.lines().any(|l| l == lines[0]),
            "{}: run said\n{run_stderr}\ncheck said {}",
            case.what,
            lines[0]
        );
    }
}

#[test]
fn check_accepts_what_run_accepts_beside_the_refused_cases() {
    // The same files with the mistake fixed pass: the table above fails for its one reason.
    let dir = tempfile::tempdir().expect("temp dir");
    crate::common::tls::write_self_signed(dir.path());
    write(dir.path(), "secret", "s3cret\n");
    write(dir.path(), "users.toml", "");
    let [listen, internal, tls] = free_addrs();
    let config = format!(
        "{}[server.tls]\nlisten = \"{}\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [users]\nfile = \"users.toml\"\n[verify]\nsource = \"remote\"\n\
         url = \"http://127.0.0.1:1/verify\"\nclient_id = \"gw\"\nclient_secret_file = \"secret\"\n",
        HEAD.replace("{L}", &listen.to_string())
            .replace("{I}", &internal.to_string())
            .replace("store = \"memory\"", "store = \"sqlite:data/tollgate.db\""),
        tls
    );
    let path = write(dir.path(), "gateway.toml", &config);
    let out = tollgate(&["check", "-c", path.to_str().expect("UTF-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !dir.path().join("data").exists(),
        "check creates no store directory"
    );
}

#[test]
fn check_prints_the_route_table_of_a_valid_config_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let [listen, internal] = free_addrs();
    let config = valid_config(listen, internal, "http://127.0.0.1:3000");
    let path = write(dir.path(), "gateway.toml", &config);
    let out = tollgate(&["check", "-c", path.to_str().expect("UTF-8 path")]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(rows[0].starts_with("ROUTE"), "a header row:\n{stdout}");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .to_string()
    };
    assert!(row("mail").contains("/api/mail"));
    assert!(row("files").contains("/files"));
    assert!(row("files").contains("http://127.0.0.1:9/"));
}

#[test]
fn gen_secret_prints_a_secret_and_its_hash_as_two_toml_lines() {
    let out = tollgate(&["gen-secret"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let secret = lines[0]
        .strip_prefix("client_secret = \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("first line: {}", lines[0]));
    assert!(secret.len() >= 43, "256 bits need 43 base64 characters");
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "URL-safe: {secret}"
    );
    let hash = lines[1]
        .strip_prefix("secret_hash = \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("second line: {}", lines[1]));
    assert!(hash.starts_with("sha256:"), "{hash}");
    assert!(tollgate::secrets::verify_secret(secret, hash));
    assert!(!tollgate::secrets::verify_secret("not-the-secret", hash));
    // A second run makes a different secret.
    assert_ne!(text(&tollgate(&["gen-secret"]).stdout), stdout);
}

#[test]
fn hash_password_prints_an_argon2id_hash_of_stdin_without_its_newline() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"correct horse battery staple\n")
        .expect("write password");
    let out = child.wait_with_output().expect("tollgate exits");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let phc = stdout.trim_end_matches('\n');
    assert!(!phc.contains('\n'), "one line only: {stdout:?}");
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(tollgate::secrets::verify_password(
        "correct horse battery staple",
        phc
    ));
    assert!(!tollgate::secrets::verify_password(
        "correct horse battery staple\n",
        phc
    ));
}

/// `tollgate hash-password` on a real pseudo-terminal: util-linux's `script` runs it with
/// a pty as its terminal and relays what we write as keystrokes, and everything printed
/// on the terminal (prompts, echo, the hash) comes back on its stdout.
struct OnTerminal {
    child: Child,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl OnTerminal {
    fn hash_password() -> OnTerminal {
        let mut child = Command::new("script")
            .args(["-qec", &format!("'{BIN}' hash-password"), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("util-linux `script` runs (Debian: apt-get install bsdutils)");
        let mut out = child.stdout.take().expect("piped stdout");
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("screen lock")
                    .extend_from_slice(&buf[..n]);
            }
        });
        OnTerminal {
            child,
            screen,
            reader,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen lock")).into_owned()
    }

    /// Waits (at most 10 s) until the terminal shows `prompt`, then types `line` and Enter.
    fn answer(&mut self, prompt: &str, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.screen().contains(prompt) {
            assert!(
                Instant::now() < deadline,
                "no {prompt:?} on the terminal after 10 s:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The prompt is printed just before echo is switched off, and nothing outside the
        // terminal can see when that happened: type a moment later, as a person would
        // (typing at once sometimes beat it, and the pty echoed the password).
        std::thread::sleep(Duration::from_millis(300));
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin
            .write_all(format!("{line}\r").as_bytes())
            .expect("type on the terminal");
        stdin.flush().expect("flush");
    }

    /// Waits (at most 30 s: argon2 runs) for the exit; its code and the whole screen.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // `script` has exited, so its stdout is closed: the reader ends at EOF.
                let OnTerminal { screen, reader, .. } = self;
                reader.join().expect("reader thread");
                let screen = String::from_utf8_lossy(&screen.lock().expect("lock")).into_owned();
                return (status.code(), screen);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("hash-password did not exit:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn hash_password_on_a_terminal_asks_twice_without_echo() {
    let mut term = OnTerminal::hash_password();
    term.answer("Password: ", "tr0ub4dor&3");
    term.answer("Repeat the password: ", "tr0ub4dor&3");
    let (code, screen) = term.finish();
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        !screen.contains("tr0ub4dor"),
        "the password was echoed:\n{screen}"
    );
    let phc = screen
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash on the terminal:\n{screen}"));
    assert!(tollgate::secrets::verify_password("tr0ub4dor&3", phc));
}

#[test]
fn hash_password_on_a_terminal_refuses_two_different_answers() {
    let mut term = OnTerminal::hash_password();
    term.answer("Password: ", "tr0ub4dor&3");
    term.answer("Repeat the password: ", "tr0ub4dor&4");
    let (code, screen) = term.finish();
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("the passwords do not match"), "{screen}");
    assert!(!screen.contains("$argon2id$"), "{screen}");
}

#[test]
fn run_with_a_missing_config_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.toml");
    let out = tollgate(&["run", "-c", path.to_str().expect("UTF-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

#[test]
fn without_a_subcommand_tollgate_runs_gateway_toml_in_the_current_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .output()
        .expect("tollgate runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("gateway.toml"), "{stderr}");
}

#[test]
fn sigterm_stops_a_running_gateway_with_exit_code_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let [listen, internal] = free_addrs();
    let path = write(
        dir.path(),
        "gateway.toml",
        &valid_config(listen, internal, &refused_url()),
    );
    let mut running = Running::start(&path);
    running.wait_until_listening(listen);
    running.wait_until_listening(internal);
    running.sigterm();
    let code = running.wait_for_exit();
    assert_eq!(code, Some(0), "{}", running.stderr());
    assert!(TcpStream::connect(listen).is_err(), "stopped listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_request_finish_before_exiting_0() {
    let up = Upstream::echo().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let [listen, internal] = free_addrs();
    let path = write(
        dir.path(),
        "gateway.toml",
        &valid_config(listen, internal, &up.url()),
    );
    let mut running = Running::start(&path);
    tokio::task::block_in_place(|| running.wait_until_listening(listen));
    let in_flight = tokio::spawn(
        common::client()
            .get(format!("http://{listen}/api/mail/slow"))
            .send(),
    );
    up.wait_for_hits(1).await;
    running.sigterm();
    // Once the listener is closed the signal has been handled; the request still waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(listen).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::task::yield_now().await;
    }
    assert!(!in_flight.is_finished());
    up.release();
    let r = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the request finishes")
        .expect("request task")
        .expect("answered");
    assert_eq!(r.status(), 200);
    let code = tokio::task::block_in_place(|| running.wait_for_exit());
    assert_eq!(code, Some(0), "{}", running.stderr());
}

#[test]
fn gen_key_makes_pkcs8_keys_that_check_accepts_and_never_overwrites_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (alg, file) in [("es256", "es.pem"), ("eddsa", "ed.pem")] {
        let out = tollgate(&["gen-key", "--alg", alg]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let pem = text(&out.stdout);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"), "{pem}");
        assert!(
            text(&out.stderr).starts_with("kid: "),
            "{}",
            text(&out.stderr)
        );

        let path = dir.path().join(file);
        let written = tollgate(&["gen-key", "--alg", alg, "-o", path.to_str().expect("UTF-8")]);
        assert!(written.status.success(), "{}", text(&written.stderr));
        assert!(written.stdout.is_empty(), "the key goes to the file only");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("written")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let before = std::fs::read(&path).expect("read");
        let again = tollgate(&["gen-key", "-o", path.to_str().expect("UTF-8")]);
        assert_eq!(again.status.code(), Some(1), "an existing file is kept");
        assert_eq!(std::fs::read(&path).expect("read"), before);

        let config = write(
            dir.path(),
            "gateway.toml",
            &format!(
                "[oauth]\nstore = \"memory\"\ntoken_format = \"jwt\"\nsigning_key = \"{file}\"\n"
            ),
        );
        let check = tollgate(&["check", "-c", config.to_str().expect("UTF-8")]);
        assert!(check.status.success(), "{}", text(&check.stderr));
    }
    let bad = tollgate(&["gen-key", "--alg", "rs256"]);
    assert_eq!(bad.status.code(), Some(2), "clap refuses an unknown --alg");
}
