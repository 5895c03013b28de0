//! The scanner against serde_json, on generated payloads: random records of the two shipped
//! dataflows (declared fields in any order, repeated, null; undeclared fields holding any JSON),
//! and byte-level mutations of them. For every payload:
//! - serde_json rejects it ⇔ the scanner rejects it as JSON (`bad_json`/`not_utf8`), unless a
//!   declared field before the fault already had the wrong type (the scanner stops there);
//! - when serde_json accepts it, the scanner's row is the one serde_json's values give, field by
//!   field in document order (the last of repeated fields wins), or the same rejection reason.
//!
//! Seeded, so a failure repeats; the failing payload is printed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::json::{RecordParser, Slot, MAX_TS_MICROS};
use super::timestamp::{parse_iso8601_micros, TsError};
use crate::spec::{ColumnType, Spec, EVENTS_TOML};

/// The top-level fields in document order, repeats kept (a `Value` map keeps only the last),
/// each with its text: serde_json reads `-0` as the float -0.0, the scanner as the integer 0
/// (as Python's `json` does), and only the text tells `-0` from `-0.0`.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = map.next_entry::<String, Box<RawValue>>()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// What the scanner should make of one field's value: its slot, or the reason code.
#[derive(Debug, PartialEq)]
enum Want {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ts(i64),
}

fn want(ty: ColumnType, raw: &RawValue) -> Result<Want, &'static str> {
    let v: Value = serde_json::from_str(raw.get()).expect("serde_json reads its own raw value");
    if matches!(ty, ColumnType::Int32 | ColumnType::Int64) && raw.get() == "-0" {
        return Ok(Want::Int(0));
    }
    Ok(match (ty, &v) {
        (_, Value::Null) => Want::Null,
        (ColumnType::Bool, Value::Bool(b)) => Want::Bool(*b),
        (ColumnType::String, Value::String(s)) => Want::Str(s.clone()),
        (ColumnType::Timestamp, Value::String(s)) => match parse_iso8601_micros(s.as_bytes()) {
            Ok(us) if (0..=MAX_TS_MICROS).contains(&us) => Want::Ts(us),
            Ok(_) => return Err("timestamp_out_of_range"),
            Err(TsError::NoOffset) => return Err("timestamp_without_offset"),
            Err(TsError::Malformed) => return Err("wrong_type"),
        },
        (ColumnType::Int64, Value::Number(n)) if n.is_i64() => Want::Int(n.as_i64().unwrap_or_default()),
        (ColumnType::Int32, Value::Number(n)) if n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {
            Want::Int(n.as_i64().unwrap_or_default())
        }
        (ColumnType::Float64, Value::Number(n)) => Want::Float(n.as_f64().unwrap_or(f64::NAN)),
        _ => return Err("wrong_type"),
    })
}

/// serde_json's reading of the payload as the scanner's row: `Err(None)` if it is not JSON.
fn oracle(p: &RecordParser, payload: &[u8]) -> Result<Vec<Option<Want>>, Option<&'static str>> {
    // `Value` is the reference for what is JSON (a raw value's reading checks less inside
    // strings and nesting); `Entries` then gives the same fields in order, with their text.
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) if v.is_object() => {}
        _ => return Err(None),
    }
    let Entries(entries) = serde_json::from_slice(payload).expect("a JSON object reads as entries");
    let mut row: Vec<Option<Want>> = p.fields().iter().map(|_| None).collect();
    for (name, v) in &entries {
        if let Some(i) = p.fields().iter().position(|f| &f.name == name) {
            row[i] = Some(want(p.fields()[i].ty, v).map_err(Some)?);
        }
    }
    Ok(row)
}

fn same_float(a: f64, b: f64) -> bool {
    // serde_json (without `float_roundtrip`) may round a decimal one ulp off the exact value.
    a == b || (a.signum() == b.signum() && a.to_bits().abs_diff(b.to_bits()) <= 1)
}

fn check_one(p: &mut RecordParser, payload: &[u8], stats: &mut [u64; 2]) {
    let shown = || String::from_utf8_lossy(payload).into_owned();
    let ours = p.scan(payload);
    if std::str::from_utf8(payload).is_err() {
        // The scanner checks UTF-8 only inside strings; the reason must still be the payload's,
        // wherever the bad byte sits and whatever else is wrong.
        let got = ours.as_ref().err().map(|e| e.code());
        assert_eq!(got, Some("not_utf8"), "not UTF-8: {}", shown());
    }
    match oracle(p, payload) {
        Err(None) => {
            stats[1] += 1;
            assert!(ours.is_err(), "serde_json rejects, the scanner accepts: {}", shown());
            // The whole parse must reject it too (it adds only row-level checks).
            assert!(p.parse(Some(payload)).is_err(), "{}", shown());
        }
        Err(Some(code)) => {
            stats[0] += 1;
            let got = ours.err().map(|e| e.code());
            assert_eq!(got, Some(code), "valid JSON, the scanner's reason differs: {}", shown());
        }
        Ok(row) => {
            stats[0] += 1;
            if let Err(e) = ours {
                panic!("serde_json accepts, the scanner rejects ({e}): {}", shown());
            }
            for (i, w) in row.iter().enumerate() {
                let slot = p.slot(i);
                let ok = match (w, slot) {
                    (None, Slot::Absent) | (Some(Want::Null), Slot::Null) => true,
                    (Some(Want::Int(a)), Slot::Int(b)) => *a == b,
                    (Some(Want::Float(a)), Slot::Float(b)) => same_float(*a, b),
                    (Some(Want::Bool(a)), Slot::Bool(b)) => *a == b,
                    (Some(Want::Ts(a)), Slot::TimestampMicros(b)) => *a == b,
                    (Some(Want::Str(a)), s @ Slot::Str { .. }) => a == p.str_of(payload, s),
                    _ => false,
                };
                assert!(ok, "field {i}: serde_json {w:?}, scanner {slot:?}: {}", shown());
            }
        }
    }
}

/// A random generator of JSON text, mostly well-formed, sometimes with a deliberate fault.
struct Gen {
    rng: SmallRng,
    out: Vec<u8>,
}

impl Gen {
    fn ws(&mut self) {
        for _ in 0..self.rng.random_range(0..3u8).saturating_sub(1) {
            let c = [b' ', b'\t', b'\n', b'\r'][self.rng.random_range(0..4)];
            self.out.push(c);
        }
    }

    fn push(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    fn string(&mut self) {
        // Pieces of string content: plain, multi-byte, every escape, surrogate pairs, and a few
        // faults (a lone surrogate, a signed or short `\u`, an unknown escape, a raw control).
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "9",
            " ",
            "é",
            "😀",
            "température",
            "}",
            "]",
            ",",
            ":",
            "{",
            "[",
            "\\\"",
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\n",
            "\\r",
            "\\t",
            "\\u0041",
            "\\u00e9",
            "\\u20AC",
            "\\ud83d\\ude00",
            "\\uDBFF\\uDFFF",
            "\\u0000",
        ];
        const FAULTS: &[&str] = &[
            "\\ud800",
            "\\udc00",
            "\\ud800\\u0041",
            "\\u+041",
            "\\u00",
            "\\x",
            "\u{1}",
            "\\ud83dx",
            "\\U0041",
        ];
        self.out.push(b'"');
        for _ in 0..self.rng.random_range(0..6) {
            let piece = if self.rng.random_ratio(1, 60) {
                FAULTS[self.rng.random_range(0..FAULTS.len())]
            } else {
                PIECES[self.rng.random_range(0..PIECES.len())]
            };
            self.push(piece);
        }
        self.out.push(b'"');
    }

    fn digits(&mut self, n: usize) {
        for _ in 0..n {
            let d = self.rng.random_range(b'0'..=b'9');
            self.out.push(d);
        }
    }

    fn number(&mut self, int_only: bool) {
        if self.rng.random_bool(0.3) {
            self.out.push(b'-');
        }
        match self.rng.random_range(0..10) {
            0 => self.out.push(b'0'),
            // Long integers: past i64 and u64, and (rarely) past f64.
            1 => {
                self.out.push(self.rng.random_range(b'1'..=b'9'));
                let n = if self.rng.random_ratio(1, 20) { 320 } else { self.rng.random_range(17..25) };
                self.digits(n);
            }
            _ => {
                self.out.push(self.rng.random_range(b'1'..=b'9'));
                let n = self.rng.random_range(0..6);
                self.digits(n);
            }
        }
        if int_only {
            return;
        }
        if self.rng.random_bool(0.4) {
            self.out.push(b'.');
            let n = self.rng.random_range(1..8);
            self.digits(n);
        }
        if self.rng.random_bool(0.2) {
            self.out.push(if self.rng.random_bool(0.5) { b'e' } else { b'E' });
            match self.rng.random_range(0..3) {
                0 => self.out.push(b'+'),
                1 => self.out.push(b'-'),
                _ => {}
            }
            // Exponents near and past f64's range too.
            let e = if self.rng.random_bool(0.2) {
                self.rng.random_range(290..330)
            } else {
                self.rng.random_range(0..20)
            };
            self.push(&e.to_string());
        }
    }

    fn value(&mut self, depth: usize) {
        let container = depth < 6 && self.rng.random_bool(0.3);
        match self.rng.random_range(0..if container { 8 } else { 6 }) {
            0 => self.push("null"),
            1 => {
                let b = if self.rng.random_bool(0.5) { "true" } else { "false" };
                self.push(b)
            }
            2 | 3 => self.number(false),
            4 | 5 => self.string(),
            6 => self.container(depth, false),
            _ => self.container(depth, true),
        }
    }

    /// An array, or an object with string keys, of up to three values.
    fn container(&mut self, depth: usize, object: bool) {
        self.out.push(if object { b'{' } else { b'[' });
        for i in 0..self.rng.random_range(0..4) {
            if i > 0 {
                self.out.push(b',');
            }
            self.ws();
            if object {
                self.string();
                self.ws();
                self.out.push(b':');
                self.ws();
            }
            self.value(depth + 1);
            self.ws();
        }
        self.out.push(if object { b'}' } else { b']' });
    }

    /// A value of the declared type (mostly), for a field of that type.
    fn typed(&mut self, ty: ColumnType) {
        if self.rng.random_ratio(1, 12) {
            return self.push("null");
        }
        if self.rng.random_ratio(1, 25) {
            return self.value(1);
        }
        match ty {
            ColumnType::Int32 | ColumnType::Int64 => {
                let v: i64 = if self.rng.random_bool(0.9) {
                    self.rng.random_range(-1000..1000)
                } else {
                    self.rng.random()
                };
                self.push(&v.to_string());
            }
            ColumnType::Float64 => self.number(false),
            ColumnType::Bool => {
                let b = if self.rng.random_bool(0.5) { "true" } else { "false" };
                self.push(b)
            }
            ColumnType::String => self.string(),
            ColumnType::Timestamp => {
                const TS: &[&str] = &[
                    "\"2025-11-24T22:33:04.123456+00:00\"",
                    "\"2025-01-01T00:00:00Z\"",
                    "\"2025-01-01 00:00:00.5-0130\"",
                    "\"2025-01-01T00:00:00\\u005A\"",
                    "\"2025-01-01T00:00:00\"",
                    "\"1960-01-01T00:00:00Z\"",
                ];
                let t = TS[self.rng.random_range(0..TS.len())];
                self.push(t);
            }
        }
    }

    /// One record: declared fields (a random subset, shuffled, sometimes twice) and undeclared
    /// ones, with random whitespace.
    fn record(&mut self, p: &RecordParser) {
        self.out.clear();
        let mut fields: Vec<(String, Option<ColumnType>)> = Vec::new();
        for f in p.fields() {
            if self.rng.random_ratio(9, 10) {
                fields.push((f.name.clone(), Some(f.ty)));
            }
            if self.rng.random_ratio(1, 30) {
                fields.push((f.name.clone(), Some(f.ty)));
            }
        }
        for i in 0..self.rng.random_range(0..3) {
            fields.push((format!("x{i}"), None));
        }
        for i in (1..fields.len()).rev() {
            fields.swap(i, self.rng.random_range(0..=i));
        }
        self.ws();
        self.out.push(b'{');
        for (i, (name, ty)) in fields.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.ws();
            self.push(&format!("\"{name}\""));
            self.ws();
            self.out.push(b':');
            self.ws();
            match ty {
                Some(ty) => self.typed(*ty),
                None => self.value(1),
            }
            self.ws();
        }
        self.out.push(b'}');
        self.ws();
    }

    /// Byte-level damage: delete, insert, replace or duplicate, one to three times.
    fn mutate(&mut self) {
        // The last ones make or break UTF-8: a two-byte `é`, a lone continuation byte, bytes that
        // never occur, the start of an encoded surrogate, an overlong start.
        const BYTES: &[u8] = b"{}[]:,\"\\ 0123456789-+.eEtrufalsn\x0c\x01\xc3\xa9\x80\xff\xed\xa0\xc0";
        for _ in 0..self.rng.random_range(1..4) {
            if self.out.is_empty() {
                return;
            }
            let at = self.rng.random_range(0..self.out.len());
            match self.rng.random_range(0..5) {
                0 => {
                    self.out.remove(at);
                }
                1 => self.out.insert(at, BYTES[self.rng.random_range(0..BYTES.len())]),
                2 => self.out[at] = BYTES[self.rng.random_range(0..BYTES.len())],
                3 => {
                    let end = (at + self.rng.random_range(1..8)).min(self.out.len());
                    let piece = self.out[at..end].to_vec();
                    self.out.splice(at..at, piece);
                }
                _ => self.out.truncate(at),
            }
        }
    }
}

fn parsers() -> Vec<RecordParser> {
    let sensors = include_str!("../../dataflows/sensors.toml");
    [(EVENTS_TOML, "events.toml"), (sensors, "sensors.toml")]
        .iter()
        .map(|(text, name)| {
            let s = Spec::parse(text, std::path::Path::new(name)).expect("a shipped dataflow parses");
            RecordParser::new(s.schema.clone(), s.key_col, s.value_col, s.time_col)
        })
        .collect()
}

#[test]
fn the_scanner_accepts_exactly_what_serde_json_accepts() {
    let mut g = Gen { rng: SmallRng::seed_from_u64(15), out: Vec::new() };
    for mut p in parsers() {
        // [valid JSON, not JSON], over generated and mutated records.
        let mut stats = [0u64; 2];
        for _ in 0..6_000 {
            g.record(&p);
            check_one(&mut p, &g.out, &mut stats);
            for _ in 0..2 {
                g.record(&p);
                g.mutate();
                check_one(&mut p, &g.out, &mut stats);
            }
        }
        // Both outcomes must be well represented, or the comparison says little.
        assert!(stats[0] > 4_000 && stats[1] > 4_000, "{stats:?}");
    }
}

#[test]
fn nesting_limit_and_edge_cases_agree_with_serde_json() {
    let mut p = parsers().remove(0);
    let head = r#"{"id": 1, "ts": "2025-01-01T00:00:00Z", "value": 1, "x": "#;
    let mut stats = [0u64; 2];
    for depth in 120..135 {
        let payload = format!("{head}{}{}}}", "[".repeat(depth), "]".repeat(depth));
        check_one(&mut p, payload.as_bytes(), &mut stats);
    }
    let values = [
        "-0",
        "-0.0",
        "0e0",
        "1E+2",
        "1e-400",
        "1e400",
        "-1e400",
        "01",
        "1.",
        ".5",
        "+1",
        "-",
        "1e",
        "1e+",
        "0x10",
        "1_000",
        "18446744073709551616",
        "-9223372036854775809",
        "[1,]",
        "{\"a\":1,}",
        "[,1]",
        "{,}",
        "tru",
        "nul",
        "NaN",
        "Infinity",
        "\"\\u12\"",
        "\"\\ud83d\\u0041\"",
        "\"\t\"",
        "[1 2]",
        "{\"a\" 1}",
        "{\"a\":}",
        "{1:2}",
        "[}",
        "{]",
        "{\"a\":[}}",
        "\"a\" \"b\"",
        "[]",
        "{}",
        "[[]]",
        "{\"\":{\"\":[]}}",
    ];
    for v in values {
        for payload in
            [format!("{head}{v}}}"), format!(r#"{{"id": 1, "ts": "2025-01-01T00:00:00Z", "value": {v}}}"#)]
        {
            check_one(&mut p, payload.as_bytes(), &mut stats);
        }
    }
    for trailing in ["} x", "},", "}}", "} {}", "}\u{c}", "} \n"] {
        check_one(&mut p, format!("{head}1{trailing}").as_bytes(), &mut stats);
    }
    // Bad UTF-8 in every place a byte can sit: a declared string, an undeclared one, a nested
    // one, a field name, an escaped string, outside any string, and after a schema error.
    let bad: [&[u8]; 7] =
        [b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"e\xcc"];
    for b in bad {
        let cat = |parts: &[&[u8]]| parts.concat();
        let ok = |tail: &[u8]| cat(&[br#"{"id": 1, "ts": "2025-01-01T00:00:00Z", "value": 1"#, tail, b"}"]);
        let payloads = [
            ok(&cat(&[br#", "source": "a"#, b, b"\""])),
            ok(&cat(&[br#", "x": "a"#, b, b"\""])),
            ok(&cat(&[br#", "x": {"y": ["#, b"\"", b, b"\"]}"])),
            ok(&cat(&[b", \"", b, br#"": 1"#])),
            ok(&cat(&[br#", "source": "\n"#, b, b"\""])),
            ok(&cat(&[b", ", b])),
            cat(&[br#"{"id": "one", "source": ""#, b, b"\"}"]),
        ];
        for payload in payloads {
            check_one(&mut p, &payload, &mut stats);
        }
    }
    // Valid multi-byte text is kept as it is, in a declared string.
    let payload =
        "{\"id\": 1, \"ts\": \"2025-01-01T00:00:00Z\", \"value\": 1, \"source\": \"température 😀\"}";
    check_one(&mut p, payload.as_bytes(), &mut stats);
    assert_eq!(p.str_of(payload.as_bytes(), p.slot(3)), "température 😀");
}
