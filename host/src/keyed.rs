//! What a plugin's state is keyed by, and the key an event has under that rule: the routing
//! rule that makes every event with the same key meet in one plugin instance, on any host and
//! at any partition count (docs/design/keyed-state.md).

use std::borrow::Cow;
use std::fmt;

use crate::event::ClickEvent;

/// What a plugin's state is about (the contract's `state-key`). Shown and serialised as its
/// label: `session`, `ip-network`, `property:plan`, `global`, ...
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    /// The session id.
    Session,
    /// The user id; anonymous visitors by their session id.
    User,
    /// The client IP address.
    Ip,
    /// The IPv4 /24 or IPv6 /48 of the client IP.
    IpNetwork,
    /// The page URL.
    Url,
    /// One top-level field of `properties`, as text.
    Property(String),
    /// Every event: one instance.
    Global,
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateKey::Session => f.write_str("session"),
            StateKey::User => f.write_str("user"),
            StateKey::Ip => f.write_str("ip"),
            StateKey::IpNetwork => f.write_str("ip-network"),
            StateKey::Url => f.write_str("url"),
            StateKey::Property(name) => write!(f, "property:{name}"),
            StateKey::Global => f.write_str("global"),
        }
    }
}

impl serde::Serialize for StateKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl StateKey {
    /// Checks a key a plugin declared. Only a property name can be wrong.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            StateKey::Property(name)
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
            {
                Err(format!(
                    "state key property {name:?} must be 1-64 letters, digits, '_', '-' or '.'"
                ))
            }
            _ => Ok(()),
        }
    }

    /// The key of `event` under this rule; empty when the event lacks the value (all such
    /// events then meet in one instance).
    pub fn of<'a>(&self, event: &'a ClickEvent) -> Cow<'a, str> {
        match self {
            StateKey::Session => Cow::Borrowed(&event.session_id),
            StateKey::User => Cow::Borrowed(
                event
                    .user_id
                    .as_deref()
                    .unwrap_or(event.session_id.as_str()),
            ),
            StateKey::Ip => Cow::Borrowed(event.ip.as_deref().unwrap_or_default()),
            StateKey::IpNetwork => event.ip.as_deref().map_or(Cow::Borrowed(""), ip_network),
            StateKey::Url => Cow::Borrowed(&event.url),
            StateKey::Property(name) => {
                match event.properties.as_ref().and_then(|p| p.get(name.as_str())) {
                    None | Some(serde_json::Value::Null) => Cow::Borrowed(""),
                    Some(serde_json::Value::String(s)) => Cow::Owned(s),
                    Some(other) => Cow::Owned(other.to_string()),
                }
            }
            StateKey::Global => Cow::Borrowed(""),
        }
    }

    /// Which of `partitions` key partitions owns `event`'s key (0 when there is one, and
    /// always 0 for [`StateKey::Global`]).
    pub fn partition_of(&self, event: &ClickEvent, partitions: u32) -> u32 {
        if partitions <= 1 || *self == StateKey::Global {
            return 0;
        }
        (stable_hash(self.of(event).as_bytes()) % u64::from(partitions)) as u32
    }
}

/// The network of an IP address: `a.b.c` for IPv4 (the /24), the first three groups for IPv6
/// (the /48). Text that is no address is its own network.
pub fn ip_network(ip: &str) -> Cow<'_, str> {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            Cow::Owned(format!("{a}.{b}.{c}"))
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            Cow::Owned(format!("{:x}:{:x}:{:x}", s[0], s[1], s[2]))
        }
        Err(_) => Cow::Borrowed(ip),
    }
}

/// FNV-1a, 64-bit: a hash that is the same on every host, build and version (std's hasher
/// is seeded per process), so routing never depends on which host computed it.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> ClickEvent {
        crate::event::decode(
            br#"{"event_id":"e1","event_time":"2026-11-01T10:00:00Z","event_type":"page_view",
                "session_id":"s1","url":"/p/shoes-1","ip":"203.0.113.7",
                "properties":{"plan":"pro","seats":3}}"#,
        )
        .expect("valid event")
    }

    #[test]
    fn each_rule_reads_its_field_and_absent_values_are_empty() {
        let e = event();
        assert_eq!(StateKey::Session.of(&e), "s1");
        assert_eq!(StateKey::User.of(&e), "s1", "anonymous: the session");
        assert_eq!(StateKey::Ip.of(&e), "203.0.113.7");
        assert_eq!(StateKey::IpNetwork.of(&e), "203.0.113");
        assert_eq!(StateKey::Url.of(&e), "/p/shoes-1");
        assert_eq!(StateKey::Property("plan".into()).of(&e), "pro");
        assert_eq!(StateKey::Property("seats".into()).of(&e), "3");
        assert_eq!(StateKey::Property("missing".into()).of(&e), "");
        let mut no_ip = e.clone();
        no_ip.ip = None;
        assert_eq!(StateKey::IpNetwork.of(&no_ip), "");
    }

    #[test]
    fn networks_are_the_24_and_the_48() {
        assert_eq!(ip_network("10.1.2.3"), "10.1.2");
        assert_eq!(ip_network("2001:db8:abcd:12::1"), "2001:db8:abcd");
        assert_eq!(ip_network("not-an-ip"), "not-an-ip");
    }

    #[test]
    fn routing_is_stable_and_spreads_keys() {
        // Known FNV-1a values: the hash must never change between versions.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut e = event();
        let mut seen = [0u32; 4];
        for i in 0..400 {
            e.url = format!("/page/{i}");
            let p = StateKey::Url.partition_of(&e, 4);
            assert!(p < 4);
            assert_eq!(p, StateKey::Url.partition_of(&e, 4), "deterministic");
            seen[p as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "spread: {seen:?}");
        assert_eq!(StateKey::Global.partition_of(&e, 4), 0);
    }

    #[test]
    fn property_names_are_checked() {
        assert!(StateKey::Property(String::new()).validate().is_err());
        assert!(StateKey::Property("a b".into()).validate().is_err());
        assert!(StateKey::Property("plan.tier".into()).validate().is_ok());
        assert_eq!(
            StateKey::Property("plan".into()).to_string(),
            "property:plan"
        );
        assert_eq!(StateKey::IpNetwork.to_string(), "ip-network");
    }
}
