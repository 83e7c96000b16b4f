//! Which region a client is in (pure), for counting where a service's demand comes from: a
//! trusted header (as a CDN sets it), else a CIDR → region table, else the gateway's own region.

use std::net::IpAddr;

/// One line of the table: addresses in `network/len` are in `region`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    len: u8,
    pub region: String,
}

/// An address as 128 bits (IPv4 mapped into IPv6), so one table holds both.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// Parse a table: one `ADDRESS/LEN REGION` per line; blank lines and `#` comments skipped.
pub fn parse_cidrs(text: &str) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        let mut parts = line.split_whitespace();
        let (Some(net), Some(region), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected ADDRESS/LEN REGION"));
        };
        let (addr, len) = net.split_once('/').ok_or_else(|| bad("no /LEN"))?;
        let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
        let len = match ip {
            IpAddr::V4(_) if len <= 32 => len + 96,
            IpAddr::V6(_) if len <= 128 => len,
            _ => return Err(bad("prefix length too long")),
        };
        out.push(Cidr {
            network: bits(ip) & mask(len),
            len,
            region: region.to_string(),
        });
    }
    Ok(out)
}

/// Where a client is: the longest matching prefix's region.
pub fn region_of(table: &[Cidr], ip: IpAddr) -> Option<&str> {
    let ip = bits(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    });
    table
        .iter()
        .filter(|c| ip & mask(c.len) == c.network)
        .max_by_key(|c| c.len)
        .map(|c| c.region.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_names_the_region() {
        let t = parse_cidrs(
            "# offices\n10.0.0.0/8 eu-west\n10.20.0.0/16 ap-south  # Mumbai\n\n2001:db8::/32 us-east\n",
        )
        .expect("parses");
        let at = |ip: &str| region_of(&t, ip.parse().expect("ip"));
        assert_eq!(at("10.1.2.3"), Some("eu-west"));
        assert_eq!(at("10.20.9.9"), Some("ap-south"));
        assert_eq!(at("::ffff:10.20.9.9"), Some("ap-south"));
        assert_eq!(at("2001:db8::1"), Some("us-east"));
        assert_eq!(at("192.168.1.1"), None);
        for bad in [
            "10.0.0.0 eu",
            "10.0.0.0/33 eu",
            "nonsense/8 eu",
            "10.0.0.0/8",
            "1.2.3.4/8 a b",
        ] {
            assert!(parse_cidrs(bad).is_err(), "{bad}");
        }
    }
}
