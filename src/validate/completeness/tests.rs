//! Unit tests of `validate::completeness`.

use super::*;

const T0: i64 = 1_750_000_000_000;

/// (end − T0, key, raw, on time, late-dropped, open, status).
type Brief = (i64, i64, u64, u64, Option<i64>, u64, WindowStatus);

fn map(items: &[(i64, i64, u64)]) -> BTreeMap<(i64, PartValue), u64> {
    items.iter().map(|&(end, k, n)| ((end, PartValue::Int(k)), n)).collect()
}

#[test]
fn windows_are_aligned_half_open_intervals() {
    assert_eq!(window_end_ms(T0 * 1000, 10_000), T0 + 10_000);
    assert_eq!(window_end_ms((T0 + 9_999) * 1000 + 999, 10_000), T0 + 10_000);
    assert_eq!(window_end_ms((T0 + 10_000) * 1000, 10_000), T0 + 20_000);
    assert_eq!(window_end_ms(-1, 10_000), 0);
}

#[test]
fn late_is_raw_minus_on_time_for_closed_windows_only() {
    let raw = map(&[(T0 + 10_000, 1, 5), (T0 + 10_000, 2, 1), (T0 + 20_000, 1, 4), (T0 + 30_000, 1, 2)]);
    // Key 2's window closed with no on-time row (all late); key 3's aggregated more than raw.
    let on_time = map(&[(T0 + 10_000, 1, 3), (T0 + 20_000, 1, 4), (T0 + 20_000, 3, 2)]);
    let w = tally("run_x", 10_000, Some(T0 + 20_000), &raw, &on_time);
    let got: Vec<Brief> = w
        .iter()
        .map(|w| {
            let PartValue::Int(k) = w.key else { panic!() };
            (w.window_end_ms - T0, k, w.raw, w.on_time, w.late_dropped, w.open, w.status)
        })
        .collect();
    use WindowStatus::*;
    assert_eq!(
        got,
        vec![
            (10_000, 1, 5, 3, Some(2), 0, Closed),
            (10_000, 2, 1, 0, Some(1), 0, Closed),
            (20_000, 1, 4, 4, Some(0), 0, Closed),
            (20_000, 3, 0, 2, Some(-2), 0, Closed),
            (30_000, 1, 2, 0, None, 2, Open),
        ]
    );
    assert_eq!(w[0].window_start_ms, T0);
    assert_eq!(w[0].window_start, "2025-06-15T15:06:40Z");
    // Nothing closed yet: every window is open.
    let w = tally("run_x", 10_000, None, &raw, &map(&[]));
    assert!(w.iter().all(|w| w.status == WindowStatus::Open && w.late_dropped.is_none()));
    assert_eq!(w.iter().map(|w| w.open).sum::<u64>(), 12);
}

#[test]
fn aggregates_sit_beside_the_raw_dataset_keyed_by_its_name_from_format_2() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("parquet/run_e2e");
    fs::create_dir_all(run.join(format::CHECKPOINT_DIR)).unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    assert_eq!(aggregates_dir(&run), Some(root.join("aggregates/run_e2e")), "format 1");
    fs::write(run.join("_checkpoint/identity.json"), b"{}").unwrap();
    assert_eq!(aggregates_dir(&run), Some(root.join("aggregates/parquet/run_e2e")), "format 2");
}
