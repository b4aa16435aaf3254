//! Resource usage read from Linux `/proc`: peak RSS (`VmHWM`) and CPU time of the processes we
//! watch, and of the whole machine, so a report can say who was busy.

use std::time::Instant;

use serde::Serialize;

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`; 100 on every Linux we target).
const TICKS_PER_SEC: f64 = 100.0;

/// A process (or group of processes) whose usage the report shows.
#[derive(Clone, Debug)]
pub(crate) struct Watched {
    /// Its row label, e.g. `worker-1`.
    pub(crate) name: String,
    pub(crate) target: Target,
}

/// How to find a watched process.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// One process by id.
    Pid(u32),
    /// The benchmark itself.
    Myself,
    /// Every process whose `comm` is this (Postgres backends, `nats-server`); CPU only.
    Comm(&'static str),
}

/// CPU counters at one instant.
#[derive(Clone, Debug)]
pub(crate) struct CpuSnapshot {
    at: Instant,
    /// (busy, total) ticks over all cores.
    machine: (u64, u64),
    /// Ticks per watched process, in the order of the `Watched` list.
    ticks: Vec<Option<u64>>,
}

/// One row of the processes table.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProcessUsage {
    pub(crate) name: String,
    /// `VmHWM` in MiB, read at the end of the scenario.
    pub(crate) peak_rss_mib: Option<f64>,
    /// Average CPU during the scenario; 100 means one full core.
    pub(crate) cpu_pct: Option<f64>,
}

/// Reads the CPU counters of `watched` and of the machine.
pub(crate) fn snapshot(watched: &[Watched]) -> CpuSnapshot {
    CpuSnapshot {
        at: Instant::now(),
        machine: machine_ticks().unwrap_or_default(),
        ticks: watched.iter().map(|w| cpu_ticks(&w.target)).collect(),
    }
}

/// The processes table between two snapshots, ending with a row for the CPU nobody watched
/// (the kernel's network work, other processes), plus the machine's busy share in percent of
/// all cores.
pub(crate) fn usage(
    watched: &[Watched],
    start: &CpuSnapshot,
    end: &CpuSnapshot,
) -> (Vec<ProcessUsage>, Option<f64>) {
    let wall = end.at.duration_since(start.at).as_secs_f64();
    let pct = |ticks: u64| (wall > 0.0).then(|| ticks as f64 / TICKS_PER_SEC / wall * 100.0);
    let mut rows: Vec<ProcessUsage> = watched
        .iter()
        .zip(start.ticks.iter().zip(&end.ticks))
        .map(|(w, (a, b))| ProcessUsage {
            name: w.name.clone(),
            peak_rss_mib: peak_rss_mib(&w.target),
            cpu_pct: a.zip(*b).and_then(|(a, b)| pct(b.saturating_sub(a))),
        })
        .collect();
    let busy = end.machine.0.saturating_sub(start.machine.0);
    let total = end.machine.1.saturating_sub(start.machine.1);
    let seen: f64 = rows.iter().filter_map(|r| r.cpu_pct).sum();
    rows.push(ProcessUsage {
        name: "everything else (kernel, other processes)".to_owned(),
        peak_rss_mib: None,
        cpu_pct: pct(busy).map(|all| (all - seen).max(0.0)),
    });
    let machine = (total > 0).then(|| busy as f64 / total as f64 * 100.0);
    (rows, machine)
}

/// `VmHWM` of a process, in MiB.
fn peak_rss_mib(target: &Target) -> Option<f64> {
    status_mib(target, "VmHWM:")
}

/// `VmRSS` of a process now, in MiB.
pub(crate) fn rss_mib(target: &Target) -> Option<f64> {
    status_mib(target, "VmRSS:")
}

/// A `kB` line of `/proc/<pid>/status`, in MiB.
fn status_mib(target: &Target, field: &str) -> Option<f64> {
    let path = match target {
        Target::Pid(pid) => format!("/proc/{pid}/status"),
        Target::Myself => "/proc/self/status".to_owned(),
        Target::Comm(_) => return None,
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn cpu_ticks(target: &Target) -> Option<u64> {
    match target {
        Target::Pid(pid) => stat_ticks(&format!("/proc/{pid}/stat")),
        Target::Myself => stat_ticks("/proc/self/stat"),
        Target::Comm(comm) => {
            let total = std::fs::read_dir("/proc")
                .ok()?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == *comm)
                })
                .filter_map(|e| stat_ticks(&e.path().join("stat").to_string_lossy()))
                .sum();
            Some(total)
        }
    }
}

/// utime + stime of one `/proc/<pid>/stat`.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat_ticks(&stat)
}

/// The `comm` field may contain spaces and parentheses: fields are counted after the last `)`.
/// There, index 0 is field 3 (`state`), so utime (field 14) and stime (15) are at 11 and 12.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) from the `cpu` line of `/proc/stat`: busy is user, nice, system, irq and
/// softirq; idle, iowait and steal (time the hypervisor gave to others) are not.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_ticks(stat.lines().next()?)
}

fn parse_machine_ticks(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    let total: u64 = values.iter().sum();
    let busy = [0, 1, 2, 5, 6].iter().filter_map(|&i| values.get(i)).sum();
    Some((busy, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_counted_after_the_command_name() {
        let stat = "42 (tokio (rt) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1";
        assert_eq!(parse_stat_ticks(stat), Some(325));
    }

    #[test]
    fn machine_ticks_leave_out_idle_iowait_and_steal() {
        let line = "cpu  100 5 50 800 20 1 2 3 0 0";
        assert_eq!(parse_machine_ticks(line), Some((158, 981)));
        assert_eq!(parse_machine_ticks("cpu0 1 2 3 4 5 6 7 8"), None);
    }

    #[test]
    fn the_benchmark_can_read_its_own_usage() {
        assert!(peak_rss_mib(&Target::Myself).is_some_and(|m| m > 0.0));
        assert!(rss_mib(&Target::Myself).is_some_and(|m| m > 0.0));
        assert!(cpu_ticks(&Target::Myself).is_some());
    }
}
