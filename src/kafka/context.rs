//! The client context every streamlake Kafka client gets: librdkafka's log lines and global
//! errors go to `tracing` with secrets masked, and a probe client can record them to explain a
//! failed connection (see [`super::diagnose`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

use super::settings::{redact_text, ClientSettings};

/// How many of the newest librdkafka lines a recording context keeps.
const KEPT_LINES: usize = 32;

/// Shared by the client's threads; cheap to clone.
#[derive(Clone, Default)]
pub struct KafkaContext {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    secrets: Vec<String>,
    /// `Some` for a probe: lines are kept here instead of logged.
    recorded: Option<Mutex<VecDeque<String>>>,
}

impl KafkaContext {
    /// A context that logs librdkafka's lines, masking the settings' secret values.
    pub fn new(settings: &ClientSettings) -> Self {
        KafkaContext { inner: Arc::new(Inner { secrets: settings.secrets(), recorded: None }) }
    }

    /// A context that keeps librdkafka's lines (masked) for [`KafkaContext::lines`] and logs
    /// them only at debug level: the probe turns them into one clear error instead.
    pub fn recording(settings: &ClientSettings) -> Self {
        KafkaContext {
            inner: Arc::new(Inner {
                secrets: settings.secrets(),
                recorded: Some(Mutex::new(VecDeque::new())),
            }),
        }
    }

    /// The recorded lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        match &self.inner.recorded {
            Some(lines) => lines.lock().map(|l| l.iter().cloned().collect()).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// `text` with the settings' secrets masked.
    pub fn redact(&self, text: &str) -> String {
        redact_text(text, &self.inner.secrets)
    }

    fn record(&self, line: &str) -> bool {
        let Some(lines) = &self.inner.recorded else { return false };
        if let Ok(mut lines) = lines.lock() {
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line.to_string());
        }
        true
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let line = self.redact(&format!("{fac} {log_message}"));
        if self.record(&line) {
            tracing::debug!(target: "librdkafka", "{line}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", "{line}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{line}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", "{line}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{line}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let line = self.redact(&format!("{error}: {reason}"));
        if !self.record(&line) {
            tracing::error!(target: "librdkafka", "{line}");
        }
    }
}

impl ConsumerContext for KafkaContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_lines_are_masked_and_bounded() {
        let settings =
            ClientSettings { brokers: "b".into(), options: vec![("sasl.password".into(), "s3cret".into())] };
        let ctx = KafkaContext::recording(&settings);
        for i in 0..40 {
            ctx.log(RDKafkaLogLevel::Error, "FAIL", &format!("attempt {i} with s3cret"));
        }
        let lines = ctx.lines();
        assert_eq!(lines.len(), KEPT_LINES);
        assert!(lines.iter().all(|l| !l.contains("s3cret") && l.contains("<redacted>")), "{lines:?}");
        assert!(lines.last().unwrap().contains("attempt 39"));
    }
}
