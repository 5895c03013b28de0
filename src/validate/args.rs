//! Command-line options of `streamlake validate` (clap only); `--every` reads the shared duration grammar.
//!
//! The options mirror what the Airflow DAG hard-coded: the folder it read (`OUTPUT_PATH`, as the
//! rest of streamlake names it) and its schedule (`*/5 * * * *` becomes `--every 5m`).

use std::path::PathBuf;
use std::time::Duration;

use crate::util::duration::parse_duration;

/// Options of `streamlake validate`.
#[derive(clap::Args, Debug, Clone)]
pub struct ValidateArgs {
    /// Folder of the raw dataset to read: every committed `*.parquet` file below it, in all
    /// `run_*` folders and all hive-style `name=value` partition folders (`id=0`, `id=1`, ...).
    /// Hidden entries (`_*`, `.*`, such as `_checkpoint`, `_quarantine`, `_reports` and in-progress
    /// files) are not data. Reports are written to `<PATH>/_reports/`. A path, a
    /// `file:///abs/path` URL, or an object store, `s3://bucket/prefix` (credentials and
    /// endpoint from the standard AWS_* variables): its objects are read into a local copy
    /// (see --cache-dir) and the report is put back into `s3://bucket/prefix/_reports/`.
    #[arg(long, value_name = "DIR", env = "OUTPUT_PATH", default_value = "data/output/parquet")]
    pub path: PathBuf,

    /// Pipeline definition the dataset was written with, as given to `run --dataflow`: its key
    /// column is what rows are counted per, its value column what is counted and averaged, its
    /// time column what the audit assigns windows by. Default: the original platform's pipeline,
    /// `dataflows/events.toml`, built in (key `id`, value `value`, time `ts`).
    #[arg(long, value_name = "FILE")]
    pub dataflow: Option<PathBuf>,

    /// Run again and again on the wall-clock grid instead of once, e.g. `5m` runs at :00, :05,
    /// :10, ... (UTC-aligned, like the DAG's cron `*/5 * * * *`), `2s` on even seconds. The first
    /// run starts at once; runs missed because one took too long are skipped, not caught up.
    /// Stops at SIGINT/SIGTERM and exits with the last run's exit code. Units: ms, s, m, h.
    #[arg(long, value_name = "DURATION", value_parser = parse_every)]
    pub every: Option<Duration>,

    /// Read only the files not seen by a previous run, whose per-file counts and sums are kept in
    /// `<PATH>/_reports/_state.json`; totals are the same as a full scan's. If a file seen before
    /// has disappeared, says so and scans everything again.
    #[arg(long)]
    pub incremental: bool,

    /// Also audit exactly-once delivery from the files alone: per run and Kafka partition, the
    /// files' offset ranges must tile the committed range of the newest checkpoint entry with no
    /// gap, overlap, duplicate or file beyond it, and row counts must match the file metadata.
    /// Exit code 3 when a problem is found.
    #[arg(long)]
    pub audit: bool,

    /// Print the report as one JSON object (one line per run) instead of tables. The same JSON
    /// is always written to `<PATH>/_reports/<UTC time>.json`.
    #[arg(long)]
    pub json: bool,

    /// With an `s3://` --path: keep the local copy of the dataset in DIR between runs, so that a
    /// run fetches only the objects that are new or changed (committed data files never change).
    /// Without it, each run reads every object into a temporary folder and removes it after.
    /// The copy needs as much disk as the dataset.
    #[arg(long, value_name = "DIR", env = "STREAMLAKE_VALIDATE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl ValidateArgs {
    /// Options for one run over `path` with every switch off (for tests and embedding).
    pub fn for_path(path: impl Into<PathBuf>) -> Self {
        ValidateArgs {
            path: path.into(),
            dataflow: None,
            every: None,
            incremental: false,
            audit: false,
            json: false,
            cache_dir: None,
        }
    }
}

/// `--every` needs a period the grid can be built on: at least one millisecond.
fn parse_every(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("`{text}` is zero: --every needs a period of at least 1ms, e.g. 5m"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5 parsecs").unwrap_err().to_string().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        // One grammar with `run` since issue 15: fractions are durations here too.
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_every("0s").unwrap_err().contains("zero"));
    }

    #[test]
    fn options_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            v: ValidateArgs,
        }
        let cli =
            Cli::parse_from(["x", "--path", "/d", "--every", "5m", "--incremental", "--audit", "--json"]);
        assert_eq!(cli.v.path, PathBuf::from("/d"));
        assert_eq!(cli.v.dataflow, None);
        let flow = Cli::parse_from(["x", "--dataflow", "dataflows/sensors.toml"]);
        assert_eq!(flow.v.dataflow, Some(PathBuf::from("dataflows/sensors.toml")));
        assert_eq!(cli.v.every, Some(Duration::from_secs(300)));
        assert!(cli.v.incremental && cli.v.audit && cli.v.json);
        assert!(Cli::try_parse_from(["x", "--every", "0s"]).is_err());
    }
}
