//! Observability of `streamlake run`: what a person (or Prometheus) sees of a running job.
//!
//! ```text
//!  timely workers ──publish per poll batch / commit / closed window──▶ Telemetry (Arc)
//!                                                                         │ snapshot
//!        ┌────────────────────────────┬───────────────────────────────────┤
//!  GET /metrics (Prometheus text)   GET / (status page, HTML)     progress thread: a progress
//!  └── server: axum, own thread, current-thread tokio ──┘         line every trigger, samples,
//!                                                                  high-water marks (lag), bar
//! ```
//!
//! [`telemetry`] is the shared state and [`snapshot`] a copy of it; [`metrics`] and [`status`] render it; [`server`] serves
//! them; [`progress`] logs progress and keeps the throughput history and lag fresh; [`busy`]
//! measures per-worker busy time from timely's park events.

pub mod busy;
pub mod counters;
pub mod metrics;
pub mod progress;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod telemetry;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

pub use server::MetricsAddr;
pub use telemetry::Telemetry;

/// The default metrics port; process `p` of a cluster uses this plus `p`.
pub const DEFAULT_METRICS_PORT: u16 = 9464;

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(
        "cannot serve metrics and the status page on {addr}: {source}; pick another address with \
         --metrics-addr (port 0 picks a free one) or turn them off with --metrics-addr off"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the progress thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The default port of process `process` (at most 1023 by -p's range; the port saturates, as it
/// always did, rather than wrap).
fn default_metrics_port(process: usize) -> u16 {
    u16::try_from(process).map_or(u16::MAX, |p| DEFAULT_METRICS_PORT.saturating_add(p))
}

/// What runs beside the job; dropping it stops the server and the progress thread.
pub struct Observer {
    pub server: Option<server::Server>,
    _progress: progress::Progress,
}

/// Starts the server (unless `off`) and the progress thread.
///
/// `addr` is the `--metrics-addr` flag: when given, failing to listen there is an error; when
/// not, the default `127.0.0.1:9464+p` is tried and a taken port only costs a warning, so
/// several jobs on one machine (tests, a laptop) still run.
pub fn start(
    addr: Option<MetricsAddr>,
    process: usize,
    telemetry: Arc<Telemetry>,
    client: &crate::kafka::settings::ClientSettings,
) -> Result<Observer, ObserveError> {
    let (target, explicit) = match addr {
        Some(MetricsAddr::Off) => (None, true),
        Some(MetricsAddr::At(a)) => (Some(a), true),
        None => (Some(SocketAddr::from((Ipv4Addr::LOCALHOST, default_metrics_port(process)))), false),
    };
    let server = match target {
        None => None,
        Some(addr) => match server::start(addr, telemetry.clone()) {
            Ok(s) => {
                tracing::info!(addr = %s.addr, "metrics and status page listening");
                Some(s)
            }
            Err(source) if explicit => return Err(ObserveError::Bind { addr, source }),
            Err(e) => {
                tracing::warn!(
                    %addr, error = %e,
                    "metrics and status page off: the default port is taken (set --metrics-addr)"
                );
                None
            }
        },
    };
    let progress = progress::start(telemetry, client.clone()).map_err(ObserveError::Thread)?;
    Ok(Observer { server, _progress: progress })
}
