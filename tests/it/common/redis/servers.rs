//! Redis servers of a test's own on free loopback ports: a Cluster ([`OwnCluster`]) and a
//! master watched by Sentinel ([`OwnSentinel`]). Shared by the integration tests and the
//! store's unit tests (which include this file by path), so it uses only std, `redis` and
//! `tempfile`.
//!
//! No server may outlive the test process, even when a fixture lives in a `static` (never
//! dropped) or the process is killed. Each server runs under a small `sh` guard whose stdin
//! is a pipe from the test process: when the pipe closes (the fixture is dropped, or the
//! test process ends, however it ends) the guard kills its server and removes its
//! directory. Should a guard itself be killed, the pid file it left in [`PID_DIR`] lets the
//! next fixture started on the machine kill the orphan.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// `OWNER.SERVER` files: the test process and the redis-server it started.
const PID_DIR: &str = "/tmp/tollgate-test-redis";
/// How long a server may take to answer, and a Cluster or a failover to settle.
const SETTLE: Duration = Duration::from_secs(30);

/// The guard: starts redis-server with the arguments after `$1` (its directory) and `$2`
/// (its pid file), waits for stdin to close, then kills it and removes both.
const GUARD: &str = r#"dir=$1; pidfile=$2; shift 2
redis-server "$@" >/dev/null 2>&1 &
pid=$!
echo "$pid" > "$pidfile.$pid"
read _ignored
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
rm -rf "$dir" "$pidfile.$pid""#;

/// A port nothing listens on now (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A sync connection to 127.0.0.1:`port`, authenticated with `password` when given.
pub fn connect(port: u16, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    redis::Client::open(format!("redis://{auth}127.0.0.1:{port}/"))?
        .get_connection_with_timeout(Duration::from_millis(500))
}

/// `cmd` on 127.0.0.1:`port` (no password).
pub fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    cmd.query(&mut connect(port, None)?)
}

/// Polls `ready` every 20 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = ready() {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One redis-server under its guard.
#[derive(Debug)]
pub struct Server {
    pub port: u16,
    /// Its `requirepass`, if any.
    password: Option<String>,
    guard: Child,
    lifeline: Option<ChildStdin>,
    dir: PathBuf,
}

impl Server {
    /// Starts redis-server on 127.0.0.1:`port` in a fresh directory, reading `config` (the
    /// text of its config file, written there) then `args`, and waits until it answers PING.
    pub fn start(port: u16, config: &str, args: &[&str]) -> Server {
        Server::start_with(port, None, config, args)
    }

    /// The same for a server whose `config` sets `requirepass` to `password`.
    pub fn start_with(port: u16, password: Option<&str>, config: &str, args: &[&str]) -> Server {
        kill_orphans();
        let dir = tempfile::Builder::new()
            .prefix("tollgate-redis-")
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::write(dir.join("redis.conf"), config).expect("write redis.conf");
        std::fs::create_dir_all(PID_DIR).expect("pid dir");
        let pidfile = format!("{PID_DIR}/{}", std::process::id());
        let guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("guard")
            .arg(&dir)
            .arg(&pidfile)
            .arg("redis.conf")
            .args(args)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--dir",
                &dir.display().to_string(),
                "--logfile",
                "redis.log",
            ])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh runs (redis-server must be installed: apt-get install redis-server)");
        let mut server = Server {
            port,
            password: password.map(String::from),
            guard,
            lifeline: None,
            dir,
        };
        server.lifeline = server.guard.stdin.take();
        let deadline = Instant::now() + SETTLE;
        while server.query::<String>(&redis::cmd("PING")).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} does not answer after {SETTLE:?}; its log:\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// A sync connection to it.
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        connect(self.port, self.password.as_deref())
    }

    /// `cmd` on it.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        cmd.query(&mut self.connect()?)
    }

    /// The directory it runs in (removed when it stops).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read(self.dir.join("redis.log")).unwrap_or_default();
        String::from_utf8_lossy(&log[log.len().saturating_sub(2000)..]).into_owned()
    }

    /// Kills the server at once (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        // Closing the pipe tells the guard to kill it; the guard exits when it has.
        self.lifeline = None;
        let _ = self.guard.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills servers whose test process is gone (their guard was killed with it).
fn kill_orphans() {
    let Ok(entries) = std::fs::read_dir(PID_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((owner, server)) = name.split_once('.') else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{server}/comm")).unwrap_or_default();
        if comm.trim() == "redis-server" {
            let _ = Command::new("kill").args(["-9", server]).status();
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

// ---------------------------------------------------------------- Cluster

/// A Redis Cluster of three masters (no replicas) on free loopback ports.
#[derive(Debug)]
pub struct OwnCluster {
    pub nodes: Vec<Server>,
}

impl OwnCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create` and waits until
    /// every node reports `cluster_state:ok`.
    pub fn start() -> OwnCluster {
        OwnCluster::start_with(None)
    }

    /// The same, every node asking for `password` when given.
    pub fn start_with(password: Option<&str>) -> OwnCluster {
        let auth = password
            .map(|p| format!("requirepass {p}\nmasterauth {p}\n"))
            .unwrap_or_default();
        let nodes: Vec<Server> = (0..3)
            .map(|_| {
                let config = format!(
                    "cluster-enabled yes\ncluster-config-file nodes.conf\n\
                     cluster-node-timeout 2000\ncluster-port {}\nsave \"\"\nappendonly no\n{auth}",
                    free_port()
                );
                Server::start_with(free_port(), password, &config, &[])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(p) = password {
            create.args(["-a", p, "--no-auth-warning"]);
        }
        let mut create = create
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        let status = wait_for("redis-cli --cluster create", SETTLE, || {
            create.try_wait().expect("redis-cli waits")
        });
        assert!(status.success(), "redis-cli --cluster create: {status}");
        let cluster = OwnCluster { nodes };
        for node in &cluster.nodes {
            wait_for(
                &format!("node {} reports cluster_state:ok", node.port),
                SETTLE,
                || {
                    let info: String = node.query(redis::cmd("CLUSTER").arg("INFO")).ok()?;
                    info.contains("cluster_state:ok").then_some(())
                },
            );
        }
        cluster
    }

    /// `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }

    /// The node on `port`.
    fn node(&self, port: u16) -> &Server {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("one of the nodes")
    }

    /// Every key under `prefix`, on every node.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for node in &self.nodes {
            if let Ok(mut conn) = node.connect() {
                if let Ok(iter) =
                    redis::Commands::scan_match::<_, String>(&mut conn, format!("{prefix}*"))
                {
                    keys.extend(iter.filter_map(Result::ok));
                }
            }
        }
        keys
    }

    /// The slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        self.nodes[0]
            .query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .expect("CLUSTER KEYSLOT")
    }

    /// The port of the node serving `slot` now, by its own account.
    pub fn owner(&self, slot: u16) -> u16 {
        self.nodes
            .iter()
            .find(|n| node_slots(n).iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .map(|n| n.port)
            .expect("a node serves every slot")
    }

    /// Moves `slot`, with its keys, to the node on port `to` (the documented manual
    /// resharding: IMPORTING, MIGRATING, MIGRATE, then SETSLOT NODE on every node).
    pub fn move_slot(&self, slot: u16, to: u16) {
        let from = self.owner(slot);
        if from == to {
            return;
        }
        let (from_id, to_id) = (node_id(self.node(from)), node_id(self.node(to)));
        let setslot = |port: u16, how: &str, id: &str| {
            self.node(port)
                .query::<()>(
                    redis::cmd("CLUSTER")
                        .arg("SETSLOT")
                        .arg(slot)
                        .arg(how)
                        .arg(id),
                )
                .unwrap_or_else(|e| panic!("SETSLOT {slot} {how} on {port}: {e}"))
        };
        setslot(to, "IMPORTING", &from_id);
        setslot(from, "MIGRATING", &to_id);
        for _ in 0..1000 {
            let keys: Vec<String> = self
                .node(from)
                .query(
                    redis::cmd("CLUSTER")
                        .arg("GETKEYSINSLOT")
                        .arg(slot)
                        .arg(100),
                )
                .expect("GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate.arg("127.0.0.1").arg(to).arg("").arg(0).arg(5000);
            if let Some(p) = &self.node(to).password {
                migrate.arg("AUTH").arg(p);
            }
            self.node(from)
                .query::<()>(migrate.arg("KEYS").arg(&keys))
                .expect("MIGRATE");
        }
        // The destination first, then the source, then the rest (as the manual says).
        setslot(to, "NODE", &to_id);
        setslot(from, "NODE", &to_id);
        for node in self.nodes.iter().filter(|n| n.port != to && n.port != from) {
            setslot(node.port, "NODE", &to_id);
        }
    }

    /// Moves every slot holding a key under `prefix` to another node; returns how many.
    pub fn move_slots_of(&self, prefix: &str) -> usize {
        let mut slots: Vec<u16> = self.keys(prefix).iter().map(|k| self.slot(k)).collect();
        slots.sort();
        slots.dedup();
        for &slot in &slots {
            let from = self.owner(slot);
            let at = self
                .nodes
                .iter()
                .position(|n| n.port == from)
                .expect("a node");
            let to = self.nodes[(at + 1) % self.nodes.len()].port;
            self.move_slot(slot, to);
        }
        slots.len()
    }
}

/// The slot ranges the node on `port` serves, by its own account (`myself` in CLUSTER NODES;
/// slots being migrated, `[…]`, are not counted).
fn node_slots(node: &Server) -> Vec<(u16, u16)> {
    let lines: String = node
        .query(redis::cmd("CLUSTER").arg("NODES"))
        .expect("CLUSTER NODES");
    lines
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|f| f.contains("myself"))
        })
        .map(|l| {
            l.split_whitespace()
                .skip(8)
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|s| (s, s)),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The cluster id of `node`.
fn node_id(node: &Server) -> String {
    node.query(redis::cmd("CLUSTER").arg("MYID"))
        .expect("CLUSTER MYID")
}

// ---------------------------------------------------------------- Sentinel

/// A master, one replica of it, and one sentinel watching them (quorum 1, down after 1 s).
#[derive(Debug)]
pub struct OwnSentinel {
    pub master_name: &'static str,
    pub servers: Vec<Server>,
    pub sentinel: Server,
}

impl OwnSentinel {
    /// Starts the three and waits until the replica is in sync and the sentinel names the
    /// master and knows the replica.
    pub fn start() -> OwnSentinel {
        OwnSentinel::start_with(None, false)
    }

    /// The same with `password` on the master and the replica, and on the sentinel too when
    /// `sentinel_too`.
    pub fn start_with(password: Option<&str>, sentinel_too: bool) -> OwnSentinel {
        let auth = password
            .map(|p| format!("requirepass {p}\nmasterauth {p}\n"))
            .unwrap_or_default();
        let plain = format!("save \"\"\nappendonly no\n{auth}");
        let master = Server::start_with(free_port(), password, &plain, &[]);
        let replica = Server::start_with(
            free_port(),
            password,
            &format!("{plain}replicaof 127.0.0.1 {}\n", master.port),
            &[],
        );
        wait_for("the replica is in sync", SETTLE, || {
            let info: String = replica.query(redis::cmd("INFO").arg("replication")).ok()?;
            info.contains("master_link_status:up").then_some(())
        });
        let mut config = format!(
            "sentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n\
             sentinel parallel-syncs mymaster 1\n",
            master.port
        );
        if let Some(p) = password {
            config.push_str(&format!("sentinel auth-pass mymaster {p}\n"));
            if sentinel_too {
                config.push_str(&format!("requirepass {p}\n"));
            }
        }
        // The sentinel rewrites its config file: it is the one in its own directory.
        let sentinel = Server::start_with(
            free_port(),
            password.filter(|_| sentinel_too),
            &config,
            &["--sentinel"],
        );
        let own = OwnSentinel {
            master_name: "mymaster",
            servers: vec![master, replica],
            sentinel,
        };
        let master_port = own.servers[0].port;
        wait_for("the sentinel names the master", SETTLE, || {
            (own.named_master() == Some(master_port)).then_some(())
        });
        wait_for("the sentinel knows the replica", SETTLE, || {
            let replicas: Vec<std::collections::HashMap<String, String>> = own
                .sentinel
                .query(redis::cmd("SENTINEL").arg("REPLICAS").arg("mymaster"))
                .ok()?;
            replicas
                .iter()
                .any(|r| r.get("flags").is_some_and(|f| f == "slave"))
                .then_some(())
        });
        own
    }

    /// `redis+sentinel://` with the sentinel, the master name and database `db`.
    pub fn url(&self, db: u8) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{}/{db}",
            self.sentinel.port, self.master_name
        )
    }

    /// The data server on `port`.
    pub fn server(&self, port: u16) -> &Server {
        self.servers
            .iter()
            .find(|s| s.port == port)
            .expect("one of ours")
    }

    /// The port the sentinel names as the master's now.
    pub fn named_master(&self) -> Option<u16> {
        let addr: Option<(String, String)> = self
            .sentinel
            .query(
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(self.master_name),
            )
            .ok()?;
        addr.and_then(|(_, port)| port.parse().ok())
    }

    /// Waits until the replica has every write (`WAIT`), then kills the master (SIGKILL);
    /// returns the port it had.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.named_master().expect("a master");
        let synced: i64 = self
            .server(port)
            .query(redis::cmd("WAIT").arg(1).arg(5000))
            .expect("WAIT");
        assert_eq!(synced, 1, "the replica did not acknowledge every write");
        let master = self
            .servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("the master is one of ours");
        master.kill();
        port
    }

    /// Waits until the sentinel names a master other than `old` and that server says it is
    /// the master; returns its port.
    pub fn wait_for_new_master(&self, old: u16) -> u16 {
        wait_for("the sentinel names a new master", SETTLE, || {
            let now = self.named_master().filter(|&p| p != old)?;
            let role: Vec<redis::Value> = self.server(now).query(&redis::cmd("ROLE")).ok()?;
            let is_master =
                matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master");
            is_master.then_some(now)
        })
    }

    /// Waits until the replica has every write (`WAIT`: replication is asynchronous, and a
    /// failover loses what the replica had not received), asks the sentinel for a failover
    /// (`SENTINEL FAILOVER`), waits until it names the other server and that server says
    /// it is the master, and then until the old master says it is a replica (until then it
    /// still takes writes, which its resync then throws away); returns the new master's port.
    pub fn failover(&self) -> u16 {
        let before = self.named_master().expect("a master before");
        // `WAIT` counts from this connection's own last write (a fresh connection has none
        // and would not wait at all); the replication stream is ordered, so a write here
        // acknowledged by the replica means every earlier write is there too.
        let mut old = self
            .server(before)
            .connect()
            .expect("connect to the master");
        redis::cmd("SET")
            .arg("tollgate-test-sync")
            .arg("x")
            .query::<()>(&mut old)
            .expect("SET before WAIT");
        let synced: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut old)
            .expect("WAIT");
        assert_eq!(synced, 1, "the replica did not acknowledge every write");
        self.sentinel
            .query::<()>(redis::cmd("SENTINEL").arg("FAILOVER").arg(self.master_name))
            .expect("SENTINEL FAILOVER");
        let new = self.wait_for_new_master(before);
        wait_for("the old master turns replica", SETTLE, || {
            let role: Vec<redis::Value> = self.server(before).query(&redis::cmd("ROLE")).ok()?;
            matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"slave").then_some(())
        });
        new
    }
}
