//! `[observability]`: the HTTP listener for `/metrics`, `/healthz`, `/readyz` and the
//! dashboard.

use serde::Deserialize;

/// Where the host serves its metrics and health.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Serve at all (default true).
    pub enabled: bool,
    /// Address to listen on (default `127.0.0.1:9464`: loopback only). Port 0 picks a free
    /// port (logged). An address other machines can reach (e.g. `0.0.0.0:9464`) also needs
    /// `allow_remote = true`.
    pub listen: String,
    /// Allow `listen` to be an address that is not loopback (default false): the metrics and
    /// the dashboard have no authentication, so exposing them must be a decision.
    pub allow_remote: bool,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            allow_remote: false,
        }
    }
}

impl ObservabilityConfig {
    /// The listen address, checked: `Err` says what was expected.
    pub fn address(&self) -> Result<std::net::SocketAddr, String> {
        let address: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "expected an IP address and port such as 127.0.0.1:9464, got {:?}",
                self.listen
            )
        })?;
        if !address.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "expected a loopback address such as 127.0.0.1:9464, got {:?}, which other machines can reach; \
                 the metrics and the dashboard have no authentication, so set observability.allow_remote = true \
                 if that is what you want",
                self.listen
            ));
        }
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(listen: &str, allow_remote: bool) -> Result<std::net::SocketAddr, String> {
        ObservabilityConfig {
            enabled: true,
            listen: listen.into(),
            allow_remote,
        }
        .address()
    }

    #[test]
    fn only_loopback_unless_remote_is_allowed_explicitly() {
        assert!(at("127.0.0.1:9464", false).is_ok());
        assert!(at("[::1]:0", false).is_ok());
        let refused = at("0.0.0.0:9464", false).unwrap_err();
        assert!(refused.contains("allow_remote"), "{refused}");
        assert!(at("192.168.1.5:9464", false).is_err());
        assert_eq!(at("0.0.0.0:9464", true).unwrap().port(), 9464);
        assert!(
            at("localhost:9464", false)
                .unwrap_err()
                .contains("expected an IP")
        );
    }
}
