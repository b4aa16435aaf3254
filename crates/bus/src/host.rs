//! The host a process runs on, as its heartbeats report it: CPU, memory, disk and network use,
//! read from `/proc` (and `statvfs` of `/`) between two beats. On a system without `/proc`
//! the figures are absent.

use std::time::Instant;

use agentyard_core::heartbeat::HostStats;

/// Reads the host's counters; each [`Sampler::sample`] reports the rates since the one before.
#[derive(Debug, Default)]
pub struct Sampler {
    last: Option<Counters>,
}

#[derive(Clone, Copy, Debug)]
struct Counters {
    at: Instant,
    cpu_busy: u64,
    cpu_total: u64,
    net_rx: u64,
    net_tx: u64,
}

impl Sampler {
    /// The host's figures now; CPU and network are rates since the previous call (absent on
    /// the first).
    pub fn sample(&mut self) -> Option<HostStats> {
        let now = read_counters()?;
        let prev = self.last.replace(now);
        let (mem_total, mem_available) = read_memory()?;
        let mut stats = HostStats {
            cpu_pct: None,
            mem_pct: round2(100.0 * (1.0 - mem_available as f64 / mem_total.max(1) as f64)),
            disk_pct: disk_used_pct(),
            net_rx_bytes_per_s: None,
            net_tx_bytes_per_s: None,
            load1: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok())),
        };
        if let Some(p) = prev {
            let total = now.cpu_total.saturating_sub(p.cpu_total);
            let busy = now.cpu_busy.saturating_sub(p.cpu_busy);
            if total > 0 {
                stats.cpu_pct = Some(round2(100.0 * busy as f64 / total as f64));
            }
            let secs = now.at.duration_since(p.at).as_secs_f64();
            if secs > 0.0 {
                stats.net_rx_bytes_per_s =
                    Some(round2(now.net_rx.saturating_sub(p.net_rx) as f64 / secs));
                stats.net_tx_bytes_per_s =
                    Some(round2(now.net_tx.saturating_sub(p.net_tx) as f64 / secs));
            }
        }
        Some(stats)
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn read_counters() -> Option<Counters> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let (cpu_busy, cpu_total) = cpu_times(stat.lines().next()?)?;
    let (net_rx, net_tx) =
        std::fs::read_to_string("/proc/net/dev").ok().map_or((0, 0), |d| net_bytes(&d));
    Some(Counters { at: Instant::now(), cpu_busy, cpu_total, net_rx, net_tx })
}

/// (busy, total) jiffies of the `cpu` line of `/proc/stat`: idle and iowait are not busy.
fn cpu_times(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest times are within user and nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Bytes received and sent by every interface but loopback, from `/proc/net/dev`.
fn net_bytes(dev: &str) -> (u64, u64) {
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        .filter_map(|(_, rest)| {
            let v: Vec<u64> = rest.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            Some((*v.first()?, *v.get(8)?))
        })
        .fold((0, 0), |(rx, tx), (r, t)| (rx + r, tx + t))
}

/// (total, available) kB from `/proc/meminfo`.
fn read_memory() -> Option<(u64, u64)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

fn disk_used_pct() -> Option<f64> {
    let s = nix::sys::statvfs::statvfs("/").ok()?;
    let total = s.blocks() as f64;
    // Used as `df` counts it: of the blocks not reserved for root.
    let used = total - s.blocks_free() as f64;
    let usable = used + s.blocks_available() as f64;
    (usable > 0.0).then(|| round2(100.0 * used / usable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_parse() {
        assert_eq!(cpu_times("cpu  100 0 50 800 50 0 0 0 0 0"), Some((150, 1000)));
        assert_eq!(cpu_times("cpu0 1 2 3 4"), None);
        let dev = "Inter-|   Receive\n face |bytes\n    lo:   500 1 0 0 0 0 0 0 500 1 0 0 0 0 0 0\n  \
                   eth0: 2000 5 0 0 0 0 0 0 300 3 0 0 0 0 0 0\n";
        assert_eq!(net_bytes(dev), (2000, 300));
    }

    #[test]
    fn a_second_sample_has_rates() {
        let mut s = Sampler::default();
        let first = s.sample().expect("this host has /proc");
        assert!(first.cpu_pct.is_none());
        assert!(first.mem_pct > 0.0 && first.mem_pct < 100.0);
        assert!(first.disk_pct.is_some_and(|d| d > 0.0 && d <= 100.0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let second = s.sample().unwrap();
        assert!(second.cpu_pct.is_some_and(|c| (0.0..=100.0).contains(&c)));
        assert!(second.net_rx_bytes_per_s.is_some());
    }
}
