//! The HTTP endpoint: axum on a current-thread tokio runtime in a thread of its own, so serving
//! a page never takes time from a timely worker. Routes: `/metrics` (Prometheus text) and `/`
//! (the status page).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::http::header;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

use super::telemetry::Telemetry;
use super::{metrics, status};

/// Where to serve, from `--metrics-addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddr {
    Off,
    At(SocketAddr),
}

/// Parses `host:port` (port 0 picks a free port) or `off`.
pub fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    let s = s.trim();
    if ["off", "none", "false", "disabled"].iter().any(|o| s.eq_ignore_ascii_case(o)) {
        return Ok(MetricsAddr::Off);
    }
    s.parse::<SocketAddr>().map(MetricsAddr::At).map_err(|_| {
        format!("`{s}` is not an address: give host:port such as 127.0.0.1:9464 (port 0 picks one), or `off`")
    })
}

/// A running server; dropping it stops the server and joins its thread.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `addr` (so a taken port is reported to the caller at once) and serves on a new thread.
pub fn start(addr: SocketAddr, telemetry: Arc<Telemetry>) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("streamlake-http".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "metrics and status page disabled: cannot start the HTTP runtime");
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics and status page disabled");
                    return;
                }
            };
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router(telemetry)).await {
                    tracing::warn!(error = %e, "the metrics and status page server stopped");
                }
            });
            // Returning drops the runtime, and with it the server task and its connections.
            let _ = stopped.await;
        });
    })?;
    Ok(Server { addr: bound, stop: Some(stop), thread: Some(thread) })
}

fn router(telemetry: Arc<Telemetry>) -> Router {
    let registry = Arc::new(metrics::registry(telemetry.clone()));
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(&registry)) }
            }),
        )
        .route(
            "/",
            get(move || {
                let telemetry = telemetry.clone();
                async move {
                    let snapshot = telemetry.snapshot();
                    let reports =
                        status::read_reports(&snapshot.info.output.join(crate::validate::REPORTS_DIR));
                    Html(status::render(&snapshot, &reports))
                }
            }),
        )
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_addresses() {
        assert_eq!(parse_metrics_addr("off").unwrap(), MetricsAddr::Off);
        assert_eq!(
            parse_metrics_addr("127.0.0.1:0").unwrap(),
            MetricsAddr::At("127.0.0.1:0".parse().unwrap())
        );
        assert!(parse_metrics_addr("localhost").is_err());
    }
}
