//! Payload parsing: Kafka record bytes → one typed row of the declared schema, or a reason to
//! quarantine it.
//!
//! [`json::RecordParser`] scans a flat JSON object in place. It keeps one scratch row that every
//! record overwrites, so the hot path allocates nothing: strings stay slices of the payload unless
//! they contain escapes, numbers are parsed from the bytes, timestamps by [`timestamp`].

mod cursor;
#[cfg(test)]
mod differential;
pub mod json;
pub mod timestamp;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A group-by key value. Keys are few per window, so owning them is cheap where state is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(v) => write!(f, "{v}"),
            Key::Str(s) => f.write_str(s),
            Key::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A borrowed key, compared against owned keys without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef<'a> {
    Bool(bool),
    Int(i64),
    Str(&'a str),
}

impl KeyRef<'_> {
    pub fn matches(&self, key: &Key) -> bool {
        match (self, key) {
            (KeyRef::Int(a), Key::Int(b)) => a == b,
            (KeyRef::Str(a), Key::Str(b)) => *a == b.as_str(),
            (KeyRef::Bool(a), Key::Bool(b)) => a == b,
            _ => false,
        }
    }

    pub fn to_owned_key(&self) -> Key {
        match *self {
            KeyRef::Int(v) => Key::Int(v),
            KeyRef::Str(s) => Key::Str(s.to_string()),
            KeyRef::Bool(b) => Key::Bool(b),
        }
    }

    /// A stable hash for routing keys to workers (the same in every process).
    pub fn route(&self) -> u64 {
        key_route_hash(self)
    }
}

impl Key {
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Int(v) => KeyRef::Int(*v),
            Key::Str(s) => KeyRef::Str(s),
            Key::Bool(b) => KeyRef::Bool(*b),
        }
    }
}

/// FNV-1a over a type tag and the key's bytes: deterministic across processes and runs, unlike
/// `std`'s randomly seeded hasher, which matters because every process must route a key to the
/// same worker.
fn key_route_hash(key: &KeyRef<'_>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match key {
        KeyRef::Int(v) => {
            eat(&[1]);
            eat(&v.to_le_bytes())
        }
        KeyRef::Str(s) => {
            eat(&[2]);
            eat(s.as_bytes())
        }
        KeyRef::Bool(b) => eat(&[3, *b as u8]),
    }
    h
}

/// Why a record was quarantined. The string form is what the quarantine dataset stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    EmptyPayload,
    NotUtf8,
    BadJson(&'static str),
    MissingField(String),
    NullField(String),
    NullKey(String),
    WrongType { field: String, expected: &'static str },
    TimestampNoOffset(String),
    TimestampOutOfRange(String),
    ValueOutOfRange(String),
}

impl Reject {
    /// Every reason code, in [`Reject::index`] order.
    pub const CODES: [&'static str; 10] = [
        "empty_payload",
        "not_utf8",
        "bad_json",
        "missing_field",
        "null_field",
        "null_key",
        "wrong_type",
        "timestamp_without_offset",
        "timestamp_out_of_range",
        "value_out_of_range",
    ];

    /// Position of this reason's code in [`Reject::CODES`], for lock-free per-reason counters.
    pub fn index(&self) -> usize {
        match self {
            Reject::EmptyPayload => 0,
            Reject::NotUtf8 => 1,
            Reject::BadJson(_) => 2,
            Reject::MissingField(_) => 3,
            Reject::NullField(_) => 4,
            Reject::NullKey(_) => 5,
            Reject::WrongType { .. } => 6,
            Reject::TimestampNoOffset(_) => 7,
            Reject::TimestampOutOfRange(_) => 8,
            Reject::ValueOutOfRange(_) => 9,
        }
    }

    /// A short, stable reason code for counting (metrics, checkpoint, audit): one list,
    /// [`Reject::CODES`], so the code and the counter index cannot disagree.
    pub fn code(&self) -> &'static str {
        Self::CODES[self.index()]
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::EmptyPayload => write!(f, "empty_payload: the record has no bytes"),
            Reject::NotUtf8 => write!(f, "not_utf8: the payload is not valid UTF-8"),
            Reject::BadJson(why) => write!(f, "bad_json: {why}"),
            Reject::MissingField(n) => write!(f, "missing_field: required field `{n}` is absent"),
            Reject::NullField(n) => write!(f, "null_field: required field `{n}` is null"),
            Reject::NullKey(n) => write!(f, "null_key: key field `{n}` is null"),
            Reject::WrongType { field, expected } => {
                write!(f, "wrong_type: field `{field}` is not {expected}")
            }
            Reject::TimestampNoOffset(n) => {
                write!(
                    f,
                    "timestamp_without_offset: field `{n}` has no UTC offset, so its instant is ambiguous"
                )
            }
            Reject::TimestampOutOfRange(n) => {
                write!(f, "timestamp_out_of_range: field `{n}` is before 1970 or too far out")
            }
            Reject::ValueOutOfRange(n) => {
                write!(f, "value_out_of_range: field `{n}` exceeds ±1e18, the range of exact window sums")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reject;

    #[test]
    fn reject_codes_match_their_index() {
        let all = [
            Reject::EmptyPayload,
            Reject::NotUtf8,
            Reject::BadJson("x"),
            Reject::MissingField("f".into()),
            Reject::NullField("f".into()),
            Reject::NullKey("f".into()),
            Reject::WrongType { field: "f".into(), expected: "an int" },
            Reject::TimestampNoOffset("f".into()),
            Reject::TimestampOutOfRange("f".into()),
            Reject::ValueOutOfRange("f".into()),
        ];
        for r in &all {
            assert_eq!(Reject::CODES[r.index()], r.code(), "{r:?}");
            assert!(r.to_string().starts_with(r.code()), "the stored reason starts with the code: {r}");
        }
    }
}
