//! Why a connection to Kafka failed, in words a person can act on.
//!
//! Every command asks the broker for metadata before it does anything else (and `run` before it
//! creates an output folder). That probe uses a client whose [`KafkaContext`] records librdkafka's
//! log lines; when the probe fails, [`classify`] maps those lines (TLS handshake errors, SASL
//! errors, a listener that hangs up) to one [`Cause`] with advice. librdkafka reports an untrusted
//! CA and a host name mismatch with the same handshake error, so for that one the probe is
//! repeated without host name verification: if that connects, the name was the problem.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaRespErr;

use super::context::KafkaContext;
use super::error::KafkaError;
use super::settings::{base_config, ClientSettings};

/// What went wrong, as far as librdkafka's texts tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    AuthenticationFailed,
    UnsupportedMechanism,
    CertificateNotTrusted,
    HostnameMismatch,
    ClientCertificateRequired,
    PlaintextToTls,
    TlsToPlaintext,
    NotAuthorized,
}

/// A connection or setting that cannot work, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{what} (Kafka at {brokers}): {advice}{}", detail.as_ref().map(|d| format!(" [librdkafka: {d}]")).unwrap_or_default())]
pub struct ConnectError {
    pub brokers: String,
    pub cause: Option<Cause>,
    pub what: String,
    pub advice: String,
    /// The librdkafka text it was derived from, secrets masked.
    pub detail: Option<String>,
}

/// The first cause the texts show, most specific first.
pub fn classify<S: AsRef<str>>(texts: &[S]) -> Option<Cause> {
    let all: Vec<String> = texts.iter().map(|t| t.as_ref().to_ascii_lowercase()).collect();
    let any = |needles: &[&str]| all.iter().any(|t| needles.iter().any(|n| t.contains(n)));
    if any(&["authentication failed", "invalid credentials", "sasl authentication error", "saslauthenticate"])
    {
        Some(Cause::AuthenticationFailed)
    } else if any(&[
        "unsupported sasl mechanism",
        "no provider for sasl mechanism",
        "mechanism not supported",
    ]) {
        Some(Cause::UnsupportedMechanism)
    } else if any(&["hostname mismatch", "ip address mismatch"]) {
        Some(Cause::HostnameMismatch)
    } else if any(&[
        "client ssl authentication might be required",
        "certificate required",
        "alert bad certificate",
    ]) {
        Some(Cause::ClientCertificateRequired)
    } else if any(&[
        "certificate verify failed",
        "failed to verify broker certificate",
        "could not be verified",
    ]) {
        Some(Cause::CertificateNotTrusted)
    } else if any(&[
        "connecting to a plaintext broker listener",
        "wrong version number",
        "packet length too long",
    ]) {
        Some(Cause::TlsToPlaintext)
    } else if any(&["disconnected while requesting apiversion", "incorrect security.protocol"])
        || all.iter().any(|t| t.contains("disconnected") && t.contains("state apiversion_query"))
    {
        Some(Cause::PlaintextToTls)
    } else if any(&["authorization failed"]) {
        Some(Cause::NotAuthorized)
    } else {
        None
    }
}

/// The most telling recorded line for `cause` (or the newest error-looking one).
fn evidence(lines: &[String], cause: Option<Cause>) -> Option<String> {
    let pick = |l: &&String| match cause {
        Some(c) => classify(&[l.as_str()]) == Some(c),
        None => {
            let l = l.to_ascii_lowercase();
            l.contains("fail") || l.contains("error") || l.contains("refused") || l.contains("disconnect")
        }
    };
    lines.iter().rev().find(pick).map(|l| l.chars().take(400).collect())
}

fn advice(cause: Cause, settings: &ClientSettings, topic: Option<&str>) -> (String, String) {
    let mechanism = settings.get("sasl.mechanism").unwrap_or("GSSAPI (librdkafka's default)");
    let user = settings.get("sasl.username").unwrap_or("(none set)");
    let protocol = settings.get("security.protocol").unwrap_or("plaintext");
    match cause {
        Cause::AuthenticationFailed => (
            "SASL authentication failed".into(),
            format!(
                "the broker rejected user `{user}` with mechanism {mechanism}: check sasl.username and \
                 sasl.password in --kafka-config, and that the user exists for this mechanism \
                 (SCRAM-SHA-256 and SCRAM-SHA-512 credentials are separate)"
            ),
        ),
        Cause::UnsupportedMechanism => (
            format!("SASL mechanism {mechanism} is not available"),
            "use one the cluster offers and this build supports: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or \
             OAUTHBEARER (Kerberos/GSSAPI is not built in, see the README)"
                .into(),
        ),
        Cause::CertificateNotTrusted => (
            "the broker's TLS certificate is not trusted".into(),
            format!(
                "it is not signed by a CA this client trusts; set ssl.ca.location to the cluster's CA \
                 certificate (now: {})",
                settings.get("ssl.ca.location").unwrap_or("the system's CA store")
            ),
        ),
        Cause::HostnameMismatch => (
            "the broker's TLS certificate does not match the address".into(),
            format!(
                "the certificate is trusted but names another host than {}; connect with a name or IP \
                 the certificate lists (see its subject alternative names)",
                settings.brokers
            ),
        ),
        Cause::ClientCertificateRequired => (
            "the broker requires a client certificate (mutual TLS)".into(),
            "set ssl.certificate.location and ssl.key.location to a certificate the broker's CA signed"
                .into(),
        ),
        Cause::PlaintextToTls => (
            "the broker closed the connection without answering".into(),
            format!(
                "the listener probably expects TLS while this client speaks {protocol}; set \
                 security.protocol=SSL or SASL_SSL (and ssl.ca.location) in --kafka-config"
            ),
        ),
        Cause::TlsToPlaintext => (
            "the TLS handshake failed: the listener does not speak TLS".into(),
            format!(
                "this client uses security.protocol={protocol}; use PLAINTEXT or SASL_PLAINTEXT for \
                 this listener, or the cluster's TLS port"
            ),
        ),
        Cause::NotAuthorized => (
            format!("user `{user}` is not authorized to use topic `{}`", topic.unwrap_or("?")),
            "ask the cluster's administrators for Describe and Read (run) or Write (produce) ACLs on the \
             topic, and Read on the group `streamlake-*` for run"
                .into(),
        ),
    }
}

fn connect_error(
    settings: &ClientSettings,
    cause: Cause,
    topic: Option<&str>,
    detail: Option<String>,
) -> KafkaError {
    let (what, advice) = advice(cause, settings, topic);
    KafkaError::from(ConnectError {
        brokers: settings.brokers.clone(),
        cause: Some(cause),
        what,
        advice,
        detail,
    })
}

/// Explains a failure to create a client: a setting librdkafka rejects, a certificate or key
/// file it cannot load, a SASL mechanism it does not have.
pub fn creation_error(
    settings: &ClientSettings,
    doing: &str,
    error: rdkafka::error::KafkaError,
) -> KafkaError {
    let text = super::settings::redact_text(&error.to_string(), &settings.secrets());
    let lower = text.to_ascii_lowercase();
    let brokers = settings.brokers.clone();
    // "Unsupported SASL mechanism: X", "No provider for SASL mechanism X", and for an unknown
    // SCRAM variant "Unsupported hash function: SCRAM-SHA-1024".
    if lower.contains("sasl mechanism") || lower.contains("sasl.mechanism") || lower.contains("hash function")
    {
        let (what, mut advice) = advice(Cause::UnsupportedMechanism, settings, None);
        if settings.get("sasl.mechanism").is_some_and(|m| m.eq_ignore_ascii_case("GSSAPI")) {
            advice.push_str("; a build with rdkafka's `gssapi` feature adds it");
        }
        return KafkaError::from(ConnectError {
            brokers,
            cause: Some(Cause::UnsupportedMechanism),
            what,
            advice,
            detail: Some(text),
        });
    }
    for key in [
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.keystore.location",
        "ssl.crl.location",
    ] {
        if lower.contains(key) || (key == "ssl.key.location" && lower.contains("private key")) {
            if let Some(file) = settings.get(key) {
                let state = match std::fs::metadata(Path::new(file)) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
                    Err(e) => format!("cannot be read ({e})"),
                    Ok(_) => {
                        "could not be loaded (is it PEM, and does the key match the certificate?)".to_string()
                    }
                };
                return KafkaError::from(ConnectError {
                    brokers,
                    cause: None,
                    what: format!("{key} = {file} {state}"),
                    advice: format!("fix {key} in --kafka-config or --kafka-option"),
                    detail: Some(text),
                });
            }
        }
    }
    KafkaError::from(ConnectError {
        brokers,
        cause: None,
        what: format!("the Kafka client settings are not valid ({doing})"),
        advice: "check the key and value in --kafka-config / --kafka-option / --consumer-option; the \
                 settings are listed in librdkafka's CONFIGURATION.md"
            .into(),
        detail: Some(text),
    })
}

/// How long one metadata request may wait before the recorded lines are looked at again.
const ATTEMPT: Duration = Duration::from_millis(500);

/// How long a client that was hung up on during the protocol handshake keeps trying before that
/// counts as [`Cause::PlaintextToTls`]: a broker that is still starting can hang up once too.
const HANGUP_GRACE: Duration = Duration::from_secs(3);

/// Asks for metadata in short attempts until `timeout`, and gives up early once the recorded
/// lines show a cause that waiting cannot cure (a rejected password, an untrusted certificate).
/// Without that, every such mistake would cost the whole `--connect-timeout`.
fn fetch_watching(
    consumer: &BaseConsumer<KafkaContext>,
    ctx: &KafkaContext,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Metadata, rdkafka::error::KafkaError> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let error = match consumer.fetch_metadata(topic, left.min(ATTEMPT)) {
            Ok(meta) => return Ok(meta),
            Err(e) => e,
        };
        drain(consumer);
        let definite = match classify(&ctx.lines()) {
            None => false,
            Some(Cause::PlaintextToTls) => start.elapsed() >= HANGUP_GRACE,
            Some(_) => true,
        };
        if definite || start.elapsed() >= timeout {
            return Err(error);
        }
    }
}

/// Fetches metadata for `topic` (or all topics), bounded by `timeout`, explaining a failure:
/// an authentication, TLS or protocol problem by its cause, a silent broker as unreachable.
pub fn fetch_metadata(
    settings: &ClientSettings,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Metadata, KafkaError> {
    let ctx = KafkaContext::recording(settings);
    let consumer = probe_client(settings, &ctx, &[])?;
    let error = match fetch_watching(&consumer, &ctx, topic, timeout) {
        Ok(meta) => {
            let denied = meta.topics().iter().any(|t| {
                Some(t.name()) == topic
                    && t.error() == Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
            });
            if denied {
                return Err(connect_error(settings, Cause::NotAuthorized, topic, None));
            }
            return Ok(meta);
        }
        Err(e) => e,
    };
    // rdkafka queues librdkafka's log lines and errors on the client's main queue; serve them
    // into the recording context.
    drain(&consumer);
    drop(consumer);
    let lines = ctx.lines();
    let mut cause = classify(&lines);
    if cause == Some(Cause::CertificateNotTrusted) && hostname_checked(settings) {
        // Same handshake error for both: try once more without host name verification.
        let retry = KafkaContext::recording(settings);
        if let Ok(c) = probe_client(settings, &retry, &[("ssl.endpoint.identification.algorithm", "none")]) {
            let answered = fetch_watching(&c, &retry, topic, timeout.min(Duration::from_secs(10))).is_ok();
            drain(&c);
            if answered {
                cause = Some(Cause::HostnameMismatch);
            }
        }
    }
    match cause {
        Some(cause) => Err(connect_error(settings, cause, topic, evidence(&lines, Some(cause)))),
        None => {
            Err(KafkaError::Unreachable { brokers: settings.brokers.clone(), waited: timeout, source: error })
        }
    }
}

/// Serves what the client's main queue holds (log lines, errors) without waiting.
fn drain(consumer: &BaseConsumer<KafkaContext>) {
    for _ in 0..10_000 {
        if consumer.poll(Duration::ZERO).is_none() {
            break;
        }
    }
}

fn hostname_checked(settings: &ClientSettings) -> bool {
    settings.get("ssl.endpoint.identification.algorithm").is_none_or(|v| v.eq_ignore_ascii_case("https"))
}

/// A metadata-only client whose librdkafka lines `ctx` records, at info level unless the user
/// chose a log level.
fn probe_client(
    settings: &ClientSettings,
    ctx: &KafkaContext,
    extra: &[(&str, &str)],
) -> Result<BaseConsumer<KafkaContext>, KafkaError> {
    let mut config = base_config(settings);
    if settings.get("log_level").is_none() {
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Info);
    }
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
        .create_with_context(ctx.clone())
        .map_err(|e| creation_error(settings, "creating a metadata client", e))
}

/// Checks that librdkafka accepts the settings plus `extra` (e.g. `--consumer-option`) by creating
/// a client that is dropped at once, so a bad setting is reported before any work starts.
pub fn check_settings(
    settings: &ClientSettings,
    extra: &[(String, String)],
    what: &str,
) -> Result<(), KafkaError> {
    let mut config = base_config(settings);
    for (k, v) in extra {
        config.set(k, v);
    }
    let ctx = KafkaContext::recording(settings);
    config
        .create_with_context::<_, BaseConsumer<KafkaContext>>(ctx)
        .map(drop)
        .map_err(|e| creation_error(settings, what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_texts_map_to_causes() {
        let cases = [
            ("sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512", Cause::AuthenticationFailed),
            ("SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured", Cause::CertificateNotTrusted),
            ("Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?)", Cause::PlaintextToTls),
            ("FAIL [thrd:127.0.0.1:47159/bootstrap]: 127.0.0.1:47159/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 1ms in state APIVERSION_QUERY)", Cause::PlaintextToTls),
            ("Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 1ms in state APIVERSION_QUERY)", Cause::ClientCertificateRequired),
            ("SSL handshake failed: error:0A00010B:SSL routines::wrong version number: connecting to a PLAINTEXT broker listener?", Cause::TlsToPlaintext),
            ("SSL handshake failed: unexpected message: client SSL authentication might be required", Cause::ClientCertificateRequired),
            ("Unsupported SASL mechanism: broker's supported mechanisms: PLAIN,SCRAM-SHA-256", Cause::UnsupportedMechanism),
        ];
        for (text, cause) in cases {
            assert_eq!(classify(&[text]), Some(cause), "{text}");
        }
        assert_eq!(classify(&["Connect to ipv4#127.0.0.1:1 failed: Connection refused"]), None);
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let settings = ClientSettings {
            brokers: "127.0.0.1:1".into(),
            options: vec![
                ("security.protocol".into(), "SSL".into()),
                ("ssl.key.location".into(), "/nonexistent/client.key".into()),
                ("ssl.certificate.location".into(), "/nonexistent/client.pem".into()),
            ],
        };
        let e = check_settings(&settings, &[], "probing").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/client") && e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_bad_setting_is_reported_without_its_secret() {
        let settings = ClientSettings {
            brokers: "127.0.0.1:1".into(),
            options: vec![("sasl.password".into(), "hunter2".into()), ("no.such.setting".into(), "1".into())],
        };
        let e = check_settings(&settings, &[], "probing").unwrap_err().to_string();
        assert!(e.contains("no.such.setting") && !e.contains("hunter2"), "{e}");
    }
}
