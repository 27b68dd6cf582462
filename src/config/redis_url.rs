//! The Sentinel and Cluster forms of `[oauth] store` (the `redis://` form is read by the
//! `redis` crate): `redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER_NAME/DB` and
//! `redis+cluster://HOST:PORT[,HOST:PORT…]`. Pure: text in, [`RedisTopology`] or the reason
//! out.
//!
//! Neither form takes a user or password (the password comes from
//! `[oauth] store_password_file`), so a URL with `@` anywhere is refused before anything else
//! and without being quoted: every later message may quote the URL, which then holds no
//! secret.

use super::{RedisNode, RedisTopology};

pub(super) const SENTINEL_SCHEME: &str = "redis+sentinel://";
pub(super) const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Reads a Sentinel or Cluster URL; `None` when `text` is neither form (not our business).
pub(super) fn parse(text: &str) -> Option<Result<RedisTopology, String>> {
    let (rest, sentinel) = if let Some(rest) = text.strip_prefix(SENTINEL_SCHEME) {
        (rest, true)
    } else {
        (text.strip_prefix(CLUSTER_SCHEME)?, false)
    };
    if text.contains('@') {
        let scheme = if sentinel {
            SENTINEL_SCHEME
        } else {
            CLUSTER_SCHEME
        };
        return Some(Err(format!(
            "a {scheme} URL takes no user or password (it has \"@\"): put the password in \
             [oauth].store_password_file"
        )));
    }
    let parsed = if sentinel {
        sentinel_url(rest)
    } else {
        cluster_url(rest)
    };
    Some(parsed.map_err(|why| format!("{text:?}: {why}")))
}

/// `HOSTS/MASTER_NAME[/DB]` (database 0 when left out).
fn sentinel_url(rest: &str) -> Result<RedisTopology, String> {
    no_query(rest)?;
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let sentinels = nodes(hosts)?;
    let mut parts = path.split('/');
    let master = parts.next().unwrap_or_default();
    if master.is_empty() {
        return Err("no master name after the sentinels (…/MASTER_NAME/DB)".to_string());
    }
    if !master.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "master name {master:?} has a character that is not printable ASCII"
        ));
    }
    let db = match parts.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<u16>()
            .map_err(|_| format!("{db:?} is not a database number"))?,
    };
    if let Some(extra) = parts.next() {
        return Err(format!(
            "{extra:?} after the database number: the form is …/MASTER_NAME/DB"
        ));
    }
    Ok(RedisTopology::Sentinel {
        sentinels,
        master: master.to_string(),
        db: i64::from(db),
    })
}

/// `HOSTS` and nothing after (a Cluster has database 0 only).
fn cluster_url(rest: &str) -> Result<RedisTopology, String> {
    no_query(rest)?;
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let nodes = nodes(hosts)?;
    if !path.is_empty() {
        return Err(format!(
            "a Redis Cluster has no database number or path: remove \"/{path}\""
        ));
    }
    Ok(RedisTopology::Cluster { nodes })
}

fn no_query(rest: &str) -> Result<(), String> {
    match rest.find(['?', '#']) {
        Some(_) => Err("takes no query or fragment (\"?…\", \"#…\")".to_string()),
        None => Ok(()),
    }
}

/// `HOST:PORT[,HOST:PORT…]`, at least one.
fn nodes(list: &str) -> Result<Vec<RedisNode>, String> {
    if list.is_empty() {
        return Err("no HOST:PORT".to_string());
    }
    if list.split(',').any(str::is_empty) {
        return Err(format!(
            "{list:?} has an empty HOST:PORT (two commas in a row?)"
        ));
    }
    list.split(',').map(node).collect()
}

/// `HOST:PORT` or `[IPV6]:PORT`.
fn node(text: &str) -> Result<RedisNode, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?} has no \"]\" after its IPv6 address"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{text:?}: {host:?} is not an IPv6 address"));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{text:?} has no port (HOST:PORT)"))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} has no port (HOST:PORT)"))?;
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if !host.chars().all(name_char) {
            return Err(format!(
                "{text:?}: {host:?} is not a host name or IP address (IPv6 goes in brackets)"
            ));
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(RedisNode {
            host: host.to_string(),
            port,
        }),
        _ => Err(format!(
            "{text:?}: the port {port:?} is not a number from 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(host: &str, port: u16) -> RedisNode {
        RedisNode {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn sentinel_and_cluster_urls_are_read() {
        let cases = [
            (
                "redis+sentinel://10.0.0.1:26379,sentinel-b:26380/mymaster/2",
                RedisTopology::Sentinel {
                    sentinels: vec![n("10.0.0.1", 26379), n("sentinel-b", 26380)],
                    master: "mymaster".to_string(),
                    db: 2,
                },
            ),
            (
                "redis+sentinel://[::1]:26379/m",
                RedisTopology::Sentinel {
                    sentinels: vec![n("::1", 26379)],
                    master: "m".to_string(),
                    db: 0,
                },
            ),
            (
                "redis+cluster://a:7000,b:7001,[fd00::2]:7002",
                RedisTopology::Cluster {
                    nodes: vec![n("a", 7000), n("b", 7001), n("fd00::2", 7002)],
                },
            ),
            (
                "redis+cluster://127.0.0.1:7000/",
                RedisTopology::Cluster {
                    nodes: vec![n("127.0.0.1", 7000)],
                },
            ),
        ];
        for (text, want) in cases {
            match parse(text) {
                Some(Ok(got)) => assert!(got == want, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(parse("redis://h:6379/0").is_none());
        assert!(parse("sqlite:x").is_none());
    }

    #[test]
    fn malformed_sentinel_and_cluster_urls_say_what_is_wrong() {
        let cases = [
            ("redis+sentinel://", "no HOST:PORT"),
            ("redis+sentinel:///mymaster/0", "no HOST:PORT"),
            ("redis+sentinel://h:26379", "no master name"),
            ("redis+sentinel://h:26379/", "no master name"),
            ("redis+sentinel://h:26379//0", "no master name"),
            ("redis+sentinel://h/m/0", "\"h\" has no port"),
            (
                "redis+sentinel://h:port/m/0",
                "the port \"port\" is not a number",
            ),
            ("redis+sentinel://h:0/m/0", "the port \"0\" is not a number"),
            (
                "redis+sentinel://h:65536/m/0",
                "the port \"65536\" is not a number",
            ),
            ("redis+sentinel://:26379/m/0", "\":26379\" has no host"),
            ("redis+sentinel://a:1,,b:2/m/0", "has an empty HOST:PORT"),
            ("redis+cluster://a:1,", "has an empty HOST:PORT"),
            ("redis+sentinel://h:1/m/x", "\"x\" is not a database number"),
            (
                "redis+sentinel://h:1/m/-1",
                "\"-1\" is not a database number",
            ),
            (
                "redis+sentinel://h:1/m/0/x",
                "\"x\" after the database number",
            ),
            ("redis+sentinel://h:1/m/0?timeout=1", "takes no query"),
            ("redis+sentinel://h:1/m\u{e9}/0", "not printable ASCII"),
            ("redis+sentinel://::1:26379/m", "IPv6 goes in brackets"),
            ("redis+sentinel://[::1/m", "no \"]\""),
            (
                "redis+sentinel://[nope]:1/m",
                "\"nope\" is not an IPv6 address",
            ),
            ("redis+cluster://", "no HOST:PORT"),
            (
                "redis+cluster://a:7000/0",
                "a Redis Cluster has no database number",
            ),
            ("redis+cluster://a:7000,b", "\"b\" has no port"),
            ("redis+cluster://a b:7000", "is not a host name"),
        ];
        for (text, want) in cases {
            match parse(text) {
                Some(Err(why)) => assert!(why.contains(want), "{text}: {why}"),
                other => panic!("{text}: accepted {other:?}"),
            }
        }
    }

    #[test]
    fn a_password_in_a_sentinel_or_cluster_url_is_refused_and_never_shown() {
        for text in [
            "redis+sentinel://:hunter2@h:26379/m/0",
            "redis+sentinel://h:26379/m/0?password=hunter2@",
            "redis+cluster://user:hunter2@a:7000",
            "redis+cluster://a:7000/hunter2@",
        ] {
            let Some(Err(why)) = parse(text) else {
                panic!("{text}: accepted")
            };
            assert!(!why.contains("hunter2"), "{why}");
            assert!(why.contains("store_password_file"), "{why}");
        }
    }
}
