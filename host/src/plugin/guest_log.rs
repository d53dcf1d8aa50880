//! What a plugin writes through the host's `log` import during one call: the per-call line
//! cap, and the panic report the SDK's hook sends just before the guest traps.
//!
//! The cap protects the host's log from a chatty or hostile plugin. The panic report must
//! survive the cap (it explains the trap that follows), but it must not be a way around it:
//! only the first report of a call is written; later ones only replace the message kept for
//! the trap's classification.

/// Log lines one call may write: a chatty or hostile plugin must not flood the host's log.
pub const MAX_LOG_LINES: u32 = 100;

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Write it.
    Write,
    /// Write the warning that the cap was reached, and drop the line.
    DropAndWarn,
    /// Drop it silently.
    Drop,
    /// A panic report: write it (first of the call) and keep its message.
    Panic,
    /// A further panic report: keep its message, do not write it.
    PanicQuiet,
}

/// Per-call log state of one instance.
#[derive(Debug, Default)]
pub(crate) struct GuestLog {
    lines: u32,
    panics: u32,
    /// The message of the last panic report of this call.
    pub(crate) last_panic: Option<String>,
}

impl GuestLog {
    /// Forgets the previous call.
    pub(crate) fn reset(&mut self) {
        *self = GuestLog::default();
    }

    /// Decides what to do with a line with these fields, and counts it.
    pub(crate) fn admit(&mut self, fields: &[(String, String)]) -> Admit {
        if fields.iter().any(|(k, v)| k == "panic" && v == "true") {
            self.panics += 1;
            return if self.panics == 1 {
                Admit::Panic
            } else {
                Admit::PanicQuiet
            };
        }
        self.lines += 1;
        match self.lines {
            n if n <= MAX_LOG_LINES => Admit::Write,
            n if n == MAX_LOG_LINES + 1 => Admit::DropAndWarn,
            _ => Admit::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(panic: bool) -> Vec<(String, String)> {
        if panic {
            vec![
                ("panic".into(), "true".into()),
                ("location".into(), "x".into()),
            ]
        } else {
            vec![("panic".into(), "false".into())]
        }
    }

    #[test]
    fn a_panic_field_does_not_get_lines_past_the_cap() {
        let mut log = GuestLog::default();
        let written = (0..1000)
            .map(|i| log.admit(&line(i % 2 == 0)))
            .filter(|a| matches!(a, Admit::Write | Admit::Panic))
            .count();
        // The cap, plus the one panic report that explains the trap.
        assert_eq!(written, MAX_LOG_LINES as usize + 1);
    }

    #[test]
    fn the_cap_warns_once_and_resets_per_call() {
        let mut log = GuestLog::default();
        let admits: Vec<Admit> = (0..MAX_LOG_LINES + 5)
            .map(|_| log.admit(&line(false)))
            .collect();
        assert_eq!(
            admits.iter().filter(|a| **a == Admit::DropAndWarn).count(),
            1
        );
        assert_eq!(admits.iter().filter(|a| **a == Admit::Drop).count(), 4);
        log.reset();
        assert_eq!(log.admit(&line(false)), Admit::Write);
        assert_eq!(log.admit(&line(true)), Admit::Panic);
        assert_eq!(log.admit(&line(true)), Admit::PanicQuiet);
    }
}
