//! Records per second of the payload parser against `serde_json`, on the two shipped dataflows'
//! payloads (and the seed's with undeclared fields added, `extra`): the measurement behind keeping the hand-written scanner (see `src/parse/json.rs`).
//!
//! Each contender turns one payload into the typed values the source needs (key, event time,
//! value, and the other declared columns), so the comparison is like for like:
//! - `scanner`: `RecordParser::parse`, the source's parser (strict JSON, no allocation per record);
//! - `serde_typed`: `serde_json::from_slice` into a struct of borrowed fields, then the same
//!   timestamp parser (the fastest way to use serde_json here, but it rejects nothing the
//!   schema does not name and reports no field-level reasons);
//! - `serde_value`: `serde_json::from_slice::<serde_json::Value>`, a generic replacement that
//!   reads any schema, as the scanner does.
//!
//! ```sh
//! cargo run --release --example parse_bench -- --records 200000 --runs 7
//! # parse_bench: events scanner records_per_s=... (median of 7)
//! ```

use std::borrow::Cow;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use streamlake::parse::json::RecordParser;
use streamlake::parse::timestamp::parse_iso8601_micros;
use streamlake::parse::KeyRef;
use streamlake::spec::{Spec, EVENTS_TOML};

#[derive(Parser, Debug)]
#[command(about = "Records/s of the payload scanner against serde_json")]
struct Args {
    /// Payloads per run (generated once, parsed once per run).
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Runs per contender; the median is printed.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Print one JSON object per line instead of key=value lines.
    #[arg(long)]
    json: bool,
}

/// The seed's event, borrowed from the payload where it has no escapes.
#[derive(Deserialize)]
struct Event<'a> {
    id: i32,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    value: f64,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Sensor<'a> {
    #[serde(borrow)]
    sensor: Cow<'a, str>,
    #[serde(borrow)]
    at: Cow<'a, str>,
    reading: f64,
    seq: Option<i64>,
    ok: Option<bool>,
}

fn iso(rng: &mut SmallRng) -> String {
    let ms = 1_764_000_000_000 + rng.random_range(0..86_400_000i64);
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// The producer's payloads (`streamlake produce`): `{id, ts, value, source}`.
fn events(n: usize) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = String::new();
    (0..n)
        .map(|_| {
            let value = (rng.random_range(0.0..=100.0f64) * 1000.0).round() / 1000.0;
            let ts = chrono::DateTime::parse_from_rfc3339(&iso(&mut rng)).expect("valid").to_utc();
            streamlake::kafka::producer::format_event(
                &mut out,
                rng.random_range(1..=10),
                ts,
                value,
                "sim-producer",
            );
            out.clone().into_bytes()
        })
        .collect()
}

/// `dataflows/sensors.toml` payloads, as `tests/streaming.rs` sends them.
fn sensors(n: usize) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(2);
    let names = ["kitchen", "a/b", "température"];
    (0..n)
        .map(|i| {
            let s = names[i % 3];
            let v = (rng.random_range(-40.0..=60.0f64) * 100.0).round() / 100.0;
            let ok = i % 2 == 0;
            format!(
                r#"{{"sensor": "{s}", "at": "{}", "reading": {v:?}, "seq": {i}, "ok": {ok}}}"#,
                iso(&mut rng)
            )
            .into_bytes()
        })
        .collect()
}

/// The seed's payloads with fields the schema does not declare (nested, escaped, exponents):
/// what the strict scanner must check but not keep.
fn with_undeclared(payloads: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    payloads
        .into_iter()
        .map(|mut p| {
            p.pop(); // the closing brace
            p.extend_from_slice(br#", "tags": ["a", {"k": 1.5e3, "n": null}], "note": "caf\u00e9 \"x\""}"#);
            p
        })
        .collect()
}

/// Records/s of one pass of `parse` over `payloads`.
fn once(payloads: &[Vec<u8>], parse: &mut impl FnMut(&[u8]) -> Result<f64>) -> Result<f64> {
    let start = Instant::now();
    let mut sum = 0.0;
    for p in payloads {
        sum += parse(p)?;
    }
    black_box(sum);
    Ok(payloads.len() as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn spec(text: &str, name: &str) -> Result<RecordParser> {
    let s = Spec::parse(text, Path::new(name)).with_context(|| format!("parsing {name}"))?;
    Ok(RecordParser::new(s.schema.clone(), s.key_col, s.value_col, s.time_col))
}

fn ts(text: &str) -> Result<i64> {
    match parse_iso8601_micros(text.as_bytes()) {
        Ok(us) => Ok(us),
        Err(e) => bail!("bad timestamp {text}: {e:?}"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let sensors_toml = include_str!("../dataflows/sensors.toml");
    let sets = [
        ("events", events(args.records)),
        ("sensors", sensors(args.records)),
        ("extra", with_undeclared(events(args.records))),
    ];
    for (name, payloads) in &sets {
        let mut parser = if *name != "sensors" {
            spec(EVENTS_TOML, "events.toml")?
        } else {
            spec(sensors_toml, "sensors.toml")?
        };
        let mut scanner = |p: &[u8]| {
            parser.parse(Some(p)).map_err(|r| anyhow::anyhow!("rejected: {r}"))?;
            let key = match parser.key(p) {
                KeyRef::Int(v) => v as f64,
                KeyRef::Str(s) => s.len() as f64,
                KeyRef::Bool(b) => b as u8 as f64,
            };
            Ok(parser.value_f64() + parser.event_micros() as f64 + key)
        };
        let mut typed = |p: &[u8]| {
            if *name != "sensors" {
                let e: Event<'_> = serde_json::from_slice(p)?;
                Ok(e.value + ts(&e.ts)? as f64 + e.id as f64 + e.source.map_or(0, |s| s.len()) as f64)
            } else {
                let s: Sensor<'_> = serde_json::from_slice(p)?;
                let extra = s.seq.unwrap_or(0) as f64 + s.ok.unwrap_or(false) as u8 as f64;
                Ok(s.reading + ts(&s.at)? as f64 + s.sensor.len() as f64 + extra)
            }
        };
        let (time, value) = if *name != "sensors" { ("ts", "value") } else { ("at", "reading") };
        let mut generic = |p: &[u8]| {
            let v: serde_json::Value = serde_json::from_slice(p)?;
            let t = ts(v[time].as_str().context("no time")?)?;
            Ok(v[value].as_f64().context("no value")? + t as f64)
        };
        // Interleaved runs, so that load from other processes on the machine falls on every
        // contender alike; the median of each then compares.
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..args.runs.max(1) {
            rates[0].push(once(payloads, &mut scanner)?);
            rates[1].push(once(payloads, &mut typed)?);
            rates[2].push(once(payloads, &mut generic)?);
        }
        let [a, b, c] = rates.map(median);
        for (contender, rate) in [("scanner", a), ("serde_typed", b), ("serde_value", c)] {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"payloads": name, "parser": contender, "records_per_s": rate.round(), "runs": args.runs})
                );
            } else {
                println!(
                    "parse_bench: {name:<7} {contender:<11} records_per_s={rate:.0} (median of {})",
                    args.runs
                );
            }
        }
    }
    Ok(())
}
