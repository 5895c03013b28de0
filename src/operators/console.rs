//! The console sink, update mode: every trigger, the window rows that changed since the last one,
//! as Spark's console sink prints them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::Stream;

use super::window::WindowOutput;
use crate::parse::Key;
use crate::sink::aggregates::WindowRow;

pub trait ConsoleSink {
    /// Input: window rows (updates and finals). Routing: all to worker 0, which prints.
    ///
    /// Frontier behaviour: holds no capability; it wakes itself every `trigger` (processing time)
    /// and prints a `Batch: N` table of the latest row of every (window, key) that changed, and
    /// prints what is left when its input ends.
    fn console(self, trigger: Duration, window_ms: u64, key_name: String);
}

fn fmt_ts(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn print_batch(batch: u64, rows: &BTreeMap<(u64, Key), WindowRow>, window_ms: u64, key_name: &str) {
    use std::io::Write;
    let mut out = String::new();
    out.push_str("-------------------------------------------\n");
    out.push_str(&format!("Batch: {batch}\n"));
    out.push_str("-------------------------------------------\n");
    let w = key_name.len().max(rows.keys().map(|(_, k)| k.to_string().len()).max().unwrap_or(0));
    let line = format!("+-------------------+-------------------+{}+------------------+\n", "-".repeat(w));
    out.push_str(&line);
    out.push_str(&format!("|window_start       |window_end         |{key_name:<w$}|avg_value         |\n"));
    out.push_str(&line);
    for row in rows.values() {
        out.push_str(&format!(
            "|{}|{}|{:<w$}|{:<18}|\n",
            fmt_ts(row.end_ms.saturating_sub(window_ms)),
            fmt_ts(row.end_ms),
            row.key.to_string(),
            row.avg()
        ));
    }
    out.push_str(&line);
    out.push('\n');
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = lock.write_all(out.as_bytes());
    let _ = lock.flush();
}

impl ConsoleSink for Stream<'_, u64, Vec<WindowOutput>> {
    fn console(self, trigger: Duration, window_ms: u64, key_name: String) {
        let scope = self.scope();
        let mut builder =
            timely::dataflow::operators::generic::builder_rc::OperatorBuilder::new("Console".into(), scope);
        let info = builder.operator_info();
        let activator = scope.activator_for(info.address);
        let mut input = builder.new_input(self, Exchange::new(|_: &WindowOutput| 0));
        builder.build(move |_caps| {
            let mut changed: BTreeMap<(u64, Key), WindowRow> = BTreeMap::new();
            let mut last = Instant::now();
            let mut batch = 0u64;
            let mut armed = false;
            move |frontiers| {
                input.for_each(|_cap, data| {
                    for (row, _final) in data.drain(..) {
                        changed.insert((row.end_ms, row.key.clone()), row);
                    }
                });
                let ended = frontiers[0].frontier().is_empty();
                if !changed.is_empty() && (ended || last.elapsed() >= trigger) {
                    print_batch(batch, &changed, window_ms, &key_name);
                    batch += 1;
                    changed.clear();
                    last = Instant::now();
                    armed = false;
                }
                if !changed.is_empty() && !armed {
                    activator.activate_after(trigger.saturating_sub(last.elapsed()));
                    armed = true;
                }
            }
        });
    }
}
