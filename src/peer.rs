//! What a process of a multi-process cluster does when a peer process dies.
//!
//! Timely's TCP layer has no error path for a lost peer: its network threads panic ("timely
//! communication error: … socket closed"), and the panic spreads to the workers ("MergeQueue
//! poisoned") and to the main thread. The process does stop, so the cluster never hangs
//! half-alive, but it stops with a screen of backtraces. This hook turns the first such panic into
//! one clear error and exit code [`EXIT_PEER_LOST`], without running any more of this process:
//! nothing is lost by that, because every commit is a fsync + rename, and a restart (with any
//! worker count) resumes from the checkpoint exactly once.

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code of a process whose cluster lost a peer.
pub const EXIT_PEER_LOST: i32 = 3;

/// Installs the hook; other panics still get the default report.
pub fn install_hook(process: usize, processes: usize) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let from_timely_network = info.location().is_some_and(|l| l.file().contains("timely_communication"));
        if from_timely_network || message.contains("timely communication error") {
            if !REPORTED.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "Error: process {process} of {processes} lost its connection to another process of the \
                     cluster ({message}). A timely cluster cannot continue without every process, so this one \
                     stops too. Nothing committed is lost: restart all processes (any -w/-n) and the run \
                     resumes from its checkpoint exactly once"
                );
            }
            std::process::exit(EXIT_PEER_LOST);
        }
        default(info);
    }));
}
