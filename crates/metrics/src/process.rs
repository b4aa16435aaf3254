//! The standard process metrics, read from `/proc` at scrape time (Linux; elsewhere nothing is
//! written).

use crate::registry::{header, sample};

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux ABI.
const TICKS: f64 = 100.0;

pub(crate) fn encode(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    if let (Some(utime), Some(stime)) = (num(14), num(15)) {
        let name = "process_cpu_seconds_total";
        header(out, name, "Total user and system CPU time spent in seconds.", "counter");
        sample(out, name, "", "", None, (utime + stime) / TICKS);
    }
    if let Some(vsize) = num(23) {
        let name = "process_virtual_memory_bytes";
        header(out, name, "Virtual memory size in bytes.", "gauge");
        sample(out, name, "", "", None, vsize);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    if let Some(kb) = rss_kb {
        let name = "process_resident_memory_bytes";
        header(out, name, "Resident memory size in bytes.", "gauge");
        sample(out, name, "", "", None, kb * 1024.0);
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, num(22)) {
        let name = "process_start_time_seconds";
        header(out, name, "Start time of the process since unix epoch in seconds.", "gauge");
        sample(out, name, "", "", None, boot + start / TICKS);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let name = "process_open_fds";
        header(out, name, "Number of open file descriptors.", "gauge");
        sample(out, name, "", "", None, fds.count() as f64);
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok())
    });
    if let Some(max) = max_fds {
        let name = "process_max_fds";
        header(out, name, "Maximum number of open file descriptors.", "gauge");
        sample(out, name, "", "", None, max);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_metrics_are_read_from_proc() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let mut out = String::new();
        super::encode(&mut out);
        let value = |name: &str| -> f64 {
            let line = out.lines().find(|l| l.starts_with(&format!("{name} "))).expect(name);
            line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
        };
        assert!(value("process_resident_memory_bytes") > 1e5, "{out}");
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_open_fds") >= 3.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let started = value("process_start_time_seconds");
        assert!(started <= now.as_secs_f64() + 1.0 && started > now.as_secs_f64() - 3600.0);
    }
}
