//! The SSRF guard: a webhook URL may only reach public unicast addresses, checked on every
//! attempt after DNS resolution (so a name that starts resolving to 10.0.0.1 is refused at
//! once), unless `ROWCAST_WEBHOOK_ALLOW_PRIVATE=true`.
//!
//! The check lives in the HTTP client's resolver: the addresses it lets through are the
//! addresses the client connects to, so there is no window between check and use (DNS
//! rebinding). IP-literal URLs never reach a resolver and are checked before the request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address may not be reached, or `None` when it is a public unicast address.
pub fn refused_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            v6_kind(v6)
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) || (a == 198 && (b == 18 || b == 19)) {
        Some("private")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast()
        || a >= 240
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        Some("reserved")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if seg[0] == 0xfd00 && seg[1] == 0x0ec2 && seg[7] == 0x0254 {
        Some("cloud metadata")
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if seg[0] & 0xfe00 == 0xfc00 || seg[0] & 0xffc0 == 0xfec0 {
        Some("private")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 || (seg[0] == 0x0064 && seg[1] == 0xff9b) || seg[0] == 0x2002 || seg[..6] == [0; 6] {
        // documentation, NAT64 and 6to4 (which embed IPv4 addresses), IPv4-compatible
        Some("reserved")
    } else {
        None
    }
}

/// A refusal: the host, the address and its kind, for the delivery log.
#[derive(Debug, Clone)]
pub struct Refused {
    pub host: String,
    pub addr: IpAddr,
    pub kind: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host == self.addr.to_string() {
            write!(f, "refused: {} is a {} address", self.addr, self.kind)?;
        } else {
            write!(f, "refused: {} resolves to {}, a {} address", self.host, self.addr, self.kind)?;
        }
        f.write_str(" (webhooks may only reach public addresses unless ROWCAST_WEBHOOK_ALLOW_PRIVATE=true)")
    }
}

impl std::error::Error for Refused {}

/// The client's resolver: system DNS, then every address checked.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = filter(&host, addrs, allow_private)?;
            let iter: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(iter)
        })
    }
}

/// Keeps the addresses that may be reached; all refused → the first refusal.
pub fn filter(host: &str, addrs: Vec<SocketAddr>, allow_private: bool) -> Result<Vec<SocketAddr>, Refused> {
    if allow_private {
        return Ok(addrs);
    }
    let mut first = None;
    let mut allowed = Vec::new();
    for addr in addrs {
        match refused_kind(addr.ip()) {
            None => allowed.push(addr),
            Some(kind) => {
                first.get_or_insert(Refused { host: host.to_string(), addr: addr.ip(), kind });
            }
        }
    }
    match (allowed.is_empty(), first) {
        (true, Some(refused)) => Err(refused),
        _ => Ok(allowed),
    }
}

/// IP-literal hosts (which no resolver sees) are checked here, before the request.
pub fn check_literal(url: &reqwest::Url, allow_private: bool) -> Result<(), Refused> {
    if allow_private {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else { return Ok(()) };
    match refused_kind(ip) {
        Some(kind) => Err(Refused { host: ip.to_string(), addr: ip, kind }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("224.0.0.1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fc00::1", "private"),
            ("ff02::1", "multicast"),
            ("64:ff9b::a00:1", "reserved"),
        ] {
            assert_eq!(refused_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"] {
            assert_eq!(refused_kind(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn a_name_with_only_private_addresses_is_refused_with_a_clear_message() {
        let addrs = vec!["10.0.0.7:0".parse().unwrap()];
        let err = filter("hooks.internal", addrs.clone(), false).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hooks.internal resolves to 10.0.0.7, a private address"), "{text}");
        assert!(text.contains("ROWCAST_WEBHOOK_ALLOW_PRIVATE"), "{text}");
        assert_eq!(filter("hooks.internal", addrs, true).unwrap().len(), 1, "the flag lets it through");
        let mixed = vec!["10.0.0.7:0".parse().unwrap(), "8.8.8.8:0".parse().unwrap()];
        assert_eq!(filter("x", mixed, false).unwrap(), vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn ip_literals_are_checked() {
        let url = reqwest::Url::parse("http://127.0.0.1:9/x").unwrap();
        assert!(check_literal(&url, false).unwrap_err().to_string().contains("127.0.0.1 is a loopback address"));
        assert!(check_literal(&url, true).is_ok());
        assert!(check_literal(&reqwest::Url::parse("http://[::1]/").unwrap(), false).is_err());
        assert!(check_literal(&reqwest::Url::parse("https://example.com/").unwrap(), false).is_ok());
    }
}
