//! Log setup: structured `tracing` lines on stderr, so stdout stays free for data (console sink,
//! reports) that people and scripts read.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` wins over the `-v` count.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "streamlake=info,warn",
        1 => "streamlake=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour only for people: log files and pipes get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
