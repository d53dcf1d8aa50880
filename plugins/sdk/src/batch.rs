//! The zero-copy view of a batch of click events.
//!
//! The host sends events column by column with one shared string table (see `click-batch` in
//! `wit/clickwatch.wit`). [`Batch`] wraps those columns and hands out [`Click`] views whose
//! string fields borrow straight from the table: iterating costs no allocation.

/// The type of a click event. Mirrors the closed set of the event model; codes the SDK does not
/// know (from a newer host) read as [`EventKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// Every kind, in code order.
    pub const ALL: [EventKind; 11] = [
        EventKind::PageView,
        EventKind::Click,
        EventKind::Search,
        EventKind::AddToCart,
        EventKind::RemoveFromCart,
        EventKind::Checkout,
        EventKind::Purchase,
        EventKind::Login,
        EventKind::Logout,
        EventKind::AdClick,
        EventKind::Other,
    ];

    /// Decodes the wire code (see the contract); unknown codes are `Other`.
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

    /// The wire code of this kind.
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

    /// The snake_case name used in event JSON, e.g. `add_to_cart`.
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

/// The columns of a batch as they cross the boundary. Authors read batches through [`Batch`];
/// [`crate::testing::BatchBuilder`] builds one natively.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchData {
    /// UTF-8 bytes of every distinct string, concatenated.
    pub text: Vec<u8>,
    /// Start offset of each string in `text`, plus a final end offset.
    pub starts: Vec<u32>,
    /// Event time, ms since the Unix epoch.
    pub time_ms: Vec<i64>,
    /// Event kind codes.
    pub kind: Vec<u8>,
    /// Event id string indices.
    pub event_id: Vec<u32>,
    /// Session id string indices.
    pub session: Vec<u32>,
    /// User id string indices (0 = anonymous).
    pub user: Vec<u32>,
    /// URL string indices.
    pub url: Vec<u32>,
    /// Referrer string indices (0 = none).
    pub referrer: Vec<u32>,
    /// IP string indices (0 = unknown).
    pub ip: Vec<u32>,
    /// User agent string indices (0 = unknown).
    pub user_agent: Vec<u32>,
    /// Device string indices (0 = unknown).
    pub device: Vec<u32>,
    /// Country string indices (0 = unknown).
    pub country: Vec<u32>,
    /// Properties JSON string indices (0 = none).
    pub properties: Vec<u32>,
}

impl BatchData {
    /// Checks that the columns agree in length and the text is UTF-8, and returns the view.
    pub fn view(&self) -> Result<Batch<'_>, String> {
        let len = self.time_ms.len();
        let columns = [
            self.kind.len(),
            self.event_id.len(),
            self.session.len(),
            self.user.len(),
            self.url.len(),
            self.referrer.len(),
            self.ip.len(),
            self.user_agent.len(),
            self.device.len(),
            self.country.len(),
            self.properties.len(),
        ];
        if columns.iter().any(|&n| n != len) {
            return Err(format!(
                "batch columns disagree in length: time has {len}, others {columns:?}"
            ));
        }
        let text =
            std::str::from_utf8(&self.text).map_err(|e| format!("batch text is not UTF-8: {e}"))?;
        Ok(Batch { data: self, text })
    }
}

/// A batch of click events, in arrival order (not sorted by time; see [`crate::Plugin::process`]).
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    data: &'a BatchData,
    text: &'a str,
}

impl<'a> Batch<'a> {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.data.time_ms.len()
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Click<'a>> + 'a {
        let batch = *self;
        (0..self.len()).map(move |index| Click { batch, index })
    }

    /// The event at `index`, if any.
    pub fn get(&self, index: usize) -> Option<Click<'a>> {
        (index < self.len()).then_some(Click {
            batch: *self,
            index,
        })
    }

    /// String `index` of the table; "" for an index out of range (never panics).
    fn string(&self, index: u32) -> &'a str {
        let i = index as usize;
        let (Some(&start), Some(&end)) = (self.data.starts.get(i), self.data.starts.get(i + 1))
        else {
            return "";
        };
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    fn column(&self, column: &[u32], index: usize) -> &'a str {
        column.get(index).map_or("", |&s| self.string(s))
    }
}

impl<'a> IntoIterator for &Batch<'a> {
    type Item = Click<'a>;
    type IntoIter = Box<dyn ExactSizeIterator<Item = Click<'a>> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// One click event, borrowed from its batch.
#[derive(Debug, Clone, Copy)]
pub struct Click<'a> {
    batch: Batch<'a>,
    index: usize,
}

fn optional(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl<'a> Click<'a> {
    /// Event time, ms since the Unix epoch, UTC.
    pub fn time_ms(&self) -> i64 {
        self.batch
            .data
            .time_ms
            .get(self.index)
            .copied()
            .unwrap_or_default()
    }

    /// The event type.
    pub fn kind(&self) -> EventKind {
        EventKind::from_code(self.batch.data.kind.get(self.index).copied().unwrap_or(255))
    }

    /// The globally unique event id.
    pub fn event_id(&self) -> &'a str {
        self.batch.column(&self.batch.data.event_id, self.index)
    }

    /// The session id.
    pub fn session(&self) -> &'a str {
        self.batch.column(&self.batch.data.session, self.index)
    }

    /// The user id, `None` for anonymous visitors.
    pub fn user(&self) -> Option<&'a str> {
        optional(self.batch.column(&self.batch.data.user, self.index))
    }

    /// The page URL.
    pub fn url(&self) -> &'a str {
        self.batch.column(&self.batch.data.url, self.index)
    }

    /// The referrer, if any.
    pub fn referrer(&self) -> Option<&'a str> {
        optional(self.batch.column(&self.batch.data.referrer, self.index))
    }

    /// The client IP address, if known.
    pub fn ip(&self) -> Option<&'a str> {
        optional(self.batch.column(&self.batch.data.ip, self.index))
    }

    /// The user agent, if known.
    pub fn user_agent(&self) -> Option<&'a str> {
        optional(self.batch.column(&self.batch.data.user_agent, self.index))
    }

    /// The device class (desktop, mobile, tablet, ...), if known.
    pub fn device(&self) -> Option<&'a str> {
        optional(self.batch.column(&self.batch.data.device, self.index))
    }

    /// The ISO country code, if known.
    pub fn country(&self) -> Option<&'a str> {
        optional(self.batch.column(&self.batch.data.country, self.index))
    }

    /// The free-form properties as a JSON object text, if any.
    pub fn properties_json(&self) -> Option<&'a str> {
        optional(self.batch.column(&self.batch.data.properties, self.index))
    }

    /// One property, parsed on demand (this allocates: use it for rare fields).
    pub fn property(&self, name: &str) -> Option<serde_json::Value> {
        let json = self.properties_json()?;
        let mut map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).ok()?;
        map.remove(name)
    }
}
