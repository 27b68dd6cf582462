//! A real OpenLDAP `slapd` (Debian's package) on a loopback port, with a throwaway config
//! and a seeded directory, for the LDAP tests. Stopped (killed) when dropped.
//!
//! Entries under `ou=people` are readable anonymously (passwords never are): that is what a
//! DN-template directory must allow for refreshes to find the user again.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE: &str = "dc=example,dc=org";
pub const SERVICE_DN: &str = "cn=tollgate,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "service-secret";
/// The directory's administrator (rootdn), for tests that change entries.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "admin-secret";

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

const SEED: &str = r#"dn: dc=example,dc=org
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=contractors,dc=example,dc=org
objectClass: organizationalUnit
ou: contractors

dn: ou=services,dc=example,dc=org
objectClass: organizationalUnit
ou: services

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@example.org
userPassword: wonderland

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
mail: bob@example.org
userPassword: canwefixit

dn: uid=carol,ou=contractors,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol Outside
sn: Outside
userPassword: outsider

dn: cn=tollgate,ou=services,dc=example,dc=org
objectClass: person
cn: tollgate
sn: service
userPassword: service-secret
"#;

/// A running slapd.
pub struct Slapd {
    pub url: String,
    pub port: u16,
    /// `ldaps://127.0.0.1:PORT` when started with TLS.
    pub tls_url: Option<String>,
    /// The PEM file clients must trust when started with TLS.
    pub ca_file: Option<std::path::PathBuf>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Slapd {
    /// Starts slapd with the seeded directory and waits until it accepts connections.
    pub fn start() -> Slapd {
        Self::start_with(false)
    }

    /// Like `start`, also listening on `ldaps://` and offering StartTLS with a certificate
    /// made at run time for `127.0.0.1`.
    pub fn start_tls() -> Slapd {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Slapd {
        assert!(
            Path::new(SLAPD).exists(),
            "slapd is not installed: run `./test.sh` (it installs slapd)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("db dir");
        let conf = dir.path().join("slapd.conf");
        let mut text = config(dir.path());
        let ca_file = tls.then(|| {
            super::tls::write_self_signed(dir.path());
            text.push_str(&format!(
                "TLSCertificateFile {0}/cert.pem\nTLSCertificateKeyFile {0}/key.pem\n",
                dir.path().display()
            ));
            dir.path().join("cert.pem")
        });
        // Global TLS directives must precede the database section.
        let text = match text.split_once("database mdb") {
            Some((head, tail)) if tls => {
                let tls_lines: String = tail
                    .lines()
                    .filter(|l| l.starts_with("TLS"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let rest: String = tail
                    .lines()
                    .filter(|l| !l.starts_with("TLS"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                format!("{head}{tls_lines}database mdb{rest}")
            }
            _ => text,
        };
        std::fs::write(&conf, text).expect("write slapd.conf");
        let seed = dir.path().join("seed.ldif");
        std::fs::write(&seed, SEED).expect("write seed");
        let out = Command::new(SLAPADD)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&seed)
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let tls_port = tls.then(free_port);
        let mut slapd = Slapd {
            url: format!("ldap://127.0.0.1:{port}"),
            port,
            tls_url: tls_port.map(|p| format!("ldaps://127.0.0.1:{p}")),
            ca_file,
            child: None,
            dir,
        };
        slapd.spawn();
        slapd
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("slapd.conf");
        let mut listen = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(tls) = &self.tls_url {
            listen.push_str(&format!(" {tls}/"));
        }
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(listen)
            .arg("-d")
            .arg("0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "slapd did not listen on port {} within 10s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the directory again after [`stop`](Self::stop), with the same entries.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "slapd is still running");
        self.spawn();
    }

    /// Deletes the entry `dn`, as the administrator.
    pub async fn delete(&self, dn: &str) {
        let mut ldap = self.admin().await;
        ldap.delete(dn)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("delete {dn}: {e}"));
        let _ = ldap.unbind().await;
    }

    /// Adds `attribute: value` to the entry `dn`, as the administrator.
    pub async fn add_value(&self, dn: &str, attribute: &str, value: &str) {
        let mut ldap = self.admin().await;
        let change = ldap3::Mod::Add(attribute, std::collections::HashSet::from([value]));
        ldap.modify(dn, vec![change])
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
        let _ = ldap.unbind().await;
    }

    async fn admin(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url)
            .await
            .expect("connect to slapd");
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN_DN, ADMIN_PASSWORD)
            .await
            .and_then(|r| r.success())
            .expect("bind as the administrator");
        ldap
    }

    /// Stops the directory (as an outage would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "slapd still listening after kill"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `[users]` section binding by DN template.
    pub fn template_config(&self) -> String {
        format!(
            "[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"{}\"\nuser_dn = \"uid={{username}},ou=people,{BASE}\"\nconnect_timeout = \"2s\"\ntimeout = \"2s\"\n",
            self.url
        )
    }

    /// A `[users]` section with search-then-bind under `ou=people`.
    pub fn search_config(&self) -> String {
        format!(
            "[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"{}\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password = \"{SERVICE_PASSWORD}\"\nbase_dn = \"ou=people,{BASE}\"\nfilter = \"(&(objectClass=inetOrgPerson)(uid={{username}}))\"\nconnect_timeout = \"2s\"\ntimeout = \"2s\"\n",
            self.url
        )
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn config(dir: &Path) -> String {
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "cn=admin,{BASE}"
rootpw admin-secret
directory {dir}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to dn.subtree="ou=people,{BASE}" by * read
access to * by users read by * none
"#,
        dir = dir.display()
    )
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
