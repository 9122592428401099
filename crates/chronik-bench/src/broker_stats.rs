//! CPU time and peak memory of the broker process, read from /proc.

use anyhow::Context;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BrokerUsage {
    /// User plus system CPU seconds the broker spent during the run.
    pub cpu_seconds: f64,
    /// The broker's peak resident set size so far (VmHWM).
    pub peak_rss_kib: u64,
}

/// Clock ticks per second for /proc/PID/stat; 100 on every Linux we run on.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("no process {pid}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').context("unexpected /proc stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_SEC)
}

pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("no process {pid}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc status")?;
    Ok(line.split_whitespace().nth(1).context("bad VmHWM line")?.parse()?)
}
