//! tollgate as a child process (the real binary, its stderr in a file), for tests that read
//! what it writes to stderr: audit lines, colour, secrets that must not be there.

use super::oauth::{self, AuthConfig};
use super::Upstream;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `tollgate run`; killed when dropped.
pub struct Process {
    child: Child,
    stderr: PathBuf,
    /// The public listener.
    pub public: SocketAddr,
}

/// A loopback address that was free a moment ago (the OS picked it).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("bound")
}

impl Process {
    /// Starts the authorization server `config` describes in `dir` (users file written)
    /// in front of `up`, on free ports, with `RUST_LOG=debug` and the access log in
    /// `access.log`; waits (at most 10 s) until it listens.
    pub async fn auth_server(dir: &Path, config: &AuthConfig, up: &Upstream) -> Process {
        oauth::write_users(&dir.join("users.toml"), &[oauth::USER]);
        let (public, internal) = (free_addr(), free_addr());
        let text = config
            .toml(&up.url())
            .replacen(
                "internal_listen = \"127.0.0.1:0\"",
                &format!("internal_listen = \"{internal}\""),
                1,
            )
            .replacen(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{public}\""),
                1,
            )
            + "\n[log]\naccess = \"access.log\"\n";
        let path = dir.join("gateway.toml");
        std::fs::write(&path, text).expect("config");
        let stderr = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "debug")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("tollgate starts");
        let mut process = Process {
            child,
            stderr,
            public,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(public).is_err() {
            let exited = process.child.try_wait().expect("try_wait");
            assert!(exited.is_none(), "tollgate exited:\n{}", process.stderr());
            assert!(Instant::now() < deadline, "not listening after 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process
    }

    /// `http://ADDR{path}` on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits (at most 15 s) for the exit; returns its code.
    pub async fn stop(&mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                return exit.code();
            }
            assert!(Instant::now() < deadline, "no exit 15 s after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
