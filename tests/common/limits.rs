//! Resource limits for a child process, as a shell's `ulimit` sets them: tests put them on the
//! `streamlake run` command so that the job meets the limits of a user's machine, whatever the
//! limits of the machine that runs the tests.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// `ulimit -n n` for the child: its soft and its hard limit of open file descriptors become `n`
/// (the hard limit too, so the program cannot raise the soft one again).
pub fn limit_open_files(cmd: &mut Command, n: u64) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec; it only calls setrlimit(2),
    // which is async-signal-safe, and allocates nothing (the error is built from errno).
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

/// The (soft, hard) open-files limit of a running process, from `/proc/<pid>/limits`, to show
/// that a limit set with [`limit_open_files`] is the one the process runs under.
pub fn open_files_limit_of(pid: u32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/limits: {e}"));
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no `Max open files` in /proc/{pid}/limits:\n{text}"));
    let mut fields = line.trim_start_matches("Max open files").split_whitespace();
    let soft = fields.next().unwrap_or_default().to_string();
    let hard = fields.next().unwrap_or_default().to_string();
    (soft, hard)
}
