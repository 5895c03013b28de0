//! Partition transforms on disk: what `sink.partition_by` ([`crate::spec::Partitioning`]) does to a
//! record's value and how the result names its folder, for the raw sink and for `validate` alike.
//!
//! | `partition_by` | partition value | folder |
//! |---|---|---|
//! | `"id"` (identity) | the value | `id=3/`, `sensor=a%2Fb/` (percent-encoded, as Hive) |
//! | `"bucket(id, 16)"` | Iceberg's `bucket[16]` of the value | `id_bucket=3/` |
//! | `"day(ts)"` | days since 1970-01-01 | `ts_day=2026-12-02/` |
//! | `"hour(ts)"` | hours since 1970-01-01 00:00 UTC | `ts_hour=2026-12-02-10/` (Iceberg's display) |
//! | `"none"` | | none: the files sit in the run folder |
//!
//! The bucket is Iceberg's (table spec, "Bucket Transform Details" and Appendix B), so Iceberg,
//! Spark's and Trino's Iceberg connectors and pyiceberg put a value in the same bucket: the 32-bit
//! Murmur3 hash (x86 variant, seed 0) of the value's single-value serialization, an int or long as
//! 8 little-endian bytes of a long, a string as its UTF-8 bytes, then
//! `(hash & i32::MAX) % N`.

use chrono::DateTime;

use crate::parse::json::{RecordParser, Slot};
use crate::parse::{Key, KeyRef};
use crate::spec::{Partitioning, Transform};

/// The value Hive and Spark write for a null partition value. streamlake never writes it (a
/// partition source column is required), but readers of other datasets meet it.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// MurmurHash3, x86 32-bit variant (Austin Appleby's `MurmurHash3_x86_32`).
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |mut k: u32| {
        k = k.wrapping_mul(C1);
        k = k.rotate_left(15);
        k.wrapping_mul(C2)
    };
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        h ^= mix(k);
        h = h.rotate_left(13);
        h = h.wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k |= u32::from(b) << (8 * i);
        }
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Iceberg's bucket of a hash: the sign bit dropped, then modulo `n`.
fn bucket_of_hash(hash: u32, n: u32) -> i64 {
    i64::from((hash & i32::MAX as u32) % n)
}

/// Iceberg's `bucket[n]` of an int or a long (both hash as a long).
pub fn bucket_of_long(v: i64, n: u32) -> i64 {
    bucket_of_hash(murmur3_x86_32(&v.to_le_bytes(), 0), n)
}

/// Iceberg's `bucket[n]` of a string (its UTF-8 bytes).
pub fn bucket_of_str(s: &str, n: u32) -> i64 {
    bucket_of_hash(murmur3_x86_32(s.as_bytes(), 0), n)
}

/// Days since 1970-01-01 of an instant in microseconds (floor, as Iceberg).
pub fn day_of(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_DAY)
}

/// Hours since 1970-01-01 00:00 UTC of an instant in microseconds (floor, as Iceberg).
pub fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_HOUR)
}

/// `2026-12-02` for a day number (Iceberg's human display of a `day` partition).
pub fn day_text(day: i64) -> String {
    DateTime::from_timestamp(day.saturating_mul(86_400), 0)
        .map_or_else(|| day.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

/// `2026-12-02-10` for an hour number (Iceberg's human display of an `hour` partition).
pub fn hour_text(hour: i64) -> String {
    DateTime::from_timestamp(hour.saturating_mul(3600), 0)
        .map_or_else(|| hour.to_string(), |d| d.format("%Y-%m-%d-%H").to_string())
}

/// Percent-encodes a folder value as Hive and Spark do for characters unsafe in a path (and a
/// leading `.`, which would hide the folder).
pub fn encode_folder_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, b) in value.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b' ') || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; anything malformed is kept as it is.
pub fn decode_folder_value(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Partitioning {
    /// The partition value of the record `parser` holds (parsed from `payload`). On the hot path:
    /// no allocation. The source column is required, so a parsed record always has it.
    #[inline]
    pub fn value_of<'p>(&self, parser: &'p RecordParser, payload: &'p [u8]) -> KeyRef<'p> {
        let slot = parser.slot(self.col);
        match (self.transform, slot) {
            (Transform::Identity, Slot::Int(v)) => KeyRef::Int(v),
            (Transform::Identity, Slot::Bool(b)) => KeyRef::Bool(b),
            (Transform::Identity, Slot::Str { .. }) => KeyRef::Str(parser.str_of(payload, slot)),
            (Transform::Bucket(n), Slot::Int(v)) => KeyRef::Int(bucket_of_long(v, n)),
            (Transform::Bucket(n), Slot::Str { .. }) => {
                KeyRef::Int(bucket_of_str(parser.str_of(payload, slot), n))
            }
            (Transform::Day, Slot::TimestampMicros(us)) => KeyRef::Int(day_of(us)),
            (Transform::Hour, Slot::TimestampMicros(us)) => KeyRef::Int(hour_of(us)),
            // Unreachable for a record the parser accepted (the column is required and typed).
            _ => KeyRef::Int(0),
        }
    }

    /// The partition value of one typed value as a reader finds it in a file (for `validate`):
    /// integers (int32, int64), strings, bools, timestamps in microseconds. `None` when the value
    /// does not fit the transform.
    pub fn value_of_cell(&self, cell: Cell<'_>) -> Option<Key> {
        Some(match (self.transform, cell) {
            (Transform::Identity, Cell::Int(v)) => Key::Int(v),
            (Transform::Identity, Cell::Str(s)) => Key::Str(s.to_string()),
            (Transform::Identity, Cell::Bool(b)) => Key::Bool(b),
            (Transform::Bucket(n), Cell::Int(v)) => Key::Int(bucket_of_long(v, n)),
            (Transform::Bucket(n), Cell::Str(s)) => Key::Int(bucket_of_str(s, n)),
            (Transform::Day, Cell::TimestampMicros(us)) => Key::Int(day_of(us)),
            (Transform::Hour, Cell::TimestampMicros(us)) => Key::Int(hour_of(us)),
            _ => return None,
        })
    }

    /// The folder's value, unencoded: `3`, `a/b`, `2026-12-02`, `2026-12-02-10`.
    pub fn folder_value(&self, key: KeyRef<'_>) -> String {
        match (self.transform, key) {
            (Transform::Day, KeyRef::Int(d)) => day_text(d),
            (Transform::Hour, KeyRef::Int(h)) => hour_text(h),
            (_, KeyRef::Int(v)) => v.to_string(),
            (_, KeyRef::Bool(b)) => b.to_string(),
            (_, KeyRef::Str(s)) => s.to_string(),
        }
    }

    /// The folder: `id=3`, `id_bucket=3`, `ts_day=2026-12-02`, the value percent-encoded.
    pub fn folder_name(&self, key: KeyRef<'_>) -> String {
        format!("{}={}", self.folder_column(), encode_folder_value(&self.folder_value(key)))
    }

    /// The partition value a folder's (decoded) value stands for, if it is one this partitioning
    /// writes: for a bucket a number in `0..N`, for a day `YYYY-MM-DD`, for an hour
    /// `YYYY-MM-DD-HH`. Identity folders of an int column read as integers, of a bool column as
    /// `true`/`false`, else as text.
    pub fn parse_folder_value(&self, value: &str, source: crate::spec::ColumnType) -> Option<Key> {
        use crate::spec::ColumnType;
        match self.transform {
            Transform::Identity => match source {
                ColumnType::Int32 | ColumnType::Int64 => value.parse().ok().map(Key::Int),
                ColumnType::Bool => value.parse().ok().map(Key::Bool),
                _ => Some(Key::Str(value.to_string())),
            },
            Transform::Bucket(n) => {
                value.parse::<i64>().ok().filter(|b| (0..i64::from(n)).contains(b)).map(Key::Int)
            }
            Transform::Day => {
                let d = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
                (day_text((d - epoch).num_days()) == value).then(|| Key::Int((d - epoch).num_days()))
            }
            Transform::Hour => {
                let (date, hour) = value.rsplit_once('-')?;
                let hour: i64 = hour.parse().ok().filter(|h| (0..24).contains(h))?;
                let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
                let h = (d - epoch).num_days() * 24 + hour;
                (hour_text(h) == value).then_some(Key::Int(h))
            }
        }
    }
}

/// One value of a source column as read back from a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Int(i64),
    Str(&'a str),
    Bool(bool),
    TimestampMicros(i64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ColumnType, Field};

    fn field(name: &str, ty: ColumnType) -> Field {
        Field { name: name.into(), ty, required: true }
    }

    fn schema() -> Vec<Field> {
        vec![
            field("id", ColumnType::Int32),
            field("ts", ColumnType::Timestamp),
            field("value", ColumnType::Float64),
            field("source", ColumnType::String),
        ]
    }

    fn part(text: &str) -> Partitioning {
        Partitioning::parse(text, &schema()).unwrap().unwrap()
    }

    #[test]
    fn murmur3_matches_the_iceberg_spec_vectors() {
        // Iceberg table spec, Appendix B: int and long 34, the string "iceberg", bytes 00 01 02 03.
        assert_eq!(murmur3_x86_32(&34i64.to_le_bytes(), 0), 2_017_239_379);
        assert_eq!(murmur3_x86_32(b"iceberg", 0), 1_210_000_089);
        assert_eq!(murmur3_x86_32(&[0, 1, 2, 3], 0) as i32, -188_683_207);
        // The tail of 1, 2 and 3 bytes, and the empty input (the reference implementation's values).
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"test", 0), 0xba6b_d213);
        assert_eq!(bucket_of_long(34, 16), 3);
        assert_eq!(bucket_of_long(34, 100), 79);
        assert_eq!(bucket_of_str("iceberg", 16), i64::from(1_210_000_089u32 % 16));
        // The sign bit is dropped before the modulo: a negative hash still gives 0 <= b < N.
        let negative = murmur3_x86_32(&[0, 1, 2, 3], 0);
        assert!(negative as i32 >= i32::MIN && (negative as i32) < 0);
        assert_eq!(bucket_of_hash(negative, 7), i64::from((negative & 0x7fff_ffff) % 7));
    }

    #[test]
    fn days_and_hours_are_floors_and_display_as_iceberg() {
        let us = 1_764_671_400_000_000; // 2025-12-02T10:30:00Z
        assert_eq!(day_text(day_of(us)), "2025-12-02");
        assert_eq!(hour_text(hour_of(us)), "2025-12-02-10");
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(MICROS_PER_DAY - 1), 0);
        assert_eq!(day_of(MICROS_PER_DAY), 1);
        assert_eq!(hour_of(-1), -1);
        assert_eq!(day_text(0), "1970-01-01");
        assert_eq!(hour_text(0), "1970-01-01-00");
    }

    #[test]
    fn folders_are_named_and_parsed_back() {
        let id = part("id");
        assert_eq!(id.folder_name(KeyRef::Int(3)), "id=3");
        let bucket = part("bucket(id, 16)");
        assert_eq!(bucket.folder_column(), "id_bucket");
        assert_eq!(bucket.folder_name(KeyRef::Int(3)), "id_bucket=3");
        assert_eq!(bucket.parse_folder_value("3", ColumnType::Int32), Some(Key::Int(3)));
        assert_eq!(bucket.parse_folder_value("16", ColumnType::Int32), None, "out of range");
        let day = part("day(ts)");
        let d = day_of(1_764_671_400_000_000);
        assert_eq!(day.folder_name(KeyRef::Int(d)), "ts_day=2025-12-02");
        assert_eq!(day.folder_value(KeyRef::Int(d)), "2025-12-02");
        assert_eq!(day.parse_folder_value("2025-12-02", ColumnType::Timestamp), Some(Key::Int(d)));
        assert_eq!(day.parse_folder_value("2025-12-2", ColumnType::Timestamp), None);
        let hour = part("hour(ts)");
        let h = hour_of(1_764_671_400_000_000);
        assert_eq!(hour.folder_name(KeyRef::Int(h)), "ts_hour=2025-12-02-10");
        assert_eq!(hour.parse_folder_value("2025-12-02-10", ColumnType::Timestamp), Some(Key::Int(h)));
        assert_eq!(hour.parse_folder_value("2025-12-02-24", ColumnType::Timestamp), None);
        let source = part("source");
        assert_eq!(source.folder_name(KeyRef::Str("a/b c.d")), "source=a%2Fb c.d");
        assert_eq!(source.folder_name(KeyRef::Str(".x")), "source=%2Ex");
        assert_eq!(decode_folder_value("a%2Fb c.d"), "a/b c.d");
        assert_eq!(decode_folder_value("50%"), "50%");
        assert_eq!(decode_folder_value("%zz"), "%zz");
    }

    #[test]
    fn cells_read_back_map_to_the_folder_they_were_written_to() {
        let bucket = part("bucket(id, 16)");
        assert_eq!(bucket.value_of_cell(Cell::Int(34)), Some(Key::Int(3)));
        assert_eq!(bucket.value_of_cell(Cell::TimestampMicros(34)), None);
        let by_source = part("bucket(source, 8)");
        assert_eq!(
            by_source.value_of_cell(Cell::Str("iceberg")),
            Some(Key::Int(bucket_of_str("iceberg", 8)))
        );
        let day = part("day(ts)");
        assert_eq!(day.value_of_cell(Cell::TimestampMicros(MICROS_PER_DAY * 3 + 5)), Some(Key::Int(3)));
    }

    #[test]
    fn the_hot_path_reads_the_parsed_record() {
        let fields = schema();
        let mut parser = RecordParser::new(fields, 0, 2, 1);
        let payload = br#"{"id": 34, "ts": "2025-12-02T10:30:00Z", "value": 1.5, "source": "iceberg"}"#;
        parser.parse(Some(payload)).unwrap();
        assert_eq!(part("bucket(id, 16)").value_of(&parser, payload), KeyRef::Int(3));
        assert_eq!(part("id").value_of(&parser, payload), KeyRef::Int(34));
        assert_eq!(part("source").value_of(&parser, payload), KeyRef::Str("iceberg"));
        assert_eq!(
            part("bucket(source, 16)").value_of(&parser, payload),
            KeyRef::Int(bucket_of_str("iceberg", 16))
        );
        assert_eq!(part("day(ts)").value_of(&parser, payload), KeyRef::Int(day_of(1_764_671_400_000_000)));
        assert_eq!(part("hour(ts)").value_of(&parser, payload), KeyRef::Int(hour_of(1_764_671_400_000_000)));
    }
}
