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

/// Where a process's resident memory is, from `/proc/<pid>/smaps`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resident {
    /// Every mapping's `Rss`.
    pub total: u64,
    /// Pages of files (Envoy's binary, shared libraries): the part of Envoy's own code and
    /// data a configuration makes it touch.
    pub file: u64,
    /// Anonymous executable pages: code V8 generated (Wasm code, wrappers, builtins).
    pub jit: u64,
}

/// Where `pid`'s resident memory is.
pub fn resident(pid: u32) -> Result<Resident, String> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps"))
        .map_err(|e| format!("/proc/{pid}/smaps: {e}"))?;
    Ok(parse_smaps(&smaps))
}

/// Sum `/proc/<pid>/smaps` by kind of mapping.
pub fn parse_smaps(smaps: &str) -> Resident {
    let mut out = Resident::default();
    // The kind of the mapping whose fields follow: (backed by a file, executable).
    let mut mapping = (false, false);
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some(rss) = line.strip_prefix("Rss:") {
            let kib: u64 = rss
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            out.total += kib;
            match mapping {
                (true, _) => out.file += kib,
                (false, true) => out.jit += kib,
                (false, false) => {}
            }
        } else if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: `start-end perms offset dev inode [path]`; a path starting
            // with `/` is a file (`[heap]`, `[stack]` and unnamed ones are anonymous).
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            mapping = (path.starts_with('/'), perms.contains('x'));
        }
    }
    out
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
    #[test]
    fn smaps_split_into_file_jit_and_the_rest() {
        let smaps = "\
55b7039c5000-55b707b2b000 r-xp 00000000 08:01 1234    /opt/envoy/bin/envoy
Size:              67000 kB
Rss:               44912 kB
Anonymous:             0 kB
2e0c659e000-2e0c672c000 rwxp 00000000 00:00 0
Size:               1592 kB
Rss:                1320 kB
51ddfda00000-51de00000000 rw-p 00000000 00:00 0
Rss:               37748 kB
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                  [stack]
Rss:                 132 kB
VmFlags: rd wr mr mw me gd ac
";
        assert_eq!(
            parse_smaps(smaps),
            Resident {
                total: 44912 + 1320 + 37748 + 132,
                file: 44912,
                jit: 1320,
            }
        );
        let this = resident(std::process::id()).unwrap();
        assert!(
            this.total >= this.file + this.jit && this.file > 0,
            "{this:?}"
        );
    }
}
