//! `GET /`: one HTML page that refreshes itself every few seconds, rendered on the server from a
//! [`Snapshot`] — no JavaScript, no front-end build step; the throughput chart is inline SVG.
//!
//! It answers, top to bottom: what runs where (processes, workers, partitions), how fast, how far
//! behind (lag per partition), where event time is and which partition holds it back, what the
//! latest closed windows computed, what was quarantined, and what `validate` last reported.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::snapshot::{Holder, Snapshot, IDLE_SHOWN_AFTER};

/// How often the page reloads itself.
pub const REFRESH_SECONDS: u32 = 2;
/// How many validation reports the page lists.
const REPORTS_SHOWN: usize = 5;

/// A validation report from `<OUTPUT_PATH>/_reports/`, reduced to what the page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportLine {
    pub file: String,
    pub generated_at: String,
    pub status: String,
    pub total_rows: Option<u64>,
    pub files: Option<u64>,
    pub audit: Option<String>,
    pub message: Option<String>,
}

/// The newest reports `streamlake validate` saved under `dir` (file names are UTC times, so the
/// name order is the time order). Unreadable files are listed with their error, not skipped.
pub fn read_reports(dir: &Path) -> Vec<ReportLine> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with('_') && !n.starts_with('.'))
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    names
        .into_iter()
        .take(REPORTS_SHOWN)
        .map(|name| {
            let parsed = std::fs::read(dir.join(&name))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(v) => ReportLine {
                    file: name,
                    generated_at: v["generated_at"].as_str().unwrap_or("?").to_string(),
                    status: v["status"].as_str().unwrap_or("?").to_string(),
                    total_rows: v["total_rows"].as_u64(),
                    files: v["files"].as_u64(),
                    audit: v["audit"]["summary"].as_str().map(String::from),
                    message: v["messages"]
                        .as_array()
                        .and_then(|m| m.first())
                        .and_then(|m| m.as_str())
                        .map(String::from),
                },
                Err(e) => ReportLine {
                    file: name,
                    generated_at: "?".into(),
                    status: "unreadable".into(),
                    total_rows: None,
                    files: None,
                    audit: None,
                    message: Some(e),
                },
            }
        })
        .collect()
}

/// Escapes text for HTML.
///
/// Hand-written on purpose, decided on a measurement (issue 15) against maud 0.27's `html!`:
/// maud escaped 200 table cells in 18 µs where this takes 46 µs, but the page is rendered once per
/// request, so either is noise; maud leaves `'` as is where this writes `&#39;`, it needs a
/// proc-macro dependency (syn), and the page's 400 lines of `write!` would have to become its
/// template dialect. Every value from outside (run id, topic, keys, report fields) goes through
/// this one function; the test below pins what it escapes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An event time in ms as `2025-03-01 00:00:30Z`.
pub fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn fmt_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#1d2733;background:#f7f9fb}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.3em 0 .4em;color:#34495e}\
.sub{color:#5a6b7b;font-size:.9em}table{border-collapse:collapse;background:#fff;font-size:.9em}\
td,th{border:1px solid #d5dde5;padding:.25em .6em;text-align:right}th{background:#eef2f6}\
td.l,th.l{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:1.5em}.card{background:#fff;\
border:1px solid #d5dde5;border-radius:6px;padding:.6em 1em}.big{font-size:1.5em;font-weight:600}\
.warn{color:#a35200;font-weight:600}.ok{color:#1e7b34}.bad{color:#b3261e;font-weight:600}\
tr.hold td{background:#fff4e0}";

/// Renders the page.
pub fn render(s: &Snapshot, reports: &[ReportLine]) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let info = &s.info;
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>streamlake · {run}</title><style>{STYLE}</style></head><body>\
         <h1>streamlake run <code>{run}</code></h1>\
         <div class=\"sub\">topic <b>{topic}</b> · process {p} of {n} · {w} worker(s) per process · \
         up {up} · page refreshes every {REFRESH_SECONDS} s · <a href=\"/metrics\">/metrics</a></div>",
        run = esc(&info.run_id),
        topic = esc(&info.topic),
        p = info.process,
        n = info.processes,
        w = info.workers,
        up = fmt_age(s.uptime),
    );

    // Headline numbers.
    let rate = s.rates().last().map_or(0.0, |r| r.1);
    let _ = write!(
        h,
        "<div class=\"grid\" style=\"margin-top:1em\">\
         <div class=\"card\"><div class=\"sub\">events read</div><div class=\"big\" id=\"events-read\">{}</div></div>\
         <div class=\"card\"><div class=\"sub\">events/s (last second)</div><div class=\"big\">{rate:.0}</div></div>\
         <div class=\"card\"><div class=\"sub\">rows written (committed)</div><div class=\"big\">{}</div></div>\
         <div class=\"card\"><div class=\"sub\">files committed</div><div class=\"big\">{}</div></div>\
         <div class=\"card\"><div class=\"sub\">quarantined</div><div class=\"big\">{}</div></div>\
         <div class=\"card\"><div class=\"sub\">late (dropped)</div><div class=\"big\">{}</div></div>\
         <div class=\"card\"><div class=\"sub\">last commit</div><div class=\"big\">{}</div></div></div>",
        fmt_count(s.messages),
        fmt_count(s.rows),
        fmt_count(s.files),
        fmt_count(s.quarantined),
        fmt_count(s.late),
        match s.last_commit {
            Some((age, took)) => format!("{} ago <span class=\"sub\">({} ms)</span>", fmt_age(age), took.as_millis()),
            None => "none yet".into(),
        },
    );

    watermark_section(&mut h, s);
    partitions_section(&mut h, s);
    cluster_section(&mut h, s);
    throughput_section(&mut h, s);
    // Side by side: the windows table is long and narrow, the quarantine table short.
    h.push_str("<div class=\"grid\"><div>");
    windows_section(&mut h, s);
    h.push_str("</div><div>");
    quarantine_section(&mut h, s);
    h.push_str("</div></div>");
    reports_section(&mut h, s, reports);
    h.push_str("</body></html>");
    h
}

fn watermark_section(h: &mut String, s: &Snapshot) {
    h.push_str("<h2>Event time</h2><div class=\"card\">");
    match s.global_watermark_ms {
        Some(w) => {
            let _ = write!(
                h,
                "<div>global watermark <span class=\"big\" id=\"watermark\">{}</span> \
                 <span class=\"sub\">({} behind the wall clock; windows of {} s close when it passes their end)</span></div>",
                fmt_ms(w as i64),
                fmt_age(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH + Duration::from_millis(w))
                        .unwrap_or_default()
                ),
                s.info.window_ms / 1000
            );
        }
        None => {
            h.push_str("<div>global watermark <span class=\"big\" id=\"watermark\">none yet</span></div>")
        }
    }
    h.push_str("<div id=\"holder\" style=\"margin-top:.4em\">");
    match s.holder() {
        Holder::Nothing => h.push_str("No partition has reported yet."),
        Holder::AllIdle => {
            let _ = write!(
                h,
                "Every partition of this process has been idle for longer than --idle-timeout ({}): \
                 here event time follows the wall clock.",
                fmt_age(s.info.idle_timeout)
            );
        }
        Holder::Elsewhere => h.push_str(
            "Held back by a partition of another process: every partition here is ahead. \
             See the other processes' pages.",
        ),
        Holder::Partition { partition, worker, silent_for, watermark_ms } => {
            let at = watermark_ms.map_or("no record yet".to_string(), fmt_ms);
            let _ = write!(
                h,
                "<span class=\"warn\">Held back by partition {partition}</span> (worker {worker}, \
                 partition watermark {at})"
            );
            if silent_for >= IDLE_SHOWN_AFTER {
                let left = s.info.idle_timeout.saturating_sub(silent_for);
                let _ = write!(
                    h,
                    ": <span class=\"warn\" id=\"idle-holder\">partition {partition} is idle</span> — no record for {}; \
                     it holds the watermark back until --idle-timeout ({}) passes{}.",
                    fmt_age(silent_for),
                    fmt_age(s.info.idle_timeout),
                    if left > Duration::ZERO { format!(", in {}", fmt_age(left)) } else { String::new() }
                );
            } else {
                h.push_str(": it is the slowest partition in event time.");
            }
        }
    }
    h.push_str("</div></div>");
}

fn partitions_section(h: &mut String, s: &Snapshot) {
    let holder = match s.holder() {
        Holder::Partition { partition, .. } => Some(partition),
        _ => None,
    };
    h.push_str(
        "<h2>Partitions of this process</h2><table id=\"partitions\"><tr><th>partition</th><th>worker</th>\
         <th>read offset</th><th>committed offset</th><th>high-water mark</th><th>lag (records)</th>\
         <th class=\"l\">watermark</th><th>last record</th><th class=\"l\">state</th></tr>",
    );
    for p in &s.partitions {
        let r = &p.report;
        let silent = p.silent_for();
        let state = if r.done {
            "<span class=\"ok\">done</span>".to_string()
        } else if silent >= s.info.idle_timeout {
            "idle — not holding the watermark".to_string()
        } else if silent >= IDLE_SHOWN_AFTER {
            "<span class=\"warn\">idle — still counts for the watermark</span>".to_string()
        } else {
            "reading".to_string()
        };
        let state = if holder == Some(r.partition) {
            format!("{state} · <span class=\"warn\">holds the watermark back</span>")
        } else {
            state
        };
        let _ = write!(
            h,
            "<tr{cls} data-partition=\"{p}\"><td>{p}</td><td>{w}</td><td>{read}</td><td>{com}</td><td>{high}</td>\
             <td>{lag}</td><td class=\"l\">{wm}</td><td>{last} ago</td><td class=\"l\">{state}</td></tr>",
            cls = if holder == Some(r.partition) { " class=\"hold\"" } else { "" },
            p = r.partition,
            w = r.worker,
            read = r.read_offset,
            com = r.committed_offset,
            high = s.high_watermarks.get(&r.partition).map_or("?".into(), |h| h.to_string()),
            lag = s.lag(r).map_or("?".into(), |l| l.to_string()),
            wm = r.watermark_ms.map_or("no record yet".into(), fmt_ms),
            last = fmt_age(silent),
        );
    }
    h.push_str("</table>");
}

fn cluster_section(h: &mut String, s: &Snapshot) {
    let info = &s.info;
    h.push_str("<h2>Cluster</h2><table id=\"cluster\"><tr><th>process</th><th>worker</th><th class=\"l\">partitions</th>\
                <th>busy</th><th>open windows</th><th>closed windows</th></tr>");
    let ownership = s.partition_count.map(|n| info.ownership(n));
    for worker in 0..info.peers() {
        let process = worker / info.workers;
        let owned = match &ownership {
            Some(o) if o[worker].is_empty() => "none".to_string(),
            Some(o) => o[worker].iter().map(i32::to_string).collect::<Vec<_>>().join(", "),
            None => "?".to_string(),
        };
        let local = s.workers.iter().find(|w| w.0 == worker);
        let (busy, open, closed) = match local {
            Some(&(_, busy, open, closed)) => (
                format!("{:.0}%", 100.0 * busy.as_secs_f64() / s.uptime.as_secs_f64().max(1e-3)),
                open.to_string(),
                closed.to_string(),
            ),
            None => ("(other process)".into(), String::new(), String::new()),
        };
        let _ = write!(
            h,
            "<tr><td>{process}{me}</td><td>{worker}</td><td class=\"l\">{owned}</td><td>{busy}</td><td>{open}</td><td>{closed}</td></tr>",
            me = if process == info.process { " (this)" } else { "" },
        );
    }
    h.push_str("</table>");
}

fn throughput_section(h: &mut String, s: &Snapshot) {
    let rates = s.rates();
    let (w, ht) = (640.0, 120.0);
    let max = rates.iter().map(|r| r.1).fold(0.0f64, f64::max).max(1.0);
    let span = super::telemetry::HISTORY.as_secs_f64();
    let now = SystemTime::now();
    let points: Vec<String> = rates
        .iter()
        .map(|(at, r)| {
            let age = now.duration_since(*at).unwrap_or_default().as_secs_f64().min(span);
            format!("{:.1},{:.1}", w * (1.0 - age / span), ht - ht * r / max)
        })
        .collect();
    let _ = write!(
        h,
        "<h2>Throughput, last {} min (events read per second)</h2>\
         <svg id=\"throughput\" width=\"{w}\" height=\"{h2}\" viewBox=\"-50 -10 {vw} {vh}\" \
         style=\"background:#fff;border:1px solid #d5dde5\" role=\"img\">\
         <line x1=\"0\" y1=\"{ht}\" x2=\"{w}\" y2=\"{ht}\" stroke=\"#9aa8b6\"/>\
         <line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"{ht}\" stroke=\"#9aa8b6\"/>\
         <text x=\"-6\" y=\"8\" font-size=\"11\" text-anchor=\"end\">{max:.0}</text>\
         <text x=\"-6\" y=\"{ht}\" font-size=\"11\" text-anchor=\"end\">0</text>\
         <text x=\"0\" y=\"{lab}\" font-size=\"11\">−{m} min</text>\
         <text x=\"{w}\" y=\"{lab}\" font-size=\"11\" text-anchor=\"end\">now</text>\
         <polyline fill=\"none\" stroke=\"#2b6cb0\" stroke-width=\"1.5\" points=\"{pts}\"/></svg>",
        span / 60.0,
        h2 = ht + 40.0,
        vw = w + 60.0,
        vh = ht + 40.0,
        lab = ht + 16.0,
        m = span / 60.0,
        pts = points.join(" "),
    );
}

fn windows_section(h: &mut String, s: &Snapshot) {
    let window_s = s.info.window_ms as i64;
    h.push_str("<h2>Latest closed windows (closed by this process's workers)</h2>");
    if s.closed.is_empty() {
        h.push_str("<p id=\"closed-windows\" class=\"sub\">No window has closed yet: the watermark has not passed a window's end.</p>");
        return;
    }
    h.push_str("<table id=\"closed-windows\"><tr><th class=\"l\">window</th><th class=\"l\">id</th><th>avg</th><th>count</th></tr>");
    for w in &s.closed {
        let end = w.end_ms as i64;
        for (i, (key, avg, count)) in w.rows.iter().enumerate() {
            let when = if i == 0 {
                format!("{} – {}", fmt_ms(end - window_s), fmt_ms(end))
            } else {
                String::new()
            };
            let _ = write!(
                h,
                "<tr class=\"window\"><td class=\"l\">{when}</td><td class=\"l\">{}</td><td>{avg:.4}</td><td>{count}</td></tr>",
                esc(key)
            );
        }
    }
    h.push_str("</table>");
}

fn quarantine_section(h: &mut String, s: &Snapshot) {
    let _ = write!(
        h,
        "<h2>Quarantine and late records</h2><table id=\"quarantine\"><tr><th class=\"l\">reason</th><th>records</th></tr>"
    );
    for (reason, n) in s.quarantined_by_reason.iter().filter(|(_, n)| *n > 0) {
        let _ = write!(h, "<tr><td class=\"l\">{reason}</td><td>{n}</td></tr>");
    }
    let _ = write!(
        h,
        "<tr><th class=\"l\">quarantined, total</th><th>{}</th></tr>\
         <tr><td class=\"l\">late (window already closed: raw only)</td><td>{}</td></tr></table>",
        s.quarantined, s.late
    );
}

fn reports_section(h: &mut String, s: &Snapshot, reports: &[ReportLine]) {
    let dir = s.info.output.join(crate::validate::REPORTS_DIR);
    let _ = write!(
        h,
        "<h2>Validation reports <span class=\"sub\">({})</span></h2>",
        esc(&dir.display().to_string())
    );
    if reports.is_empty() {
        h.push_str("<p id=\"reports\" class=\"sub\">None yet: <code>streamlake validate</code> saves one per run.</p>");
        return;
    }
    h.push_str(
        "<table id=\"reports\"><tr><th class=\"l\">generated</th><th class=\"l\">status</th><th>files</th>\
         <th>rows</th><th class=\"l\">audit</th><th class=\"l\">note</th></tr>",
    );
    for r in reports {
        let cls = if r.status == "ok" || r.status == "no_files" || r.status == "path_missing" {
            "ok"
        } else {
            "bad"
        };
        let _ = write!(
            h,
            "<tr><td class=\"l\" title=\"{file}\">{gen}</td><td class=\"l {cls}\">{status}</td><td>{files}</td>\
             <td>{rows}</td><td class=\"l\">{audit}</td><td class=\"l\">{msg}</td></tr>",
            file = esc(&r.file),
            gen = esc(&r.generated_at),
            status = esc(&r.status),
            files = r.files.map_or(String::new(), fmt_count),
            rows = r.total_rows.map_or(String::new(), fmt_count),
            audit = esc(r.audit.as_deref().unwrap_or("")),
            msg = esc(r.message.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(esc("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
        assert_eq!(fmt_count(1234567), "1,234,567");
        assert_eq!(fmt_count(12), "12");
        assert_eq!(fmt_ms(1_740_787_230_000), "2025-03-01 00:00:30Z");
    }

    #[test]
    fn reads_the_newest_reports_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("20250301T000000Z.json"),
            r#"{"generated_at":"2025-03-01T00:00:00Z","status":"ok","total_rows":10,"files":2}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("20250301T000500Z.json"),
            r#"{"generated_at":"2025-03-01T00:05:00Z","status":"audit_failed","audit":{"summary":"audit: FAILED"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("_state.json"), "{}").unwrap();
        std::fs::write(dir.path().join("20250301T001000Z.json"), "{not json").unwrap();
        let r = read_reports(dir.path());
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].status, "unreadable");
        assert_eq!(r[1].audit.as_deref(), Some("audit: FAILED"));
        assert_eq!(r[2].total_rows, Some(10));
    }
}
