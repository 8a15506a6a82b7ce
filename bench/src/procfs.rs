//! What Linux says about a process: CPU time used and resident memory.

use std::fs;
use std::process::Command;
use std::sync::OnceLock;

/// Clock ticks per second, the unit of `utime` and `stime` in `/proc/<pid>/stat`.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User plus system CPU time of every thread of `pid` so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let ticks =
        parse_cpu_ticks(&stat).ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    Ok(ticks as f64 / clock_ticks())
}

/// `utime + stime` from a `/proc/<pid>/stat` line.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces; fields after it
    // start at field 3 (state), so utime (14) and stime (15) are at 11 and 12 from there.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    parse_rss_kib(&status).ok_or_else(|| format!("/proc/{pid}/status: no VmRSS"))
}

/// `VmRSS` from `/proc/<pid>/status`, in KiB.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Pin every thread of `pid` to one core with `taskset`.
pub fn pin(pid: u32, core: usize) -> Result<(), String> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run taskset: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset -p -c {core} {pid} failed: {status}"))
    }
}

/// The load average over the last minute.
pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_after_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (envoy (main) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 567 0 0 20 0 12 0 99 0";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_cpu_ticks("4242 (envoy) S 1"), None);
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\tenvoy\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t12\n";
        assert_eq!(parse_rss_kib(status), Some(51234));
        assert_eq!(parse_rss_kib("Name:\tenvoy\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(rss_kib(pid).unwrap() > 0);
    }
}
