//! The layout rules of issue 15, checked on the source text so that a change that breaks them
//! fails here with the file and line, instead of growing a cycle nobody notices.
//!
//! 1. Only `commands.rs` (and `cli.rs` itself) reads the command line: everything else takes
//!    [`streamlake::options`] or plain values. `main.rs`, the binary, parses it.
//! 2. No cycle between the top-level modules (`cli`, `job`, `kafka`, `observe`, ...), counted from
//!    `crate::<module>` and `super::<module>` paths outside `#[cfg(test)] mod tests`, the way
//!    `cargo modules dependencies` counts `use` edges.
//!
//! The scan reads text, not the compiler's resolution: it looks at code with comments removed,
//! which is all the rules need, and it runs in milliseconds without a nightly toolchain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges that other branches of issue 15 remove; each is ignored by the cycle check while it
/// exists, and the test fails once it is gone so that the entry is deleted too.
const PENDING: &[(&str, &str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A source file's code lines (1-based numbers), without comments and without its trailing
/// `#[cfg(test)] mod tests`.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_end() == "#[cfg(test)]" && lines.get(i + 1).is_some_and(|l| l.starts_with("mod ")) {
            break;
        }
        let mut code = String::new();
        let mut rest = *line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                let line_comment = rest.find("//");
                let block = rest.find("/*");
                match (line_comment, block) {
                    (Some(l), b) if b.is_none_or(|b| l < b) => {
                        code.push_str(&rest[..l]);
                        break;
                    }
                    (_, Some(b)) => {
                        code.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    _ => {
                        code.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push((i + 1, code));
    }
    out
}

/// The file's module path below the crate root: `src/kafka/client.rs` is `["kafka", "client"]`,
/// `src/kafka/mod.rs` is `["kafka"]`; `lib.rs` and `main.rs` are the root (`[]`).
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

fn is_word_start(line: &str, at: usize) -> bool {
    at == 0 || !line[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Top-level modules a line names, by `crate::m`, `crate::{m, ...}` or enough `super::` to reach
/// the crate root from `module`.
fn referenced_top_modules(line: &str, module: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = line[from..].find("crate::") {
        let at = from + pos;
        from = at + "crate::".len();
        if !is_word_start(line, at) {
            continue;
        }
        let rest = &line[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`: the first name of each item at the top level of the braces.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        found.push(ident_at(&group[i..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident_at(rest).to_string());
        }
    }
    let mut from = 0;
    while let Some(pos) = line[from..].find("super::") {
        let at = from + pos;
        if !is_word_start(line, at) {
            from = at + "super::".len();
            continue;
        }
        let mut rest = &line[at..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            ups += 1;
        }
        from = line.len() - rest.len();
        if ups == module.len() {
            found.push(ident_at(rest).to_string());
        }
    }
    found
}

struct Reference {
    file: PathBuf,
    line: usize,
    text: String,
}

/// Every reference from one top-level module to another: (from, to) -> where.
fn top_level_edges() -> BTreeMap<(String, String), Vec<Reference>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut top: BTreeSet<String> = BTreeSet::new();
    for file in &files {
        if let Some(first) = module_path(file).first() {
            top.insert(first.clone());
        }
    }
    let mut edges: BTreeMap<(String, String), Vec<Reference>> = BTreeMap::new();
    for file in &files {
        let module = module_path(file);
        let Some(from) = module.first() else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, code) in code_lines(&text) {
            for to in referenced_top_modules(&code, &module) {
                if &to != from && top.contains(&to) {
                    edges.entry((from.clone(), to)).or_default().push(Reference {
                        file: file.clone(),
                        line,
                        text: code.trim().to_string(),
                    });
                }
            }
        }
    }
    edges
}

fn shown(file: &Path) -> String {
    file.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or(file).display().to_string()
}

#[test]
fn only_commands_reads_the_command_line() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut offences = Vec::new();
    for file in &files {
        let name = shown(file);
        if name == "src/cli.rs" || name == "src/commands.rs" {
            continue;
        }
        let module = module_path(file);
        let text = std::fs::read_to_string(file).unwrap();
        for (line, code) in code_lines(&text) {
            let names_cli = referenced_top_modules(&code, &module).iter().any(|m| m == "cli");
            // The binary parses the command line and hands it to `commands::run`, nothing more.
            let crate_path = name != "src/main.rs" && code.contains("streamlake::cli");
            if names_cli || crate_path {
                offences.push(format!("{name}:{line}: {}", code.trim()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "only src/commands.rs may import crate::cli (the command line); pass checked settings from \
         crate::options, or plain values, instead:\n  {}",
        offences.join("\n  ")
    );
}

#[test]
fn the_scan_sees_every_form_of_path() {
    let module = vec!["observe".to_string(), "status".to_string()];
    assert_eq!(referenced_top_modules("use crate::cli::RunArgs;", &module), ["cli"]);
    assert_eq!(referenced_top_modules("use crate::{cli, kafka::settings};", &module), ["cli", "kafka"]);
    assert_eq!(referenced_top_modules("let x = super::super::cli::Rate::Max;", &module), ["cli"]);
    assert!(referenced_top_modules("use super::telemetry::Snapshot;", &module).is_empty());
    assert!(referenced_top_modules("use mycrate::cli;", &module).is_empty());
    assert_eq!(referenced_top_modules("use super::cli;", &["job".to_string()]), ["cli"]);
    let lines = code_lines(
        "use a; // crate::cli\n/* crate::cli */ use b;\n#[cfg(test)]\nmod tests {\nuse crate::cli;\n}\n",
    );
    assert_eq!(lines.iter().map(|(_, l)| l.trim()).collect::<Vec<_>>(), ["use a;", "use b;"]);
}

#[test]
fn no_cycle_between_top_level_modules() {
    let edges = top_level_edges();
    let mut stale = Vec::new();
    for (from, to, why) in PENDING {
        if !edges.contains_key(&(from.to_string(), to.to_string())) {
            stale.push(format!("{from} -> {to} ({why})"));
        }
    }
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        if !PENDING.iter().any(|(f, t, _)| f == from && t == to) {
            graph.entry(from.as_str()).or_default().insert(to.as_str());
        }
    }
    // The graph itself, for `cargo test --test integration -- architecture:: --nocapture`.
    for (from, to) in &graph {
        println!("{from} -> {}", to.iter().copied().collect::<Vec<_>>().join(", "));
    }
    // A cycle is a path back to its start; depth-first from every module, the first found is shown.
    fn find_cycle<'a>(
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        node: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|n| *n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = find_cycle(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    let mut cycle = None;
    for node in graph.keys() {
        if let Some(c) = find_cycle(&graph, node, &mut Vec::new(), &mut done) {
            cycle = Some(c);
            break;
        }
    }
    if let Some(cycle) = cycle {
        let evidence: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let r = &edges[&(w[0].to_string(), w[1].to_string())][0];
                format!("{} -> {}: {}:{}: {}", w[0], w[1], shown(&r.file), r.line, r.text)
            })
            .collect();
        panic!(
            "the top-level modules form a cycle {}; dependencies must point one way (cli, options, \
             job, operators, ingest and sinks, format, kafka and utilities). Move the shared item \
             down, or pass it in:\n  {}",
            cycle.join(" -> "),
            evidence.join("\n  ")
        );
    }
    assert!(
        stale.is_empty(),
        "these edges are gone: delete them from PENDING in tests/architecture.rs:\n  {}",
        stale.join("\n  ")
    );
}
