//! Unit tests of the settings checks (src/options.rs).

use super::*;

fn request() -> RunRequest {
    RunRequest {
        brokers: Some("127.0.0.1:9".into()),
        kafka_config: None,
        kafka_options: Vec::new(),
        consumer_group: None,
        topic: None,
        dataflow: None,
        output: PathBuf::from("data/output/parquet"),
        run_id: "local_run".into(),
        object_lease: None,
        single_writer: false,
        table_format: None,
        delta_checkpoint_interval: 100,
        workers: 2,
        processes: 1,
        process: 0,
        hostfile: None,
        starting_offsets: StartingOffsets::Latest,
        available_now: false,
        flush_windows: false,
        idle_timeout: Duration::from_secs(30),
        roll_interval: Duration::from_secs(60),
        roll_size_mib: 128,
        commit_delay: Duration::ZERO,
        max_open_files: 256,
        sink_buffer_mib: 64,
        max_future: Duration::from_secs(3600),
        on_data_loss: OnDataLoss::Fail,
        partition_discovery: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(30),
        peer_timeout: Duration::from_secs(120),
        trigger: None,
        consumer_options: Vec::new(),
        no_console: false,
        metrics_addr: None,
    }
}

#[test]
fn the_object_store_settings_need_an_object_store_and_a_workable_lease() {
    let s3 = || RunRequest { output: PathBuf::from("s3://lake/x/out"), ..request() };
    let o = RunOptions::new(s3()).unwrap();
    assert_eq!((o.object_lease, o.single_writer), (crate::sink::output::OBJECT_LEASE, false));
    let o = RunOptions::new(RunRequest {
        object_lease: Some(Duration::from_secs(3)),
        single_writer: true,
        ..s3()
    })
    .unwrap();
    assert_eq!((o.object_lease, o.single_writer), (Duration::from_secs(3), true));
    let short = RunOptions::new(RunRequest { object_lease: Some(Duration::from_millis(2999)), ..s3() });
    assert!(matches!(short, Err(OptionsError::LeaseTooShort { .. })), "{short:?}");
    for (flag, request) in [
        ("--single-writer", RunRequest { single_writer: true, ..request() }),
        ("--object-lease", RunRequest { object_lease: Some(Duration::from_secs(10)), ..request() }),
    ] {
        let err = RunOptions::new(request).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{flag} applies to an object-store --output")), "{err}");
        assert!(err.contains("data/output/parquet"), "names the output: {err}");
    }
}

#[test]
fn the_command_line_wins_over_the_dataflow_file_and_defaults_fill_the_rest() {
    let o = RunOptions::new(request()).unwrap();
    assert_eq!(o.spec.topic, "events", "the built-in dataflow's topic");
    assert_eq!(o.consumer_group, "streamlake-local_run");
    assert_eq!(o.roll_bytes, 128 << 20);
    assert_eq!((o.max_open_files, o.sink_buffer_mib), (256, 64));
    assert!(o.console);
    let o = RunOptions::new(RunRequest {
        topic: Some("other".into()),
        trigger: Some(Duration::from_secs(2)),
        consumer_group: Some("g".into()),
        no_console: true,
        ..request()
    })
    .unwrap();
    assert_eq!((o.spec.topic.as_str(), o.spec.trigger), ("other", Duration::from_secs(2)));
    assert_eq!(o.consumer_group, "g");
    assert!(!o.console);
    let info = o.cluster_info();
    assert_eq!((info.workers, info.processes, info.topic.as_str()), (2, 1, "other"));
}

#[test]
fn each_bad_setting_has_its_own_message() {
    let err = |r: RunRequest| RunOptions::new(r).unwrap_err().to_string();
    assert_eq!(
        err(RunRequest { processes: 2, process: 2, ..request() }),
        "-p 2 is out of range for -n 2: process indexes run from 0 to 1"
    );
    assert_eq!(
        err(RunRequest { run_id: "a/b".into(), ..request() }),
        "RUN_ID `a/b` must be a non-empty name without slashes"
    );
    assert!(err(RunRequest { run_id: String::new(), ..request() }).contains("non-empty"));
    assert!(err(RunRequest { idle_timeout: Duration::ZERO, ..request() })
        .starts_with("--idle-timeout must be positive"));
    let missing = PathBuf::from("/nonexistent/streamlake/flow.toml");
    assert!(err(RunRequest { dataflow: Some(missing), ..request() }).contains("cannot read dataflow file"));
}

#[test]
fn hostfiles() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "# cluster\nhost-a:2101\n\nhost-b:2101\nhost-c:2101\n").unwrap();
    let c = ClusterOptions::new(1, 2, 1, Some(&hosts)).unwrap();
    assert_eq!(c.addresses, vec!["host-a:2101", "host-b:2101"]);
    assert_eq!(
        ClusterOptions::new(1, 2, 0, None).unwrap().addresses,
        vec!["localhost:2101", "localhost:2102"]
    );
    assert!(ClusterOptions::new(1, 1, 0, None).unwrap().addresses.is_empty());
    let e = ClusterOptions::new(1, 4, 0, Some(&hosts)).unwrap_err().to_string();
    assert!(e.contains("lists 3 host(s) but -n is 4"), "{e}");
    std::fs::write(&hosts, "host-a\nhost-b:2101\n").unwrap();
    let e = ClusterOptions::new(1, 2, 0, Some(&hosts)).unwrap_err().to_string();
    assert!(e.ends_with("`host-a` is not `host:port`"), "{e}");
    let e = ClusterOptions::new(1, 2, 0, Some(&dir.path().join("none"))).unwrap_err().to_string();
    assert!(e.starts_with("cannot read hostfile"), "{e}");
}

#[test]
fn the_file_limit_must_hold_the_sink_files_and_the_rest() {
    assert!(check_file_limit(256, Some(1024)).is_ok());
    assert!(check_file_limit(256, None).is_ok(), "unlimited");
    let e = check_file_limit(1000, Some(1024)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("--max-open-files 1000") && msg.contains("`ulimit -n` 1024"), "{msg}");
    assert!(msg.contains("--max-open-files 960 or less"), "{msg}");
    assert!(matches!(check_file_limit(0, Some(1024)), Err(OptionsError::ZeroMaxOpenFiles)));
}
