//! Client settings shared by every Kafka client a command creates: where the brokers are and the
//! librdkafka settings a production cluster needs (TLS, SASL), from one place.
//!
//! ```text
//!  --kafka-config FILE (KAFKA_CONFIG_FILE)   key=value lines, as Kafka's own tools read them
//!  --kafka-option KEY=VALUE ...              override keys of the file
//!  --brokers / KAFKA_BOOTSTRAP_SERVERS       win over the file's bootstrap.servers
//!        └──────────────▶ ClientSettings ──▶ base_config() ──▶ admin, producer, consumer, offsets
//! ```
//!
//! Settings that exactly-once depends on (the consumer's group and offset handling, the
//! producer's idempotence) are refused here, wherever they come from, so a properties file copied
//! from another application cannot silently change them. Values of secret keys never leave this
//! module unredacted: [`Redacted`] prints them as `<redacted>` and [`redact_text`] masks them
//! in any text quoted from librdkafka.

use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;

/// Where `scripts/kafka.sh` records the address of the broker it started.
pub const LOCAL_ADDRESS_FILE: &str = ".kafka/address";
/// Kafka's usual local address, the last resort.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// Consumer settings streamlake owns: offsets live in the checkpoint, never in the group, and an
/// out-of-range position must be reported, not silently reset.
pub const RESERVED_CONSUMER_OPTIONS: &[&str] =
    &["group.id", "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset", "isolation.level"];

/// The validated settings of every client of one command.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// librdkafka settings from the file and `--kafka-option`, in order; never `bootstrap.servers`.
    pub options: Vec<(String, String)>,
}

/// Secrets must not reach a `{:?}` in a log line either.
impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientSettings {{ brokers: {:?}, options: [{}] }}", self.brokers, Redacted(&self.options))
    }
}

/// Errors in the client settings, each naming where the setting came from.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "cannot read the Kafka client properties file {path} (--kafka-config / KAFKA_CONFIG_FILE): {source}"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {reason}; write one `key=value` per line (`#` or `!` starts a comment)")]
    Syntax { path: PathBuf, line: usize, reason: String },
    #[error("{origin}: `{text}` is not KEY=VALUE, e.g. security.protocol=SASL_SSL")]
    Option { origin: String, text: String },
    #[error(
        "{origin}: `{key}` is set by streamlake and cannot be overridden: the checkpoint, not the consumer \
         group, tracks offsets (exactly once depends on it); remove it from the settings"
    )]
    ReservedConsumer { origin: String, key: String },
    #[error(
        "{origin}: `{key}={value}` would turn off the producer's idempotence, so a retry inside the client \
         could write an event twice; remove it (streamlake sets enable.idempotence=true and acks=all)"
    )]
    BreaksIdempotence { origin: String, key: String, value: String },
}

/// Parses `KEY=VALUE` (both sides trimmed, neither empty), for `--kafka-option` and
/// `--consumer-option`. Whether the key is allowed is checked later, naming the flag.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{}` is not KEY=VALUE, e.g. security.protocol=SASL_SSL", shown_line(s)))
}

/// Reads a properties file in the subset of `java.util.Properties` that Kafka's client files use:
/// `key=value` lines, `#` and `!` comments, blank lines, whitespace trimmed. Each setting comes
/// with its line number.
pub fn read_properties(path: &Path) -> Result<Vec<PropertyLine>, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| SettingsError::Read { path: path.to_path_buf(), source })?;
    parse_properties(&text).map_err(|(line, reason)| SettingsError::Syntax {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

/// One setting of a properties file: `(line number, key, value)`.
pub type PropertyLine = (usize, String, String);

/// The parser behind [`read_properties`]; an error is `(line number, reason)`.
pub fn parse_properties(text: &str) -> Result<Vec<PropertyLine>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let n = i + 1;
        if line.ends_with('\\') {
            return Err((n, "line continuations (a trailing `\\`) are not supported".into()));
        }
        let Some((key, value)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) else {
            let hint = if line.contains(':') { " (`key: value` is not supported, use `=`)" } else { "" };
            return Err((n, format!("`{}` has no `=`{hint}", shown_line(line))));
        };
        if key.is_empty() {
            return Err((n, "the key before `=` is empty".into()));
        }
        if key.contains(char::is_whitespace) {
            return Err((n, format!("the key `{key}` contains a space")));
        }
        if value.is_empty() {
            return Err((n, format!("`{key}` has no value")));
        }
        out.push((n, key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// A line quoted in an error: only its first word when it may hold a secret.
fn shown_line(line: &str) -> String {
    if is_secret_key(line) {
        let first = line.split(|c: char| c.is_whitespace() || c == '=' || c == ':').next().unwrap_or("");
        format!("{first} <redacted>")
    } else {
        line.chars().take(80).collect()
    }
}

impl ClientSettings {
    /// Settings for a broker address alone (tests, tools).
    pub fn plain(brokers: &str) -> Self {
        ClientSettings { brokers: brokers.to_string(), options: Vec::new() }
    }

    /// Merges the command line into validated settings: the file's lines, then `--kafka-option`
    /// (a key given twice keeps the last value), then the bootstrap servers from the flag or
    /// variable, else the settings' `bootstrap.servers`, else the local broker's address file,
    /// else Kafka's default port on loopback.
    pub fn from_cli(
        brokers: Option<&str>,
        file: Option<&Path>,
        options: &[(String, String)],
    ) -> Result<Self, SettingsError> {
        let mut merged: Vec<(String, String)> = Vec::new();
        let mut origins: Vec<String> = Vec::new();
        let mut add = |key: &str, value: &str, origin: String| {
            let key = canonical(key);
            match merged.iter().position(|(k, _)| *k == key) {
                Some(i) => {
                    merged[i].1 = value.to_string();
                    origins[i] = origin;
                }
                None => {
                    merged.push((key.to_string(), value.to_string()));
                    origins.push(origin);
                }
            }
        };
        if let Some(path) = file {
            for (line, key, value) in read_properties(path)? {
                add(&key, &value, format!("{}, line {line}", path.display()));
            }
        }
        for (key, value) in options {
            add(key, value, format!("--kafka-option {key}"));
        }
        for ((key, value), origin) in merged.iter().zip(&origins) {
            check_allowed(key, value, origin)?;
        }
        let from_settings =
            merged.iter().position(|(k, _)| k == "bootstrap.servers").map(|i| merged.remove(i).1);
        let brokers = brokers
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(String::from)
            .or(from_settings)
            .unwrap_or_else(local_brokers);
        Ok(ClientSettings { brokers, options: merged })
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The values of secret keys, to mask in quoted texts.
    pub fn secrets(&self) -> Vec<String> {
        self.options.iter().filter(|(k, _)| is_secret_key(k)).map(|(_, v)| v.clone()).collect()
    }

    /// The settings as one line for the log: brokers and every option, secrets redacted.
    pub fn redacted(&self) -> String {
        if self.options.is_empty() {
            format!("bootstrap.servers={}", self.brokers)
        } else {
            format!("bootstrap.servers={}, {}", self.brokers, Redacted(&self.options))
        }
    }
}

/// librdkafka's aliases, so that a reserved key cannot come in under another name.
fn canonical(key: &str) -> &str {
    match key {
        "metadata.broker.list" => "bootstrap.servers",
        "sasl.mechanisms" => "sasl.mechanism",
        other => other,
    }
}

/// Refuses the settings exactly-once depends on. They apply to every command alike (one file
/// serves them all): consumer settings are refused for `produce` too, producer ones for `run`.
fn check_allowed(key: &str, value: &str, origin: &str) -> Result<(), SettingsError> {
    if RESERVED_CONSUMER_OPTIONS.contains(&key) {
        return Err(SettingsError::ReservedConsumer { origin: origin.to_string(), key: key.to_string() });
    }
    let breaks = match key {
        "enable.idempotence" => !value.eq_ignore_ascii_case("true"),
        "acks" | "request.required.acks" => !(value == "all" || value == "-1"),
        // A transactional producer needs calls streamlake does not make: every send would fail.
        "transactional.id" => true,
        _ => false,
    };
    if breaks {
        return Err(SettingsError::BreaksIdempotence {
            origin: origin.to_string(),
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    Ok(())
}

/// The local broker's address (from `scripts/kafka.sh`), else Kafka's default port on loopback.
fn local_brokers() -> String {
    std::fs::read_to_string(Path::new(LOCAL_ADDRESS_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_BROKERS.to_string())
}

/// Whether a setting's value is a secret: passwords, client secrets, private keys and
/// librdkafka's OAUTHBEARER config (which may carry a client secret).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "passphrase", "private.key", "jaas.config"].iter().any(|s| key.contains(s))
        || ["ssl.key.pem", "ssl_key", "sasl.oauthbearer.config"].iter().any(|k| key.starts_with(k))
}

/// `key=value, key=value` with secret values shown as `<redacted>`.
pub struct Redacted<'a>(pub &'a [(String, String)]);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_secret_key(key) {
                write!(f, "{key}=<redacted>")?;
            } else {
                write!(f, "{key}={value}")?;
            }
        }
        Ok(())
    }
}

/// `text` with every occurrence of a secret value replaced by `<redacted>`.
pub fn redact_text(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "<redacted>");
        }
    }
    out
}

/// The settings every client gets: streamlake's defaults (short socket timeouts so an unreachable
/// broker is reported instead of retried silently for minutes), then the user's settings, then
/// the bootstrap servers.
pub fn base_config(settings: &ClientSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("client.id", "streamlake")
        .set("socket.timeout.ms", "10000")
        // Only the configured brokers' IPv4 addresses: never guess other ones.
        .set("broker.address.family", "v4");
    // rdkafka sets the client's log level from this, not from the `log_level` setting.
    use rdkafka::config::RDKafkaLogLevel as L;
    let level = match settings.get("log_level").and_then(|l| l.parse::<i32>().ok()).unwrap_or(3) {
        i32::MIN..=3 => L::Error,
        4 => L::Warning,
        5 => L::Notice,
        6 => L::Info,
        _ => L::Debug,
    };
    config.set_log_level(level);
    for (key, value) in &settings.options {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &settings.brokers);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn properties_subset_of_java() {
        let text = "# a comment\n! another\n\n  security.protocol = SASL_SSL  \nsasl.password=a=b\n";
        assert_eq!(
            parse_properties(text).unwrap(),
            vec![
                (4, "security.protocol".into(), "SASL_SSL".into()),
                (5, "sasl.password".into(), "a=b".into())
            ]
        );
        let (line, reason) = parse_properties("a=1\n\nsasl.mechanism: PLAIN\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(reason.contains("`key: value` is not supported"), "{reason}");
        assert_eq!(parse_properties("a=\n").unwrap_err().0, 1);
        assert_eq!(parse_properties("x=1\n=2").unwrap_err().0, 2);
        assert!(parse_properties("a=1 \\\n").unwrap_err().1.contains("continuation"));
        // A line that may hold a password is not quoted whole.
        let (_, reason) = parse_properties("sasl.password hunter2\n").unwrap_err();
        assert!(!reason.contains("hunter2"), "{reason}");
    }

    #[test]
    fn file_then_options_then_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        std::fs::write(&file, "bootstrap.servers=file:9093\nsasl.mechanism=PLAIN\nsasl.password=pw\n")
            .unwrap();
        let s =
            ClientSettings::from_cli(None, Some(&file), &[kv("sasl.mechanisms", "SCRAM-SHA-512")]).unwrap();
        assert_eq!(s.brokers, "file:9093");
        assert_eq!(s.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(s.options.len(), 2, "{s:?}");
        let s = ClientSettings::from_cli(Some("flag:9092"), Some(&file), &[]).unwrap();
        assert_eq!(s.brokers, "flag:9092");
        assert!(s.redacted().contains("sasl.password=<redacted>"));
        assert!(!format!("{s:?}").contains("pw,") && !s.redacted().contains("=pw"));
    }

    #[test]
    fn reserved_settings_are_refused_naming_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.properties");
        std::fs::write(&file, "# x\nsecurity.protocol=SSL\n\ngroup.id=theirs\n").unwrap();
        let e = ClientSettings::from_cli(None, Some(&file), &[]).unwrap_err().to_string();
        assert!(e.contains("c.properties, line 4") && e.contains("`group.id`"), "{e}");
        let e = ClientSettings::from_cli(None, None, &[kv("enable.idempotence", "false")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--kafka-option enable.idempotence") && e.contains("idempotence"), "{e}");
        assert!(ClientSettings::from_cli(None, None, &[kv("acks", "1")]).is_err());
        assert!(ClientSettings::from_cli(None, None, &[kv("acks", "all")]).is_ok());
        let e =
            ClientSettings::from_cli(None, Some(&dir.path().join("missing")), &[]).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("--kafka-config"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
            "some.future.secret.thing",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        assert!(!is_secret_key("sasl.username") && !is_secret_key("ssl.key.location"));
        let opts = vec![kv("sasl.username", "me"), kv("sasl.password", "pw")];
        assert_eq!(Redacted(&opts).to_string(), "sasl.username=me, sasl.password=<redacted>");
        assert_eq!(redact_text("bad pw here", &["pw".into()]), "bad <redacted> here");
    }

    #[test]
    fn user_settings_override_defaults_but_not_the_brokers() {
        let s = ClientSettings {
            brokers: "b:1".into(),
            options: vec![kv("socket.timeout.ms", "30000"), kv("security.protocol", "SSL")],
        };
        let c = base_config(&s);
        assert_eq!(c.get("socket.timeout.ms"), Some("30000"));
        assert_eq!(c.get("security.protocol"), Some("SSL"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:1"));
    }
}
