//! Bucket arithmetic shared by detectors that close fixed-length buckets on `tick`: how many
//! open buckets to keep, and how far a long silence may be skipped without skipping a bucket
//! that holds counts.

use std::collections::BTreeSet;

/// Open buckets an entity should keep at most. Events reach a key group's instance ahead of
/// its watermark by as much as its input partitions are apart in event time (a partition read
/// faster, after a restart or in a backlog), so this covers hours of such lag at 60 s buckets;
/// a cap of a few buckets dropped counts depending on read speed. Past it the oldest go
/// (bounded state for input far out of order).
pub const MAX_OPEN: usize = 256;

/// Where closing may resume when the buckets from `bucket` on are to be closed up to
/// `watermark_ms`: past a stretch of more than `catchup` empty buckets (none of them in
/// `counted`, the starts of buckets holding counts), all but the last `catchup` of the
/// stretch are skipped; `None` when there is nothing to skip. Skipping keeps one tick's work
/// bounded after a gap in the data (or the end-of-input tick near `i64::MAX`); stopping short
/// of counted buckets matters when the watermark lags the events (a key group's input
/// partitions apart in event time), where the buckets it jumps over are not empty.
pub fn skip_silence(
    bucket: i64,
    watermark_ms: i64,
    len: i64,
    catchup: i64,
    counted: &BTreeSet<i64>,
) -> Option<i64> {
    let until = counted
        .range(bucket..)
        .next()
        .map_or(watermark_ms, |&b| b.min(watermark_ms));
    let empty = until.saturating_sub(bucket).div_euclid(len.max(1));
    (empty > catchup).then(|| bucket + (empty - catchup) * len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_is_skipped_up_to_the_next_counted_bucket() {
        let counted: BTreeSet<i64> = [100, 1_000].into_iter().collect();
        // From 0, with counts at 100: nothing to skip (10 empty buckets, catchup 11).
        assert_eq!(skip_silence(0, 5_000, 10, 11, &counted), None);
        // From 110 to the counts at 1 000: 89 empty buckets, all but 11 skipped.
        assert_eq!(skip_silence(110, 5_000, 10, 11, &counted), Some(890));
        // Past the last counts, up to the watermark.
        assert_eq!(skip_silence(1_010, 5_000, 10, 11, &counted), Some(4_890));
        assert_eq!(
            skip_silence(1_010, i64::MAX, 10, 11, &counted).map(|b| b > 0),
            Some(true)
        );
    }
}
