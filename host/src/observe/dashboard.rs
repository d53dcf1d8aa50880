//! The live dashboard at `/`: a single page and its assets, embedded in the binary at build
//! time, and `/api/dashboard`, the JSON of what `/metrics` does not carry (latest alerts,
//! alerts per minute, top entities, the plugin reload history). The page reads every number
//! it shows from `/metrics` itself, so the two cannot disagree.

use serde::Serialize;

use crate::metrics::{AlertLine, EntityCount, Metrics, MinuteCount, Reload};

/// An embedded file: its path under the listener, content type and bytes.
pub struct Asset {
    /// Path it is served at.
    pub path: &'static str,
    /// Its content type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// Every file of the page.
pub const ASSETS: [Asset; 5] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/index.html"),
    },
    Asset {
        path: "/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/dashboard.js"),
    },
    Asset {
        path: "/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/dashboard.css"),
    },
    Asset {
        path: "/vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/vendor/uplot/uPlot.min.css"),
    },
];

/// The embedded file served at `path`, if any.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Top entities listed.
const TOP: usize = 10;

#[derive(Serialize)]
struct Dashboard {
    now_ms: i64,
    recent_alerts: Vec<AlertLine>,
    alerts_per_minute: Vec<MinuteCount>,
    top_entities: Vec<EntityCount>,
    /// Some entities were not counted (the count is over the first ones seen).
    entities_capped: bool,
    plugin_history: Vec<Reload>,
}

/// The JSON of `/api/dashboard`.
pub fn json(metrics: &Metrics) -> String {
    let (recent_alerts, alerts_per_minute, top_entities, entities_capped) = {
        let log = metrics.alert_log.lock().unwrap_or_else(|p| p.into_inner());
        (
            log.recent(),
            log.per_minute(),
            log.top(TOP),
            log.entities_capped,
        )
    };
    let plugin_history = metrics
        .plugin_history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .all();
    crate::json_text::to_json_text(
        &Dashboard {
            now_ms: chrono::Utc::now().timestamp_millis(),
            recent_alerts,
            alerts_per_minute,
            top_entities,
            entities_capped,
            plugin_history,
        },
        "dashboard",
    )
}
