//! Client networks: the grouping of addresses that one operator usually controls, the same
//! as [`StateKey::IpNetwork`](crate::info::StateKey::IpNetwork) routes by.

/// The network an address belongs to: `a.b.c.0/24` for IPv4, the first three groups `/48` for
/// IPv6; `None` for anything else.
pub fn network(ip: &str) -> Option<String> {
    if ip.contains(':') {
        let groups: Vec<&str> = ip.split(':').take(3).collect();
        if groups.len() < 3 || groups.iter().any(|g| g.is_empty() || g.len() > 4) {
            return None;
        }
        return Some(format!("{}::/48", groups.join(":").to_ascii_lowercase()));
    }
    let octets: Vec<&str> = ip.split('.').collect();
    if octets.len() != 4 || octets.iter().any(|o| o.parse::<u8>().is_err()) {
        return None;
    }
    Some(format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_named() {
        assert_eq!(network("198.51.100.7").as_deref(), Some("198.51.100.0/24"));
        assert_eq!(
            network("2001:DB8:1:2::5").as_deref(),
            Some("2001:db8:1::/48")
        );
        assert_eq!(network("not an ip"), None);
        assert_eq!(network("1.2.3.400"), None);
    }
}
