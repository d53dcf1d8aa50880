//! A fixed-capacity ring of recent values: the one bounded buffer the detectors keep.

use serde::{Deserialize, Serialize};

/// The last `capacity` values pushed, oldest overwritten. Allocates once, at the first push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ring {
    capacity: usize,
    values: Vec<f64>,
    /// Index of the oldest value once full.
    head: usize,
}

impl Ring {
    /// An empty ring of at most `capacity` (at least 1) values.
    pub fn new(capacity: usize) -> Self {
        Ring {
            capacity: capacity.max(1),
            values: Vec::new(),
            head: 0,
        }
    }

    /// Adds `x`, dropping the oldest value when full.
    pub fn push(&mut self, x: f64) {
        if self.values.capacity() < self.capacity {
            self.values.reserve_exact(self.capacity - self.values.len());
        }
        if self.values.len() < self.capacity {
            self.values.push(x);
        } else if let Some(slot) = self.values.get_mut(self.head) {
            *slot = x;
            self.head = (self.head + 1) % self.capacity;
        }
    }

    /// Values held (at most the capacity).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The most recent value.
    pub fn last(&self) -> Option<f64> {
        if self.values.len() < self.capacity {
            self.values.last().copied()
        } else {
            let i = (self.head + self.capacity - 1) % self.capacity;
            self.values.get(i).copied()
        }
    }

    /// The held values in no particular order (what order statistics need).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Forgets every value, keeping the allocation.
    pub fn clear(&mut self) {
        self.values.clear();
        self.head = 0;
    }
}

/// The median of `values`, using `scratch` (cleared, reused) so no allocation happens once it
/// has grown to the largest input. `None` when empty.
pub fn median(values: &[f64], scratch: &mut Vec<f64>) -> Option<f64> {
    scratch.clear();
    scratch.extend_from_slice(values);
    let n = scratch.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (_, m, _) = scratch.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = scratch
        .get(..mid)?
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    Some(0.5 * (lower + upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_values_only() {
        let mut r = Ring::new(3);
        for x in 1..=5 {
            r.push(f64::from(x));
        }
        let mut v = r.values().to_vec();
        v.sort_by(f64::total_cmp);
        assert_eq!(v, [3.0, 4.0, 5.0]);
        assert_eq!(r.last(), Some(5.0));
        assert_eq!(r.values().len(), 3);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        let mut s = Vec::new();
        assert_eq!(median(&[3.0, 1.0, 2.0], &mut s), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0], &mut s), Some(2.5));
        assert_eq!(median(&[], &mut s), None);
    }
}
