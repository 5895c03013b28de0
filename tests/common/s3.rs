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
