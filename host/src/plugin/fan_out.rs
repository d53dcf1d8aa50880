//! One batch, several plugins, several threads: the plugins of a task share a large batch
//! out over scoped threads (see [`super::PluginSet::process`]).

use std::sync::Arc;
use std::time::Instant;

use super::bindings::ClickBatch;
use super::slot::{Outcome, Slot};

/// Fewest events in a batch for its plugins to run on several threads: below it the work is
/// too small to pay for starting one (tens of microseconds).
pub(super) const MIN_EVENTS: u32 = 512;

/// [`PluginSet::process`] on `threads` threads (this one and `threads - 1` scoped ones): the
/// outcome of each slot, in the slots' order. A thread that cannot be started leaves its
/// share to the others.
pub(super) fn process(
    slots: &mut [&mut Slot],
    batch: &Arc<ClickBatch>,
    now: Instant,
    threads: usize,
) -> Vec<Outcome> {
    let count = slots.len();
    let next = std::sync::Mutex::new(slots.iter_mut().enumerate());
    let work = || {
        let mut done = Vec::new();
        loop {
            // The lock is held only to take the next slot, not while it runs.
            let taken = match next.lock() {
                Ok(mut queue) => queue.next(),
                Err(poisoned) => poisoned.into_inner().next(),
            };
            let Some((i, slot)) = taken else {
                return done;
            };
            done.push((i, slot.process(batch, now)));
        }
    };
    let done: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("plugins".into())
                    .spawn_scoped(scope, work)
                    .map_err(|error| tracing::warn!(%error, "cannot start a plugin thread; its plugins run on the others"))
                    .ok()
            })
            .collect();
        let mut done = work();
        for helper in helpers {
            match helper.join() {
                Ok(theirs) => done.extend(theirs),
                // Slot calls contain the plugin's traps; a panic here is a host bug. The slots
                // that thread took produce nothing this batch.
                Err(_) => tracing::error!("a plugin thread panicked"),
            }
        }
        done
    });
    // A slot whose thread panicked has no outcome: it produced nothing this batch.
    let mut outcomes: Vec<Outcome> = (0..count).map(|_| Outcome::Skipped).collect();
    for (i, outcome) in done {
        if let Some(slot) = outcomes.get_mut(i) {
            *slot = outcome;
        }
    }
    outcomes
}
