//! The process-wide counters of a run: the sources add to them, the run summary, the metrics and
//! the status page read them. They live apart from both sides so that neither imports the other.

use std::sync::atomic::AtomicU64;

use crate::parse::Reject;

/// Process-wide counters for the run summary.
#[derive(Debug, Default)]
pub struct SourceCounters {
    pub messages: AtomicU64,
    pub rows: AtomicU64,
    pub quarantined: AtomicU64,
    pub late: AtomicU64,
    pub commits: AtomicU64,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    /// Quarantined records per reason, in [`QUARANTINE_REASONS`] order.
    pub quarantined_by_reason: [AtomicU64; QUARANTINE_REASONS.len()],
}

/// Reason code of a record dated more than `--max-future` ahead of the wall clock.
pub const FUTURE_REASON: &str = "timestamp_in_future";

/// Index of [`FUTURE_REASON`] in [`QUARANTINE_REASONS`] (after the parser's codes).
pub const FUTURE_REASON_INDEX: usize = Reject::CODES.len();

/// Every quarantine reason code: the parser's, then the source's own.
pub const QUARANTINE_REASONS: [&str; Reject::CODES.len() + 1] = {
    let mut all = [FUTURE_REASON; Reject::CODES.len() + 1];
    let mut i = 0;
    while i < Reject::CODES.len() {
        all[i] = Reject::CODES[i];
        i += 1;
    }
    all
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_reason_comes_after_the_parser_codes() {
        assert_eq!(QUARANTINE_REASONS[FUTURE_REASON_INDEX], FUTURE_REASON);
        assert_eq!(&QUARANTINE_REASONS[..Reject::CODES.len()], &Reject::CODES[..]);
    }
}
