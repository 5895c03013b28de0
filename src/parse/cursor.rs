//! The JSON grammar under [`super::json::RecordParser`]: a cursor over the payload's bytes that
//! scans strings, numbers and literals, and checks (without keeping) whole values of fields the
//! schema does not declare, as strictly as serde_json does.

use super::Reject;

pub(super) struct Cursor<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

pub(super) type R<T> = Result<T, Reject>;

impl<'a> Cursor<'a> {
    #[inline]
    pub(super) fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    #[inline]
    pub(super) fn expect(&mut self, c: u8, why: &'static str) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Reject::BadJson(why))
        }
    }
    /// Scans a string whose opening quote was consumed. Returns (start, end, has_escapes).
    ///
    /// This is where the payload's UTF-8 is checked, once: outside strings the grammar accepts
    /// ASCII only, so a payload whose strings are all valid UTF-8 is valid UTF-8. A string of
    /// ASCII bytes (the common case) needs no check beyond the scan; one with other bytes is
    /// validated whole. (A byte after a backslash is skipped here; an escape other than JSON's
    /// is rejected by [`unescape`], which every string with escapes goes through.)
    #[inline]
    pub(super) fn string(&mut self) -> R<(usize, usize, bool)> {
        let start = self.i;
        let mut escaped = false;
        let mut ascii = true;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    let end = self.i;
                    self.i += 1;
                    if !ascii && std::str::from_utf8(&self.b[start..end]).is_err() {
                        return Err(Reject::NotUtf8);
                    }
                    return Ok((start, end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                0..=0x1f => return Err(Reject::BadJson("control character inside a string")),
                0x80..=0xff => {
                    ascii = false;
                    self.i += 1;
                }
                _ => self.i += 1,
            }
        }
        Err(Reject::BadJson("unterminated string"))
    }
    pub(super) fn literal(&mut self, word: &'static [u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Reject::BadJson("invalid literal"))
        }
    }
    /// Scans a number by the JSON grammar, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    /// Returns (start, end, has a fraction or exponent). Rust's own number parsers accept more
    /// (`+1`, `01`, `1.`, `.5`), so the grammar is checked here, before them.
    #[inline]
    pub(super) fn number(&mut self) -> R<(usize, usize, bool)> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let digits = |mut i: usize| {
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            i
        };
        let malformed = Reject::BadJson("malformed number");
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ if i == start => return Err(Reject::BadJson("expected a value")),
            _ => return Err(malformed),
        }
        let mut is_float = false;
        if b.get(i) == Some(&b'.') {
            is_float = true;
            let end = digits(i + 1);
            if end == i + 1 {
                return Err(malformed);
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            is_float = true;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return Err(malformed);
            }
            i = end;
        }
        self.i = i;
        Ok((start, i, is_float))
    }
    /// Checks any JSON value for a field the schema does not declare, keeping nothing: strings'
    /// escapes, numbers, literals and nested arrays and objects must all be well-formed.
    /// `depth` is the nesting level of the container holding the value (the record is level 1).
    pub(super) fn skip_value(&mut self, depth: usize) -> R<()> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let (s, e, esc) = self.string()?;
                if esc {
                    unescape(&self.b[s..e], None)?;
                }
                Ok(())
            }
            Some(open @ (b'{' | b'[')) => {
                if depth + 1 >= MAX_DEPTH {
                    return Err(Reject::BadJson("nested too deeply"));
                }
                let (close, why) = if open == b'{' {
                    (b'}', "expected ',' or '}' after a value")
                } else {
                    (b']', "expected ',' or ']' after a value")
                };
                self.i += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.expect(b'"', "expected a field name")?;
                        let (s, e, esc) = self.string()?;
                        if esc {
                            unescape(&self.b[s..e], None)?;
                        }
                        self.ws();
                        self.expect(b':', "expected ':' after a field name")?;
                        self.ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Reject::BadJson(why)),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => {
                let (s, e, is_float) = self.number()?;
                // Only a fraction, an exponent or a very long integer can exceed f64, and a
                // number that does is an error to serde_json too; short integers need no parse.
                if is_float || e - s > 20 {
                    finite(&self.b[s..e])?;
                }
                Ok(())
            }
            None => Err(Reject::BadJson("unexpected end of input")),
        }
    }
}

/// serde_json's nesting limit: its depth budget of 128 is spent when the 128th array or object
/// opens, so 127 levels (the record included) are the most both accept.
const MAX_DEPTH: usize = 128;

/// A JSON number's value as f64, which must be finite: `1e400` is malformed JSON to serde_json.
pub(super) fn finite(text: &[u8]) -> R<f64> {
    // The bytes passed the number grammar: ASCII, a subset of what `f64::from_str` reads.
    match number_text(text).parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Reject::BadJson("number out of range")),
    }
}

/// The text of bytes that passed [`Cursor::number`]'s grammar (ASCII digits, `-`, `+`, `.`,
/// `e`, `E`), without validating them again as UTF-8.
#[inline]
pub(super) fn number_text(bytes: &[u8]) -> &str {
    debug_assert!(bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')));
    // SAFETY: callers pass only what `Cursor::number` accepted: every byte is one of the ASCII
    // characters above, and ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Decodes the escapes of a string's raw bytes into `out`, or only checks them when `out` is
/// `None` (strings of undeclared fields): every escape is one of JSON's, `\u` takes four hex
/// digits, and surrogates come in pairs.
pub(super) fn unescape(raw: &[u8], mut out: Option<&mut String>) -> R<()> {
    let mut i = 0;
    let bad = Reject::BadJson("invalid escape sequence");
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            // Copy the run up to the next escape in one go (the payload is valid UTF-8).
            let next = raw[i..].iter().position(|&b| b == b'\\').map_or(raw.len(), |p| i + p);
            if let Some(out) = out.as_deref_mut() {
                out.push_str(std::str::from_utf8(&raw[i..next]).map_err(|_| Reject::NotUtf8)?);
            }
            i = next;
            continue;
        }
        let e = *raw.get(i + 1).ok_or(bad.clone())?;
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw, i)?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i) != Some(&b'\\') || raw.get(i + 1) != Some(&b'u') {
                        return Err(Reject::BadJson("unpaired surrogate in \\u escape"));
                    }
                    let lo = hex4(raw, i + 2)?;
                    i += 6;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(Reject::BadJson("unpaired surrogate in \\u escape"));
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(cp).ok_or(Reject::BadJson("invalid \\u code point"))?
            }
            _ => return Err(bad),
        };
        if let Some(out) = out.as_deref_mut() {
            out.push(ch);
        }
    }
    Ok(())
}

/// The four hex digits of a `\u` escape at `at`. Exactly hex digits: `from_str_radix` alone would
/// also take a sign (`\u+041`).
fn hex4(raw: &[u8], at: usize) -> R<u32> {
    let s = raw.get(at..at + 4).ok_or(Reject::BadJson("short \\u escape"))?;
    s.iter().try_fold(0u32, |acc, &c| {
        let d = (c as char).to_digit(16).ok_or(Reject::BadJson("bad \\u escape"))?;
        Ok(acc * 16 + d)
    })
}
