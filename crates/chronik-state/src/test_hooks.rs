//! Crash points for tests that must stop the process at one exact step.
//!
//! Compiled into debug builds only (the integration tests run those); in a
//! release build `crash_point` is empty. A test sets `CHRONIK_CRASH_AT` to
//! the name of a point, and the process exits there as a crash would:
//! without flushing, checkpointing or answering anyone, with status 86.

#[cfg(debug_assertions)]
pub fn crash_point(name: impl FnOnce() -> String) {
    if let Ok(wanted) = std::env::var("CHRONIK_CRASH_AT")
        && wanted == name()
    {
        eprintln!("crash point {wanted} reached; exiting as a crash would");
        std::process::exit(86);
    }
}

#[cfg(not(debug_assertions))]
pub fn crash_point(_name: impl FnOnce() -> String) {}
