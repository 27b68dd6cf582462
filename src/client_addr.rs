//! Who the client is: the TCP peer, or, when that peer is one of `[server] trusted_proxies`,
//! the address that proxy reports in `X-Forwarded-For`. Pure functions; no I/O.
//!
//! The address found here is what the access log writes and what login throttling counts
//! failures against. It never changes what reaches an upstream: the `X-Forwarded-For` sent
//! on is the client's chain with the real TCP peer appended (`gateway::headers`).
//!
//! Only a trusted peer's header is read, and it is read from the right: each trusted proxy
//! appends the address it saw, so walking leftwards past trusted addresses, the first
//! untrusted one is the client as the outermost trusted proxy saw it. Anything further left
//! was written by the client and is never believed (a client rotating made-up
//! `X-Forwarded-For` values through a trusted proxy is still counted as itself).

use crate::gateway::headers::HeaderView;
use std::net::IpAddr;

/// `X-Forwarded-For`.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// One IP network: an address and a prefix length, e.g. `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// `[server] trusted_proxies`: the networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
}

// === impl Cidr ===

impl Cidr {
    /// Parses `ADDR` or `ADDR/PREFIX` (IPv4 or IPv6). Host bits set below the prefix are
    /// refused: `10.0.0.1/8` is more likely a mistake than a way to write `10.0.0.0/8`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR like \"10.0.0.0/8\""))?;
        let max = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        if mask(network, prefix) != bits(network) {
            return Err(format!(
                "{text:?} has host bits set below /{prefix} (write the network address)"
            ));
        }
        // An IPv4-mapped network is kept as the IPv4 one, as addresses are compared.
        Ok(match network {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    network: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => Cidr { network, prefix },
            },
            _ => Cidr { network, prefix },
        })
    }

    /// True when `addr` is in this network. An IPv4 address also matches as the IPv4-mapped
    /// IPv6 address a dual-stack socket reports (`::ffff:10.0.0.1`), and the other way round.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        match (self.network, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(addr, self.prefix) == bits(self.network)
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address's bits with everything below `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> u128 {
    let width: u32 = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let host_bits = width - u32::from(prefix).min(width);
    let keep = if host_bits >= 128 {
        0
    } else {
        u128::MAX << host_bits
    };
    bits(addr) & keep
}

// === impl TrustedProxies ===

impl TrustedProxies {
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self { networks }
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(addr))
    }

    /// The client's address for a request that came from `peer` with `headers`: `peer`
    /// itself unless it is trusted; then the rightmost `X-Forwarded-For` address that is
    /// not trusted (the leftmost one when all are). An element that is not an address stops
    /// the walk: the last trusted hop before it is the best that can be said.
    pub fn client_addr(&self, peer: IpAddr, headers: &impl HeaderView) -> IpAddr {
        if self.networks.is_empty() || !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        // Several header lines form one list, in order (RFC 9110 §5.3).
        let values: Vec<&[u8]> = headers
            .values(http::HeaderName::from_static(X_FORWARDED_FOR))
            .collect();
        for value in values.iter().rev() {
            let Ok(text) = std::str::from_utf8(value) else {
                return client;
            };
            for element in text.rsplit(',') {
                let Some(addr) = parse_element(element) else {
                    return client;
                };
                client = addr;
                if !self.contains(addr) {
                    return client;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` element: an address, maybe with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:80`), as proxies write them.
fn parse_element(element: &str) -> Option<IpAddr> {
    let element = element.trim();
    if let Ok(addr) = element.parse::<IpAddr>() {
        return Some(canonical(addr));
    }
    if let Some(rest) = element.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return addr.parse::<IpAddr>().ok().map(canonical);
    }
    let (addr, port) = element.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            list.iter()
                .map(|c| Cidr::parse(c).expect("valid"))
                .collect(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn xff(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn cidrs_parse_and_refuse_what_is_not_one() {
        for good in [
            "10.0.0.0/8",
            "192.168.1.7",
            "::1",
            "fd00::/8",
            "0.0.0.0/0",
            "::/0",
        ] {
            assert!(Cidr::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "example.com",
            "",
            "10.0.0.0/8/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "10.1.2.3", true),
            ("::/0", "10.1.2.3", false),
        ];
        for (net, addr, want) in cases {
            let cidr = Cidr::parse(net).expect("valid");
            assert_eq!(cidr.contains(ip(addr)), want, "{net} ∋ {addr}");
        }
    }

    #[test]
    fn the_forwarded_client_is_believed_only_from_a_trusted_peer() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let cases: [(&str, &[&str], &str); 9] = [
            // An untrusted peer is the client, whatever it claims.
            ("203.0.113.9", &["198.51.100.1"], "203.0.113.9"),
            // A trusted proxy's report is believed.
            ("10.0.0.2", &["198.51.100.1"], "198.51.100.1"),
            // The client's own claim left of the proxy's entry is not.
            ("10.0.0.2", &["1.1.1.1, 198.51.100.1"], "198.51.100.1"),
            // Chains of trusted proxies are walked from the right.
            (
                "10.0.0.2",
                &["1.1.1.1, 198.51.100.1, 10.0.0.9"],
                "198.51.100.1",
            ),
            // Several header lines are one list.
            ("10.0.0.2", &["1.1.1.1", "198.51.100.1"], "198.51.100.1"),
            // No header: the proxy itself.
            ("10.0.0.2", &[], "10.0.0.2"),
            // Garbage stops the walk at the last trusted hop.
            ("10.0.0.2", &["198.51.100.1, bogus"], "10.0.0.2"),
            // All trusted: the leftmost.
            ("10.0.0.2", &["10.0.0.7, 10.0.0.8"], "10.0.0.7"),
            // Ports and brackets as some proxies write them.
            ("10.0.0.2", &["[2001:db8::1]:443"], "2001:db8::1"),
        ];
        for (peer, headers, want) in cases {
            assert_eq!(
                proxies.client_addr(ip(peer), &xff(headers)),
                ip(want),
                "peer {peer}, X-Forwarded-For {headers:?}"
            );
        }
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client_addr(ip("10.0.0.2"), &xff(&["198.51.100.1"])),
            ip("10.0.0.2")
        );
    }
}
