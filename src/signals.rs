//! Graceful shutdown: SIGINT and SIGTERM set a flag that long-running loops poll.
//!
//! A second signal exits at once, so a stuck shutdown can always be interrupted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared "please stop" flag set by SIGINT/SIGTERM.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// Registers the handlers. The first signal sets the flag; a second one terminates the
    /// process with the conventional exit code 130.
    pub fn install() -> std::io::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))?;
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
        }
        Ok(Self { flag })
    }

    /// A flag no signal will set, for tests and embedded use.
    pub fn never() -> Self {
        Self::default()
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Asks every holder of this flag to stop.
    pub fn request(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }
}
