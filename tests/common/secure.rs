//! The broker's secured listeners for `tests/kafka_secure.rs`: `scripts/test.sh` (through
//! `scripts/kafka.sh`) exports `STREAMLAKE_TEST_KAFKA_SECURE_DIR`, `STREAMLAKE_TEST_SASL_SSL_BROKERS`
//! and `STREAMLAKE_TEST_SSL_BROKERS`.

use std::path::{Path, PathBuf};

use streamlake::kafka::settings::read_properties;

/// The secured listeners and their files.
pub struct Secure {
    pub dir: PathBuf,
    pub sasl_ssl: String,
    pub ssl: String,
}

impl Secure {
    pub fn get() -> Option<Secure> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            var("STREAMLAKE_TEST_KAFKA_SECURE_DIR"),
            var("STREAMLAKE_TEST_SASL_SSL_BROKERS"),
            var("STREAMLAKE_TEST_SSL_BROKERS"),
        ) {
            (Some(dir), Some(sasl_ssl), Some(ssl)) => Some(Secure { dir: dir.into(), sasl_ssl, ssl }),
            _ => {
                assert!(
                    !super::process::required(),
                    "STREAMLAKE_TEST_KAFKA_SECURE_DIR / _SASL_SSL_BROKERS / _SSL_BROKERS are not set but a \
                     broker is required: run scripts/test.sh"
                );
                eprintln!("no secured broker: run scripts/test.sh; not running this test");
                None
            }
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn sasl_props(&self) -> PathBuf {
        self.file("client-sasl-ssl.properties")
    }

    /// The settings of a properties file, for the test's own clients.
    pub fn options(&self, name: &str) -> Vec<(String, String)> {
        read_properties(&self.file(name)).unwrap().into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(self.file("streamlake.password")).unwrap().trim().to_string()
    }

    /// A copy of the SASL_SSL properties with `changes` applied (a value `None` drops the key).
    pub fn variant(&self, dir: &Path, name: &str, base: &str, changes: &[(&str, Option<&str>)]) -> PathBuf {
        let mut lines: Vec<(String, String)> = self.options(base);
        for (key, value) in changes {
            lines.retain(|(k, _)| k != key);
            if let Some(v) = value {
                lines.push((key.to_string(), v.to_string()));
            }
        }
        let path = dir.join(name);
        let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&path, text).unwrap();
        path
    }
}
