//! The S3 server of the tests (SeaweedFS, started by scripts/test.sh through scripts/s3.sh).

/// The bucket scripts/test.sh created, with the standard AWS_* variables pointing at the server.
/// Under CI a missing server fails the test; elsewhere the test says so and returns.
pub fn bucket() -> Option<String> {
    match std::env::var("STREAMLAKE_TEST_S3_BUCKET") {
        Ok(b) if !b.is_empty() && std::env::var("AWS_ENDPOINT_URL").is_ok() => Some(b),
        _ => {
            if super::process::required() {
                panic!("STREAMLAKE_TEST_S3_BUCKET/AWS_ENDPOINT_URL are not set but the S3 server is required: run scripts/test.sh");
            }
            eprintln!("no S3 server: run scripts/test.sh (or scripts/s3.sh start and its env); not running this test");
            None
        }
    }
}

/// Copies every object of `store` to `dest`, keys as paths, through the S3 API; returns how
/// many objects.
pub fn copy_to(store: &streamlake::storage::ObjectStoreRoot, dest: &std::path::Path) -> usize {
    use streamlake::storage::Store;
    let listed = store.list("").unwrap();
    for l in &listed {
        let path = dest.join(&l.key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, store.get(&l.key).unwrap().unwrap()).unwrap();
    }
    listed.len()
}

/// A SeaweedFS of one test's own (scripts/s3.sh with its own state folder), for a test that stops
/// and restarts the server: the shared one serves the other tests meanwhile. Stopped on drop.
pub struct OwnS3 {
    state: std::path::PathBuf,
    /// The `AWS_*` settings that reach it.
    pub env: Vec<(String, String)>,
}

impl OwnS3 {
    fn s3_sh(state: &std::path::Path, action: &str) -> std::process::Output {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3.sh");
        let o = std::process::Command::new("bash")
            .arg(script)
            .arg(action)
            .env("S3_STATE_DIR", state)
            .output()
            .unwrap();
        assert!(o.status.success(), "s3.sh {action} failed:\n{}", String::from_utf8_lossy(&o.stderr));
        o
    }

    /// Starts a server with its state in `state`, with bucket `lake`.
    pub fn start(state: &std::path::Path) -> OwnS3 {
        Self::s3_sh(state, "start");
        let env = String::from_utf8_lossy(&Self::s3_sh(state, "env").stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        OwnS3 { state: state.to_path_buf(), env }
    }

    /// Points `cmd` at this server.
    pub fn apply(&self, cmd: &mut std::process::Command) {
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    fn var(&self, name: &str) -> &str {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap()
    }

    /// A client of `s3://lake/<prefix>` on this server.
    pub fn store(&self, prefix: &str) -> streamlake::storage::ObjectStoreRoot {
        let url = streamlake::storage::ObjectUrl::parse(&format!("s3://lake/{prefix}")).unwrap();
        streamlake::storage::ObjectStoreRoot::open_with(
            &url,
            &[
                ("aws_endpoint", self.var("AWS_ENDPOINT_URL")),
                ("aws_access_key_id", self.var("AWS_ACCESS_KEY_ID")),
                ("aws_secret_access_key", self.var("AWS_SECRET_ACCESS_KEY")),
                ("aws_region", self.var("AWS_REGION")),
                ("aws_allow_http", "true"),
            ],
        )
        .unwrap()
    }

    /// Stops the server (SIGTERM, by its PID).
    pub fn stop(&self) {
        Self::s3_sh(&self.state, "stop");
    }

    /// Starts it again on the same data and ports.
    pub fn restart(&self) {
        let o = Self::s3_sh(&self.state, "start");
        let endpoint =
            String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().trim().to_string();
        assert_eq!(endpoint, self.var("AWS_ENDPOINT_URL"), "the restarted server is on the same port");
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| Self::s3_sh(&self.state, "stop"));
    }
}
