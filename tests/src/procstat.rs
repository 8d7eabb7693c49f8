//! Resident memory and CPU time of a process, read from /proc (Linux).

use anyhow::{Context, Result};

/// A process's resource use at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time, seconds.
    pub cpu_secs: f64,
}

/// Reads `/proc/<pid>/status` (VmRSS) and `/proc/<pid>/stat` (utime, stime).
pub fn read(pid: u32) -> Result<ProcStat> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("bad stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    // USER_HZ is 100 on every Linux we run on.
    Ok(ProcStat {
        rss_bytes: rss_kib * 1024,
        cpu_secs: ticks as f64 / 100.0,
    })
}
