//! The exactly-once checks of one Kafka partition of one run: its files against its committed
//! position, range by range, and the ranges against each other (see the module [`super`]).

use std::collections::{BTreeMap, BTreeSet};

use super::files::{
    base_name, first_name, in_folder, join_rel, name_seq, name_worker, part_file_name_pattern, AuditFile,
    FileMeta, Folders,
};
use super::{PartitionAudit, Problem, ProblemKind};
use crate::format::checkpoint::PartitionEntry;
use crate::format::{meta, QUARANTINE_DIR};

/// Checks one partition of one run; `entries` are its readable checkpoint entries.
pub(super) fn audit_partition(
    run: &str,
    partition: i32,
    files: &[(&AuditFile, FileMeta)],
    entries: &[(String, PartitionEntry)],
    folders: &Folders,
) -> (PartitionAudit, Vec<Problem>) {
    let mut problems = Vec::new();
    let add = |problems: &mut Vec<Problem>, kind: ProblemKind, message: String, files: Vec<String>| {
        problems.push(Problem { kind, run: run.to_string(), partition: Some(partition), message, files });
    };
    let newest = entries.iter().max_by_key(|(_, e)| e.next_offset);
    let next = newest.map(|(_, e)| e.next_offset);
    let mut stats = PartitionAudit {
        run: run.to_string(),
        partition,
        next_offset: next,
        checkpoint: newest.map(|(name, _)| name.clone()),
        late: newest.map_or(0, |(_, e)| e.total_late),
        ..Default::default()
    };

    // Files beyond the committed position.
    let mut ranges: BTreeMap<(i64, i64), Vec<&(&AuditFile, FileMeta)>> = BTreeMap::new();
    for item in files {
        let (file, meta) = item;
        match next {
            None => add(
                &mut problems,
                ProblemKind::Outside,
                format!(
                    "{} covers offsets [{}, {}) of partition {partition}, which has no checkpoint entry: it was never \
                     committed (a crash before the first commit); `streamlake run` deletes it on its next start",
                    file.rel, meta.start, meta.end
                ),
                vec![file.rel.clone()],
            ),
            Some(n) if meta.end > n => add(
                &mut problems,
                ProblemKind::Outside,
                format!(
                    "{} covers offsets [{}, {}) of partition {partition}, beyond the committed position \
                     next_offset={n}: an uncommitted leftover of a crash; `streamlake run` deletes it on its next start",
                    file.rel, meta.start, meta.end
                ),
                vec![file.rel.clone()],
            ),
            Some(_) if meta.start < meta.end => ranges.entry((meta.start, meta.end)).or_default().push(item),
            Some(_) => {}
        }
    }

    // Within each range: one commit, so one file per folder and sequence number (a folder gets
    // `-s001`, `-s002`, … when the sink closed its file before the commit) and rows adding up to
    // the records.
    let entry_for = |s: i64, e: i64| entries.iter().find(|(_, x)| x.start_offset == s && x.next_offset == e);
    for (&(s, e), group) in &ranges {
        stats.ranges += 1;
        stats.files += group.len() as u64;
        let names = |g: &[&(&AuditFile, FileMeta)]| g.iter().map(|(f, _)| f.rel.clone()).collect::<Vec<_>>();
        let expected: BTreeSet<u64> = group.iter().map(|(_, m)| m.range_messages).collect();
        let expected_max = expected.iter().copied().max().unwrap_or(0);
        if expected.len() > 1 {
            add(
                &mut problems,
                ProblemKind::Invalid,
                format!(
                    "the files of range [{s}, {e}) of partition {partition} disagree on its record count \
                     ({} {:?}): {}",
                    meta::RANGE_MESSAGES,
                    expected,
                    names(group).join(", ")
                ),
                names(group),
            );
        }
        stats.messages += expected_max;
        let mut by_folder: BTreeMap<(&str, u32), Vec<&(&AuditFile, FileMeta)>> = BTreeMap::new();
        for item in group {
            by_folder
                .entry((item.0.folder.as_str(), name_seq(base_name(&item.0.rel))))
                .or_default()
                .push(item);
            if item.0.quarantine {
                stats.quarantined += item.1.rows;
            } else {
                stats.written += item.1.rows;
            }
        }
        let mut duplicated = false;
        let listed: BTreeSet<String> = entry_for(s, e)
            .map(|(_, x)| x.files.iter().map(|f| join_rel(run, f)).collect())
            .unwrap_or_default();
        for ((folder, _), dup) in by_folder.iter().filter(|(_, g)| g.len() > 1) {
            duplicated = true;
            let keep: Vec<String> = names(dup).into_iter().filter(|f| listed.contains(f)).collect();
            // Without the commit's checkpoint entry (pruned, or replaced by a later empty commit with
            // the same next_offset), the writer's worker index tells the original from a renamed copy.
            let named_right: Vec<(String, u64)> = dup
                .iter()
                .filter_map(|(f, m)| {
                    let w = m.worker?;
                    (name_worker(base_name(&f.rel)) == Some(w)).then(|| (f.rel.clone(), w))
                })
                .collect();
            let advice = match (keep.as_slice(), named_right.as_slice()) {
                ([one], _) => format!("the checkpoint lists {one}: keep it and move the others away"),
                ([], [(one, w)]) => format!(
                    "only {one} is named after the worker that wrote it ({}={w}), the others are copies: keep it \
                     and move the others away",
                    meta::WORKER
                ),
                _ => "keep one and move the others away".to_string(),
            };
            add(
                &mut problems,
                ProblemKind::Duplicate,
                format!(
                    "duplicate: {} files in {} cover the same range [{s}, {e}) of partition {partition}, so \
                     their rows count twice: {}; {advice}",
                    dup.len(),
                    if folder.is_empty() { "the run folder".to_string() } else { format!("{folder}/") },
                    names(dup).join(", ")
                ),
                names(dup),
            );
        }
        if duplicated {
            continue;
        }
        let rows: u64 = group.iter().map(|(_, m)| m.rows).sum();
        if rows > expected_max {
            add(
                &mut problems,
                ProblemKind::Duplicate,
                format!(
                    "duplicate: the files of range [{s}, {e}) of partition {partition} hold {rows} rows but the range \
                     has {expected_max} records: {}",
                    names(group).join(", ")
                ),
                names(group),
            );
        } else if rows < expected_max {
            let present: BTreeSet<String> = group.iter().map(|(f, _)| f.rel.clone()).collect();
            let entry = entry_for(s, e);
            let mut missing: Vec<String> = entry
                .map(|(_, x)| {
                    x.files.iter().map(|f| join_rel(run, f)).filter(|f| !present.contains(f)).collect()
                })
                .unwrap_or_default();
            let mut which = if missing.is_empty() {
                "a file of this commit is missing".to_string()
            } else {
                format!("missing: {}", missing.join(", "))
            };
            if entry.is_none() {
                // The commit's checkpoint entry is gone (pruned, or replaced by a later empty commit
                // with the same next_offset): all first files of one commit's folders share one name,
                // so the missing one is that name in a folder that has none for this range.
                let name = first_name(base_name(&group[0].0.rel));
                let have: BTreeSet<&str> = group.iter().map(|(f, _)| f.folder.as_str()).collect();
                let mut guess: Vec<String> = folders
                    .keys
                    .iter()
                    .filter(|k| !have.contains(k.as_str()))
                    .map(|k| join_rel(run, &in_folder(k, &name)))
                    .collect();
                if guess.is_empty() && folders.quarantine && !have.contains(QUARANTINE_DIR) {
                    guess.push(join_rel(run, &format!("{QUARANTINE_DIR}/{name}")));
                }
                if !guess.is_empty() {
                    which = format!(
                        "probably missing, as no file of this range is in its folder: {}",
                        guess.join(", ")
                    );
                    missing = guess;
                }
            }
            add(
                &mut problems,
                ProblemKind::Gap,
                format!(
                    "gap: the files of range [{s}, {e}) of partition {partition} hold {rows} of its {expected_max} \
                     records ({which}); present: {}",
                    names(group).join(", ")
                ),
                if missing.is_empty() { names(group) } else { missing },
            );
        }
    }

    // The ranges (plus commits that had no record, hence no file) must tile the committed offsets.
    let mut covered: Vec<(i64, i64, Vec<String>)> =
        ranges.iter().map(|(&(s, e), g)| (s, e, g.iter().map(|(f, _)| f.rel.clone()).collect())).collect();
    let skipped: Vec<(i64, i64)> = newest.map(|(_, e)| e.skipped_ranges.clone()).unwrap_or_default();
    covered.extend(
        entries
            .iter()
            .filter(|(_, x)| x.messages == 0 && x.start_offset < x.next_offset)
            .filter(|(_, x)| !ranges.contains_key(&(x.start_offset, x.next_offset)))
            .filter(|(_, x)| !skipped.contains(&(x.start_offset, x.next_offset)))
            .map(|(name, x)| (x.start_offset, x.next_offset, vec![name.clone()])),
    );
    // A deliberate skip covers its range: the loss is reported, not counted as a gap.
    covered.extend(skipped.iter().map(|&(a, b)| (a, b, vec!["(skipped: --on-data-loss=skip)".to_string()])));
    stats.skipped = skipped;
    covered.sort();
    let first = newest.map(|(_, e)| e.first_offset).or_else(|| covered.first().map(|c| c.0));
    stats.first_offset = first;
    if let (Some(first), Some(next)) = (first, next) {
        // Files the checkpoint entries inside [a, b) list: what a gap lost.
        let listed_in = |a: i64, b: i64| -> Vec<String> {
            entries
                .iter()
                .filter(|(_, x)| x.start_offset >= a && x.next_offset <= b)
                .flat_map(|(_, x)| x.files.iter().map(|f| join_rel(run, f)))
                .collect()
        };
        let gap = |problems: &mut Vec<Problem>, a: i64, b: i64| {
            let missing = listed_in(a, b);
            let hint = if missing.is_empty() {
                format!(
                    "; if one commit covered them, its files were named {}",
                    part_file_name_pattern(partition, a, b)
                )
            } else {
                format!("; the checkpoint lists these files for them: {}", missing.join(", "))
            };
            add(
                problems,
                ProblemKind::Gap,
                format!(
                    "gap: offsets [{a}, {b}) of partition {partition} are committed (next_offset={next}) but no file \
                     covers them{hint}"
                ),
                missing,
            );
        };
        let mut cursor = first;
        let mut previous: Option<&(i64, i64, Vec<String>)> = None;
        for c in &covered {
            let (s, e, names) = c;
            if *s > cursor {
                gap(&mut problems, cursor, *s);
            } else if *s < cursor {
                let mut involved = names.clone();
                let before = match previous {
                    Some((ps, pe, pnames)) => {
                        involved.extend(pnames.iter().cloned());
                        format!("range [{ps}, {pe}) ({})", pnames.join(", "))
                    }
                    None => format!("the partition's first committed offset {first}"),
                };
                add(
                    &mut problems,
                    ProblemKind::Overlap,
                    format!(
                        "overlap: range [{s}, {e}) of partition {partition} ({}) starts before the end of {before}, so \
                         offsets [{s}, {}) are written twice",
                        names.join(", "),
                        cursor.min(*e)
                    ),
                    involved,
                );
            }
            cursor = cursor.max(*e);
            previous = Some(c);
        }
        if cursor < next {
            gap(&mut problems, cursor, next);
        }
    }

    // With the files consistent, they must also add up to the checkpoint's running totals.
    if problems.is_empty() {
        if let Some((name, e)) = newest {
            let checks = [
                ("total_messages", e.total_messages, stats.messages, "records"),
                ("total_rows", e.total_rows, stats.written, "raw rows"),
                ("total_quarantined", e.total_quarantined, stats.quarantined, "quarantined rows"),
            ];
            for (field, claimed, found, what) in checks {
                if claimed != found {
                    add(
                        &mut problems,
                        ProblemKind::Invalid,
                        format!(
                            "checkpoint entry {name} says {field}={claimed} for partition {partition}, but its files \
                             hold {found} {what}"
                        ),
                        vec![name.clone()],
                    );
                }
            }
        }
    }
    (stats, problems)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::format::part_file_name_seq;

    fn file(folder: &str, seq: u32, worker: usize, rows: u64) -> (AuditFile, FileMeta) {
        let name = part_file_name_seq(0, 0, 10, worker, seq);
        let rel = in_folder(folder, &name);
        let meta = FileMeta {
            partition: 0,
            start: 0,
            end: 10,
            rows,
            range_messages: 10,
            kind: meta::KIND_RAW.to_string(),
            run_id: Some("t".into()),
            worker: Some(0),
            footer_rows: rows,
        };
        (AuditFile { folder: folder.to_string(), path: PathBuf::from(&rel), rel, quarantine: false }, meta)
    }

    fn entry(files: &[&(AuditFile, FileMeta)]) -> Vec<(String, PartitionEntry)> {
        let mut e = PartitionEntry::start_of(0, 0, 0);
        e.next_offset = 10;
        e.messages = 10;
        e.rows = 10;
        e.total_messages = 10;
        e.total_rows = 10;
        e.files = files.iter().map(|(f, _)| f.rel.clone()).collect();
        vec![("entry".to_string(), e)]
    }

    fn audit(items: &[(AuditFile, FileMeta)], entries: &[(String, PartitionEntry)]) -> Vec<Problem> {
        let refs: Vec<(&AuditFile, FileMeta)> = items.iter().map(|(f, m)| (f, m.clone())).collect();
        let folders =
            Folders { keys: items.iter().map(|(f, _)| f.folder.clone()).collect(), quarantine: false };
        audit_partition("run_t", 0, &refs, entries, &folders).1
    }

    #[test]
    fn several_files_of_one_folder_in_one_range_add_up() {
        let items =
            vec![file("id_bucket=1", 0, 0, 4), file("id_bucket=1", 1, 0, 3), file("id_bucket=2", 0, 0, 3)];
        let entries = entry(&items.iter().collect::<Vec<_>>());
        assert_eq!(audit(&items, &entries), vec![], "three files, 10 rows, 10 records");

        // A copy of the second file under another worker's name counts twice.
        let mut copied = items;
        copied.push(file("id_bucket=1", 1, 1, 3));
        let problems = audit(&copied, &entries);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, ProblemKind::Duplicate);
        assert!(problems[0].message.contains("2 files in id_bucket=1/ cover the same range"), "{problems:?}");
    }

    #[test]
    fn a_dataset_without_folders_is_audited_in_the_run_folder() {
        let items = vec![file("", 0, 0, 6), file("", 1, 0, 4)];
        let entries = entry(&items.iter().collect::<Vec<_>>());
        assert_eq!(audit(&items, &entries), vec![]);
        let problems = audit(&items[..1], &entries);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, ProblemKind::Gap);
        assert_eq!(problems[0].files, vec![format!("run_t/{}", part_file_name_seq(0, 0, 10, 0, 1))]);
        let dup = vec![file("", 0, 0, 6), file("", 0, 1, 6), file("", 1, 0, 4)];
        let problems = audit(&dup, &entries);
        assert!(problems[0].message.contains("files in the run folder cover the same range"), "{problems:?}");
    }
}
