//! A flat-JSON-object scanner bound to a declared schema.
//!
//! One [`RecordParser`] per source worker. [`RecordParser::parse`] fills a scratch row in place;
//! accessors then read typed values out of it. Unknown fields are skipped (nested values
//! included), as Spark's `from_json` does; a declared field with a value of the wrong JSON type is
//! rejected, where Spark would silently null the whole row.
//!
//! The scanner (its grammar in `cursor.rs`) is strict JSON (RFC 8259) everywhere, fields the schema does not declare included:
//! a payload is `bad_json` exactly when `serde_json::from_slice::<serde_json::Value>` rejects it,
//! which `parse/differential.rs` checks on many generated and mutated payloads.
//!
//! Why a hand-written scanner and not serde_json: the schema is only known at run time (a
//! dataflow file), so the one generic replacement is `serde_json::Value`, which allocates a map
//! and a string per field. `examples/parse_bench.rs` (200,000 payloads, median of 11 runs
//! interleaved with the contenders', release) measured, in records/s, on the shared 2-core
//! development machine (other builds running: absolute figures vary 3x, ratios less):
//!
//! | payloads                       | scanner (lenient, before) | scanner (strict) | serde_json struct | serde_json `Value` |
//! |--------------------------------|--------------------------:|-----------------:|------------------:|-------------------:|
//! | seed `{id, ts, value, source}` | 3.9–4.1 M                 | 1.4–1.5 M        | 1.4–1.5 M         | 0.7–0.8 M          |
//! | `dataflows/sensors.toml`       | 2.3–3.2 M                 | 1.0–1.1 M        | 1.1–1.4 M         | 0.6–0.7 M          |
//! | seed + undeclared fields       | 2.7–2.8 M                 | 1.0–1.1 M        | 1.0–1.1 M         | 0.4–0.5 M          |
//!
//! (the strict column was measured under twice the load: compare each row's ratio to serde_json,
//! about 1.0–1.2 for the seed before and after, and 1.2–1.5 before, 0.9–1.1 after, with
//! undeclared fields, which the strict scanner now checks in full.)
//! A struct with `#[derive(Deserialize)]` (one per schema, compiled in) is as fast but cannot read
//! a schema from a file; `Value` is half as fast. simd-json and sonic-rs were not measured: they
//! are not in the dependency tree and this machine has no registry access. So the scanner stays,
//! strict, and allocation-free per record (escaped strings go to a reused buffer).

use super::cursor::{finite, number_text, unescape, Cursor, R};
use super::timestamp::{parse_iso8601_micros, TsError};
use super::{KeyRef, Reject};
use crate::spec::{ColumnType, Field};

/// One parsed value. Strings point into the payload, or into the scratch buffer when unescaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    Absent,
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Byte range in the payload (`scratch == false`) or in the unescape buffer.
    Str {
        start: u32,
        end: u32,
        scratch: bool,
    },
    TimestampMicros(i64),
}

/// The largest magnitude a window value may have: sums are exact in 128-bit fixed point with
/// nine decimals, which leaves room for 2^31 values of this size per window.
pub const MAX_ABS_VALUE: f64 = 1e18;
/// Timestamps are kept from 1970 until year 9999 (window times are unsigned milliseconds).
pub const MAX_TS_MICROS: i64 = 253_402_300_799_999_999;

pub struct RecordParser {
    fields: Vec<Field>,
    key_col: usize,
    value_col: usize,
    time_col: usize,
    slots: Vec<Slot>,
    scratch: String,
    payload_len: usize,
    /// The declared field (or `None`) at each position of the last record, for
    /// [`RecordParser::field_at`]'s first guess.
    order: Vec<Option<usize>>,
}

/// Positions of a record whose fields are remembered for the next record's first guess.
const MAX_REMEMBERED: usize = 64;

impl RecordParser {
    pub fn new(fields: Vec<Field>, key_col: usize, value_col: usize, time_col: usize) -> Self {
        let n = fields.len();
        RecordParser {
            fields,
            key_col,
            value_col,
            time_col,
            slots: vec![Slot::Absent; n],
            scratch: String::new(),
            payload_len: 0,
            order: Vec::new(),
        }
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Parses one payload into the scratch row. On success the accessors describe the record
    /// until the next call. `None` (a Kafka tombstone) counts as an empty payload.
    pub fn parse(&mut self, payload: Option<&[u8]>) -> R<()> {
        let payload = match payload {
            Some(p) if !p.is_empty() => p,
            _ => return Err(Reject::EmptyPayload),
        };
        self.scan(payload)?;
        self.check()
    }

    /// The JSON half of [`RecordParser::parse`]: reads the payload into the scratch row, typed
    /// by the schema, without the row-level checks (required fields, the key, the value's
    /// range). The differential test compares this half with serde_json.
    pub(crate) fn scan(&mut self, payload: &[u8]) -> R<()> {
        // UTF-8 is checked inside strings as they are scanned (`Cursor::string`), not in a pass
        // of its own. A payload that is rejected for any reason and is not UTF-8 is reported as
        // `not_utf8`, as when the whole payload was checked first: the reason does not depend
        // on where the bad byte sits.
        self.scan_json(payload).map_err(|e| match e {
            Reject::NotUtf8 => e,
            _ if std::str::from_utf8(payload).is_err() => Reject::NotUtf8,
            _ => e,
        })
    }

    fn scan_json(&mut self, payload: &[u8]) -> R<()> {
        self.payload_len = payload.len();
        self.scratch.clear();
        for s in &mut self.slots {
            *s = Slot::Absent;
        }
        let mut c = Cursor { b: payload, i: 0 };
        let mut position = 0;
        c.ws();
        c.expect(b'{', "the payload is not a JSON object")?;
        c.ws();
        if c.peek() == Some(b'}') {
            c.i += 1;
        } else {
            loop {
                c.ws();
                c.expect(b'"', "expected a field name")?;
                let (ks, ke, kesc) = c.string()?;
                c.ws();
                c.expect(b':', "expected ':' after a field name")?;
                c.ws();
                let name = &payload[ks..ke];
                let idx = if kesc {
                    let mut tmp = String::new();
                    unescape(name, Some(&mut tmp))?;
                    self.fields.iter().position(|f| f.name == tmp)
                } else {
                    self.field_at(position, name)
                };
                if let Some(seen) = self.order.get_mut(position) {
                    *seen = idx;
                } else if position < MAX_REMEMBERED {
                    self.order.push(idx);
                }
                position += 1;
                match idx {
                    Some(idx) => self.value(&mut c, payload, idx)?,
                    None => c.skip_value(1)?,
                }
                c.ws();
                match c.peek() {
                    Some(b',') => c.i += 1,
                    Some(b'}') => {
                        c.i += 1;
                        break;
                    }
                    _ => return Err(Reject::BadJson("expected ',' or '}' after a value")),
                }
            }
        }
        c.ws();
        if c.i != payload.len() {
            return Err(Reject::BadJson("trailing characters after the JSON object"));
        }
        Ok(())
    }

    /// The declared field named `name`, the `position`-th of its record. Producers write the
    /// fields of every record in one order, so the field at this position in the last record is
    /// tried first: one comparison instead of one per declared field before it.
    #[inline]
    fn field_at(&self, position: usize, name: &[u8]) -> Option<usize> {
        if let Some(&Some(guess)) = self.order.get(position) {
            if self.fields[guess].name.as_bytes() == name {
                return Some(guess);
            }
        }
        self.fields.iter().position(|f| f.name.as_bytes() == name)
    }

    fn value(&mut self, c: &mut Cursor<'_>, payload: &[u8], idx: usize) -> R<()> {
        let ty = self.fields[idx].ty;
        let wrong =
            |this: &Self| Reject::WrongType { field: this.fields[idx].name.clone(), expected: expected(ty) };
        let slot = match c.peek() {
            Some(b'n') => {
                c.literal(b"null")?;
                Slot::Null
            }
            Some(b't') | Some(b'f') => {
                let v = c.peek() == Some(b't');
                c.literal(if v { b"true" } else { b"false" })?;
                if ty != ColumnType::Bool {
                    return Err(wrong(self));
                }
                Slot::Bool(v)
            }
            Some(b'"') => {
                c.i += 1;
                let (s, e, esc) = c.string()?;
                let (start, end, scratch, text): (usize, usize, bool, &[u8]) = if esc {
                    let at = self.scratch.len();
                    unescape(&payload[s..e], Some(&mut self.scratch))?;
                    (at, self.scratch.len(), true, &self.scratch.as_bytes()[at..])
                } else {
                    (s, e, false, &payload[s..e])
                };
                match ty {
                    ColumnType::String => Slot::Str { start: start as u32, end: end as u32, scratch },
                    ColumnType::Timestamp => match parse_iso8601_micros(text) {
                        Ok(us) if (0..=MAX_TS_MICROS).contains(&us) => Slot::TimestampMicros(us),
                        Ok(_) => return Err(Reject::TimestampOutOfRange(self.fields[idx].name.clone())),
                        Err(TsError::NoOffset) => {
                            return Err(Reject::TimestampNoOffset(self.fields[idx].name.clone()))
                        }
                        Err(TsError::Malformed) => return Err(wrong(self)),
                    },
                    _ => return Err(wrong(self)),
                }
            }
            Some(b'{') | Some(b'[') => {
                c.skip_value(1)?;
                return Err(wrong(self));
            }
            Some(_) => {
                let (s, e, is_float) = c.number()?;
                let text = number_text(&payload[s..e]);
                match ty {
                    ColumnType::Int32 | ColumnType::Int64 if !is_float => {
                        let v: i64 = text.parse().map_err(|_| wrong(self))?;
                        if ty == ColumnType::Int32 && i32::try_from(v).is_err() {
                            return Err(wrong(self));
                        }
                        Slot::Int(v)
                    }
                    ColumnType::Float64 => Slot::Float(finite(text.as_bytes())?),
                    _ => {
                        finite(text.as_bytes())?;
                        return Err(wrong(self));
                    }
                }
            }
            None => return Err(Reject::BadJson("unexpected end of input")),
        };
        self.slots[idx] = slot;
        Ok(())
    }

    fn check(&self) -> R<()> {
        for (i, f) in self.fields.iter().enumerate() {
            match self.slots[i] {
                Slot::Absent | Slot::Null if i == self.key_col => {
                    return Err(if self.slots[i] == Slot::Absent {
                        Reject::MissingField(f.name.clone())
                    } else {
                        Reject::NullKey(f.name.clone())
                    })
                }
                Slot::Absent if f.required => return Err(Reject::MissingField(f.name.clone())),
                Slot::Null if f.required => return Err(Reject::NullField(f.name.clone())),
                _ => {}
            }
        }
        let v = self.value_f64();
        if !v.is_finite() || v.abs() > MAX_ABS_VALUE {
            return Err(Reject::ValueOutOfRange(self.fields[self.value_col].name.clone()));
        }
        Ok(())
    }

    pub fn slot(&self, idx: usize) -> Slot {
        self.slots[idx]
    }

    /// The string of a `Slot::Str` in the current record.
    pub fn str_of<'p>(&'p self, payload: &'p [u8], slot: Slot) -> &'p str {
        match slot {
            Slot::Str { start, end, scratch: false } => {
                std::str::from_utf8(&payload[start as usize..end as usize]).unwrap_or_default()
            }
            Slot::Str { start, end, scratch: true } => &self.scratch[start as usize..end as usize],
            _ => "",
        }
    }

    /// The record's key (valid after a successful `parse`).
    pub fn key<'p>(&'p self, payload: &'p [u8]) -> KeyRef<'p> {
        match self.slots[self.key_col] {
            Slot::Int(v) => KeyRef::Int(v),
            Slot::Bool(b) => KeyRef::Bool(b),
            s @ Slot::Str { .. } => KeyRef::Str(self.str_of(payload, s)),
            _ => KeyRef::Int(0),
        }
    }

    pub fn event_micros(&self) -> i64 {
        match self.slots[self.time_col] {
            Slot::TimestampMicros(us) => us,
            _ => 0,
        }
    }

    pub fn value_f64(&self) -> f64 {
        match self.slots[self.value_col] {
            Slot::Float(v) => v,
            Slot::Int(v) => v as f64,
            _ => 0.0,
        }
    }

    /// Length of the payload last parsed, in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }
}

fn expected(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int32 => "an integer in the int32 range",
        ColumnType::Int64 => "an integer in the int64 range",
        ColumnType::Float64 => "a number",
        ColumnType::String => "a string",
        ColumnType::Bool => "true or false",
        ColumnType::Timestamp => "an ISO-8601 timestamp string with offset",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Spec, EVENTS_TOML};
    use std::path::Path;

    fn parser() -> RecordParser {
        let s = Spec::parse(EVENTS_TOML, Path::new("events.toml")).unwrap();
        RecordParser::new(s.schema.clone(), s.key_col, s.value_col, s.time_col)
    }

    #[test]
    fn parses_the_original_event_shape() {
        let mut p = parser();
        let payload = br#"{"id": 3, "ts": "2025-11-24T22:33:04.123456+00:00", "value": 42.125, "source": "sim-producer"}"#;
        p.parse(Some(payload)).unwrap();
        assert_eq!(p.key(payload), KeyRef::Int(3));
        assert_eq!(p.value_f64(), 42.125);
        assert_eq!(p.event_micros(), 1_764_023_584_123_456);
        assert_eq!(p.str_of(payload, p.slot(3)), "sim-producer");
    }

    #[test]
    fn escapes_unknown_fields_and_null_optional() {
        let mut p = parser();
        let payload = br#" { "extra": {"a": [1, "}"]}, "source": "a\"b\u00e9\ud83d\ude00", "value": 1e2, "ts": "2025-01-01T00:00:00Z", "id": -7, "z": null } "#;
        p.parse(Some(payload)).unwrap();
        assert_eq!(p.str_of(payload, p.slot(3)), "a\"bé😀");
        assert_eq!(p.value_f64(), 100.0);
        assert_eq!(p.key(payload), KeyRef::Int(-7));
        let payload = br#"{"id": 1, "ts": "2025-01-01T00:00:00Z", "value": 5, "source": null}"#;
        p.parse(Some(payload)).unwrap();
        assert_eq!(p.slot(3), Slot::Null);
    }

    #[test]
    fn rejects_with_the_right_reason() {
        let mut p = parser();
        let cases: &[(Option<&[u8]>, &str)] = &[
            (None, "empty_payload"),
            (Some(b""), "empty_payload"),
            (Some(b"\xff\xfe"), "not_utf8"),
            (Some(b"{\"id\": 1,"), "bad_json"),
            (Some(b"[1,2]"), "bad_json"),
            (Some(br#"{"id": 1, "ts": "2025-01-01T00:00:00Z", "value": 1} x"#), "bad_json"),
            (Some(br#"{"ts": "2025-01-01T00:00:00Z", "value": 1}"#), "missing_field"),
            (Some(br#"{"id": 1, "value": 1}"#), "missing_field"),
            (Some(br#"{"id": null, "ts": "2025-01-01T00:00:00Z", "value": 1}"#), "null_key"),
            (Some(br#"{"id": 1, "ts": "2025-01-01T00:00:00Z", "value": null}"#), "null_field"),
            (Some(br#"{"id": "one", "ts": "2025-01-01T00:00:00Z", "value": 1}"#), "wrong_type"),
            (Some(br#"{"id": 1.5, "ts": "2025-01-01T00:00:00Z", "value": 1}"#), "wrong_type"),
            (Some(br#"{"id": 3000000000, "ts": "2025-01-01T00:00:00Z", "value": 1}"#), "wrong_type"),
            (Some(br#"{"id": 1, "ts": "tomorrow", "value": 1}"#), "wrong_type"),
            (Some(br#"{"id": 1, "ts": "2025-01-01T00:00:00", "value": 1}"#), "timestamp_without_offset"),
            (Some(br#"{"id": 1, "ts": "1960-01-01T00:00:00Z", "value": 1}"#), "timestamp_out_of_range"),
            (Some(br#"{"id": 1, "ts": "2025-01-01T00:00:00Z", "value": "1"}"#), "wrong_type"),
            (Some(br#"{"id": 1, "ts": "2025-01-01T00:00:00Z", "value": 1e300}"#), "value_out_of_range"),
        ];
        for (payload, code) in cases {
            let err = p.parse(*payload).unwrap_err();
            assert_eq!(err.code(), *code, "{:?} gave {err}", payload.map(String::from_utf8_lossy));
        }
    }
}
