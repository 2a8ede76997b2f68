//! `server.trusted_proxies`: the reverse proxies whose `X-Forwarded-For` is
//! believed, and the rule that picks the client's address behind them.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

/// One network, `addr/prefix` (a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an address or CIDR like 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has a prefix length outside 0..={max}"))?,
        };
        Ok(Self { net, prefix })
    }

    fn contains(self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The trusted proxies; empty (the default) trusts nobody's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses CIDRs such as `127.0.0.1/32` or `10.0.0.0/8`.
    pub fn parse<S: AsRef<str>>(cidrs: &[S]) -> Result<Self, String> {
        cidrs
            .iter()
            .map(|c| Cidr::parse(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether a direct peer is a trusted proxy.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(peer))
    }

    /// The client's address: from a trusted proxy, the right-most
    /// `X-Forwarded-For` address that is not itself a trusted proxy; from
    /// anyone else (or with no usable header), the peer itself.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let Some(header) = forwarded_for.filter(|_| self.trusts(peer)) else {
            return peer.to_canonical();
        };
        let mut client = peer.to_canonical();
        for hop in header.rsplit(',') {
            // An unreadable hop was written by the client, not by a proxy we
            // trust: stop at the last address a trusted proxy vouched for.
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let cidrs = Vec::<String>::deserialize(de)?;
        Self::parse(&cidrs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let proxies = TrustedProxies::parse(&["127.0.0.1/32", "10.0.0.0/8"]).unwrap();
        let xff = Some("198.51.100.9, 203.0.113.7, 10.1.2.3");
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), xff), ip("203.0.113.7"));
        // From an untrusted peer the header is ignored.
        assert_eq!(proxies.client_ip(ip("192.0.2.1"), xff), ip("192.0.2.1"));
        // Nobody is trusted by default.
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("127.0.0.1"), xff), ip("127.0.0.1"));
    }

    #[test]
    fn garbage_and_all_trusted_chains_stop_safely() {
        let proxies = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), Some("evil, 203.0.113.7")),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), Some("nonsense")),
            ip("127.0.0.1")
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), Some("127.0.0.1")),
            ip("127.0.0.1")
        );
        assert_eq!(
            proxies.client_ip(ip("::ffff:127.0.0.1"), Some("2001:db8::1")),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn cidrs_are_checked() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["localhost"]).is_err());
        let all = TrustedProxies::parse(&["0.0.0.0/0", "::/0"]).unwrap();
        assert!(all.trusts(ip("8.8.8.8")) && all.trusts(ip("2001:db8::1")));
        let v6 = TrustedProxies::parse(&["fd00::/8"]).unwrap();
        assert!(v6.trusts(ip("fd12::1")) && !v6.trusts(ip("fe80::1")));
    }
}
