//! The window oracle over a topic's records: what `streamlake run --available-now
//! --flush-windows` must write as final window rows for the `events` dataflow (10 s tumbling
//! windows of `value` per `id`), computed the naive way from the records a plain consumer read.

use std::collections::BTreeMap;

use super::ledger::{expected_row, Records};

/// The window length of `dataflows/events.toml`, in microseconds.
pub const WINDOW_US: i64 = 10_000_000;

/// (window_end_us, id) → the values of the good records of that window, in topic order per
/// partition. Every good record is counted: use it where no record can be late.
pub fn oracle_windows(records: &Records, max_future_ms: i64) -> BTreeMap<(i64, i64), Vec<f64>> {
    let mut windows: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
    for recs in records.values() {
        for (_, payload) in recs {
            let Some((id, bits)) = expected_row(payload.as_deref(), max_future_ms) else { continue };
            let v: serde_json::Value = serde_json::from_slice(payload.as_deref().unwrap()).unwrap();
            let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap();
            let end = ts.timestamp_micros().div_euclid(WINDOW_US) * WINDOW_US + WINDOW_US;
            windows.entry((end, id)).or_default().push(f64::from_bits(bits));
        }
    }
    windows
}

/// The average as streamlake defines it: the sum in 1e-9 fixed point (exact whatever the order),
/// divided by the count.
pub fn exact_avg(values: &[f64]) -> f64 {
    let nanos: i128 = values.iter().map(|v| (v * 1e9).round() as i128).sum();
    (nanos as f64 / 1e9) / values.len() as f64
}

/// Compares final window rows ((window_end_us, id) → (avg, count), as `read_aggregates` returns
/// them) with the oracle: the same windows, each with the oracle's count and exact average.
/// Returns the differences, at most `max` of them, each described.
pub fn window_differences(
    got: &BTreeMap<(i64, i64), (f64, i64)>,
    want: &BTreeMap<(i64, i64), Vec<f64>>,
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, values) in want {
        if out.len() >= max {
            return out;
        }
        let (avg, count) = (exact_avg(values), values.len() as i64);
        match got.get(k) {
            None => out.push(format!("window {k:?}: missing (oracle: avg {avg}, count {count})")),
            Some(&(g_avg, g_count)) if g_avg != avg || g_count != count => {
                out.push(format!("window {k:?}: avg {g_avg} count {g_count}, oracle avg {avg} count {count}"))
            }
            Some(_) => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(k)).take(max.saturating_sub(out.len())) {
        out.push(format!("window {k:?}: written, but the topic has no good record in it"));
    }
    out
}
