//! `[observability]`: the HTTP listener for `/metrics`, `/healthz`, `/readyz` and the
//! dashboard.

use serde::Deserialize;

/// Where the host serves its metrics and health.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// Serve at all (default true).
    pub enabled: bool,
    /// Address to listen on (default `127.0.0.1:9464`: loopback only; set e.g. `0.0.0.0:9464`
    /// to be scraped from other machines). Port 0 picks a free port (logged).
    pub listen: String,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl ObservabilityConfig {
    /// The listen address, checked: `Err` says what was expected.
    pub fn address(&self) -> Result<std::net::SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "expected an IP address and port such as 127.0.0.1:9464, got {:?}",
                self.listen
            )
        })
    }
}
