//! glibc's malloc hands freed memory back to the kernel eagerly: a buffer
//! over 128 KiB is its own mapping, unmapped when freed, and an arena's
//! free top over twice that is trimmed. Every produce request copies its
//! batches into a fresh buffer of up to a MiB (the Raft proposal), so each
//! one faulted its pages in anew: a fifth of a single node's CPU under
//! produce (docs/PERFORMANCE.md, "Fewer copies and page faults on the
//! write path"). With buffers up to 32 MiB kept in the arenas, and up to
//! 128 MiB free at an arena's top before it is trimmed, the next proposal
//! reuses the last one's pages.

/// Buffers up to this size come from the arenas, not their own mappings
/// (glibc's own ceiling for its adaptive threshold).
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory an arena keeps at its top before returning it.
const TRIM_THRESHOLD: i32 = 128 << 20;

/// Sets the thresholds; call before any other thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory_for_reuse() {
    // SAFETY: mallopt only sets two of malloc's parameters, and no other
    // thread allocates yet.
    let set = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    };
    if !set {
        eprintln!("warning: cannot set malloc's thresholds; produce will cost more CPU");
    }
}

/// Other allocators keep their own policies.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory_for_reuse() {}
