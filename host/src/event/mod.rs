//! The click event model: what one event is, and how it is read from and written to JSON.

mod json;
mod properties;

pub use json::{InvalidEvent, MAX_EVENT_BYTES, decode, encode, format_time};
pub use properties::Properties;

use serde::{Deserialize, Serialize};

/// The closed set of event types. Codes match the `kind` column of the plugin contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A page was loaded.
    PageView,
    /// An element was clicked.
    Click,
    /// A site search.
    Search,
    /// A product went into the cart.
    AddToCart,
    /// A product left the cart.
    RemoveFromCart,
    /// Checkout started.
    Checkout,
    /// An order was placed.
    Purchase,
    /// A user logged in.
    Login,
    /// A user logged out.
    Logout,
    /// An advertisement was clicked.
    AdClick,
    /// Anything else.
    Other,
}

impl EventKind {
    /// The kind of a [`EventKind::code`]; unknown codes are [`EventKind::Other`].
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => EventKind::PageView,
            1 => EventKind::Click,
            2 => EventKind::Search,
            3 => EventKind::AddToCart,
            4 => EventKind::RemoveFromCart,
            5 => EventKind::Checkout,
            6 => EventKind::Purchase,
            7 => EventKind::Login,
            8 => EventKind::Logout,
            9 => EventKind::AdClick,
            _ => EventKind::Other,
        }
    }

    /// The wire code used in plugin batches (see `wit/clickwatch.wit`).
    pub fn code(self) -> u8 {
        match self {
            EventKind::PageView => 0,
            EventKind::Click => 1,
            EventKind::Search => 2,
            EventKind::AddToCart => 3,
            EventKind::RemoveFromCart => 4,
            EventKind::Checkout => 5,
            EventKind::Purchase => 6,
            EventKind::Login => 7,
            EventKind::Logout => 8,
            EventKind::AdClick => 9,
            EventKind::Other => 255,
        }
    }

    /// The snake_case name used in JSON and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PageView => "page_view",
            EventKind::Click => "click",
            EventKind::Search => "search",
            EventKind::AddToCart => "add_to_cart",
            EventKind::RemoveFromCart => "remove_from_cart",
            EventKind::Checkout => "checkout",
            EventKind::Purchase => "purchase",
            EventKind::Login => "login",
            EventKind::Logout => "logout",
            EventKind::AdClick => "ad_click",
            EventKind::Other => "other",
        }
    }
}

/// One validated click event. Documented field by field in `docs/event-schema.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickEvent {
    /// Globally unique id; storage is idempotent on it.
    pub event_id: String,
    /// When it happened, ms since the Unix epoch, UTC.
    pub time_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// The browsing session.
    pub session_id: String,
    /// The logged-in user, if any.
    pub user_id: Option<String>,
    /// The page.
    pub url: String,
    /// Where the visitor came from.
    pub referrer: Option<String>,
    /// Client IP address (text; v4 or v6).
    pub ip: Option<String>,
    /// Browser user agent.
    pub user_agent: Option<String>,
    /// Device class: desktop, mobile, tablet, ...
    pub device: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Free-form properties (price, element id, ...): a JSON object, kept as sent.
    pub properties: Option<Properties>,
}
