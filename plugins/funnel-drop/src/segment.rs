//! Segments: bounded classes of a session (device, country, browser family, referrer class)
//! that the funnel is also judged per.

use serde::{Deserialize, Serialize};

use crate::funnel::Series;

/// Dimensions, with the entity type their alerts name.
pub const DIMENSIONS: [&str; 4] = ["device", "country", "browser", "referrer_class"];

/// One tracked segment value and its funnel series.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Segment {
    pub dim: u8,
    pub value: String,
    #[serde(flatten)]
    pub series: Series,
}

fn short_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The device class, lower-cased; anything odd is `other`.
pub fn device(d: Option<&str>) -> String {
    let d = d.unwrap_or("").trim().to_ascii_lowercase();
    if short_token(&d) { d } else { "other".into() }
}

/// The country code, upper-cased; anything but 2-3 letters is `other`.
pub fn country(c: Option<&str>) -> String {
    let c = c.unwrap_or("").trim().to_ascii_uppercase();
    if (2..=3).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphabetic()) {
        c
    } else {
        "other".into()
    }
}

/// The browser family from the user agent: chrome, firefox, safari, edge or other.
pub fn browser(ua: Option<&str>) -> &'static str {
    let ua = ua.unwrap_or("").to_ascii_lowercase();
    if ua.contains("edg/") || ua.contains("edge/") || ua.contains("edga/") || ua.contains("edgios/")
    {
        "edge"
    } else if ua.contains("opr/") || ua.contains("opera") {
        "other"
    } else if ua.contains("firefox/") || ua.contains("fxios/") {
        "firefox"
    } else if ua.contains("chrome/") || ua.contains("crios/") || ua.contains("chromium/") {
        "chrome"
    } else if ua.contains("safari/") {
        "safari"
    } else {
        "other"
    }
}

/// The referrer class from its host: none, search, social, ads or other.
pub fn referrer(r: Option<&str>) -> &'static str {
    let Some(r) = r.map(str::trim).filter(|r| !r.is_empty()) else {
        return "none";
    };
    let rest = r.split_once("://").map_or(r, |(_, rest)| rest);
    let host = rest
        .split(['/', '?', '#', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let has = |names: &[&str]| {
        names.iter().any(|n| {
            host == *n || host.starts_with(&format!("{n}.")) || host.contains(&format!(".{n}."))
        })
    };
    if host.starts_with("ads.")
        || host.starts_with("ad.")
        || has(&[
            "doubleclick",
            "googleadservices",
            "googlesyndication",
            "adservice",
        ])
    {
        "ads"
    } else if has(&[
        "google",
        "bing",
        "duckduckgo",
        "yahoo",
        "baidu",
        "yandex",
        "ecosia",
        "search",
    ]) {
        "search"
    } else if host == "t.co"
        || host == "x.com"
        || has(&[
            "facebook",
            "instagram",
            "twitter",
            "linkedin",
            "reddit",
            "pinterest",
            "tiktok",
            "youtube",
        ])
    {
        "social"
    } else {
        "other"
    }
}

/// The slot of (`dim`, `value`), creating it while the dimension has fewer than `cap` values
/// (`other` always has room).
pub fn slot(segments: &mut Vec<Segment>, dim: u8, value: &str, cap: usize) -> u16 {
    if let Some(i) = segments
        .iter()
        .position(|s| s.dim == dim && s.value == value)
    {
        return i as u16;
    }
    let used = segments.iter().filter(|s| s.dim == dim).count();
    if value != "other" && used + 1 >= cap {
        return slot(segments, dim, "other", cap);
    }
    segments.push(Segment {
        dim,
        value: value.to_owned(),
        series: Series::default(),
    });
    (segments.len() - 1) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_bounded_and_sensible() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        let edge =
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 Edg/120.0";
        let iphone =
            "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1";
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
        assert_eq!(
            [chrome, edge, iphone, firefox, "python-requests/2.31"].map(|u| browser(Some(u))),
            ["chrome", "edge", "safari", "firefox", "other"]
        );
        assert_eq!(browser(None), "other");
        assert_eq!(
            [
                None,
                Some("https://www.google.com/"),
                Some("https://www.facebook.com/x"),
                Some("https://ads.example.net/click?pub=1"),
                Some("https://news.shop.example/newsletter"),
                Some("https://mail.example/"),
            ]
            .map(referrer),
            ["none", "search", "social", "ads", "other", "other"]
        );
        assert_eq!(device(Some(" Mobile ")), "mobile");
        assert_eq!(
            device(Some("a very long device name that is not a class")),
            "other"
        );
        assert_eq!(
            (country(Some("de")), country(Some("Q1"))),
            ("DE".into(), "other".into())
        );
        let mut segments = Vec::new();
        for i in 0..100 {
            slot(&mut segments, 1, &format!("C{i}"), 4);
        }
        assert_eq!(segments.len(), 4);
        assert_eq!(segments.last().map(|s| s.value.as_str()), Some("other"));
    }
}
