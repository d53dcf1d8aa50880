//! Encodes host events into the contract's columnar batch: one flat list per field and one
//! interned string table, built once per batch and shared by every plugin.

use std::collections::HashMap;

use super::bindings::ClickBatch;
use crate::event::ClickEvent;

/// Builds the columnar batch for `events`.
pub fn encode_batch(events: &[ClickEvent]) -> ClickBatch {
    let n = events.len();
    let mut b = Builder {
        text: Vec::with_capacity(n * 64),
        starts: Vec::with_capacity(n * 4),
        index: HashMap::with_capacity(n * 4),
    };
    b.starts.push(0);
    b.starts.push(0);
    let mut batch = ClickBatch {
        len: n as u32,
        text: Vec::new(),
        starts: Vec::new(),
        time_ms: Vec::with_capacity(n),
        kind: Vec::with_capacity(n),
        event_id: Vec::with_capacity(n),
        session: Vec::with_capacity(n),
        user: Vec::with_capacity(n),
        url: Vec::with_capacity(n),
        referrer: Vec::with_capacity(n),
        ip: Vec::with_capacity(n),
        user_agent: Vec::with_capacity(n),
        device: Vec::with_capacity(n),
        country: Vec::with_capacity(n),
        properties: Vec::with_capacity(n),
    };
    for e in events {
        batch.time_ms.push(e.time_ms);
        batch.kind.push(e.kind.code());
        batch.event_id.push(b.intern(&e.event_id));
        batch.session.push(b.intern(&e.session_id));
        batch.user.push(b.intern_opt(e.user_id.as_deref()));
        batch.url.push(b.intern(&e.url));
        batch.referrer.push(b.intern_opt(e.referrer.as_deref()));
        batch.ip.push(b.intern_opt(e.ip.as_deref()));
        batch.user_agent.push(b.intern_opt(e.user_agent.as_deref()));
        batch.device.push(b.intern_opt(e.device.as_deref()));
        batch.country.push(b.intern_opt(e.country.as_deref()));
        let p = match &e.properties {
            Some(p) if !p.is_empty() => b.intern(p.as_str()),
            _ => 0,
        };
        batch.properties.push(p);
    }
    batch.text = b.text;
    batch.starts = b.starts;
    batch
}

struct Builder {
    text: Vec<u8>,
    starts: Vec<u32>,
    /// Maps a string to its index; keys are offsets into `text` to avoid a copy per string.
    index: HashMap<Box<str>, u32>,
}

impl Builder {
    fn intern(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.text.extend_from_slice(s.as_bytes());
        let id = (self.starts.len() - 1) as u32;
        self.starts.push(self.text.len() as u32);
        self.index.insert(s.into(), id);
        id
    }

    fn intern_opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(0, |s| self.intern(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn interns_strings_and_keeps_columns_aligned() {
        let e = |id: &str, session: &str| ClickEvent {
            event_id: id.into(),
            time_ms: 7,
            kind: EventKind::Click,
            session_id: session.into(),
            user_id: None,
            url: "/a".into(),
            referrer: None,
            ip: Some("1.2.3.4".into()),
            user_agent: None,
            device: None,
            country: None,
            properties: None,
        };
        let b = encode_batch(&[e("e1", "s"), e("e2", "s")]);
        assert_eq!(b.len, 2);
        assert_eq!(b.session[0], b.session[1]);
        assert_eq!(b.user, vec![0, 0]);
        let s = |i: u32| {
            std::str::from_utf8(
                &b.text[b.starts[i as usize] as usize..b.starts[i as usize + 1] as usize],
            )
            .unwrap()
        };
        assert_eq!(s(b.event_id[1]), "e2");
        assert_eq!(s(b.ip[0]), "1.2.3.4");
        assert_eq!(s(0), "");
    }
}
