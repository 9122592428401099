//! Fail-stop: what a node does when its disk fails it.
//!
//! A write or fsync that fails leaves the node unsure what its files hold
//! (after a failed fsync the page cache can no longer be trusted, so the
//! fsync is never retried). Going on would risk acknowledging what is not
//! durable; stopping one thread would leave a process that accepts
//! connections and answers nothing. So the whole process exits, with a
//! message that says why, and a restart recovers from what is on disk.

use std::fmt::Display;

/// The exit status of a node stopped by an I/O error (sysexits' EX_IOERR).
pub const IO_ERROR_EXIT_CODE: i32 = 74;

/// Logs `what` failed with `error` and ends the process.
pub fn fail_stop(what: &str, error: &dyn Display) -> ! {
    tracing::error!("{what}: {error}; stopping the node (fail-stop), a restart recovers from the disk");
    eprintln!("fatal: {what}: {error}; stopping the node, a restart recovers from the disk");
    std::process::exit(IO_ERROR_EXIT_CODE)
}
