//! The default of `--max-retained-bytes`, how much memory the embedded stores may fill with
//! messages: half of the memory this process may use (the machine's, or its cgroup's when that
//! is lower).
//!
//! The journal and memory stores keep every retained message and dead letter in memory, so the
//! bound is what stops publishers from growing the process until the kernel kills it — the
//! same choice NATS (`max_memory_store`, 75 % of RAM) and RabbitMQ (the memory high watermark,
//! 60 %) make. Half leaves room for connections, their buffers and a snapshot being written.

/// The memory this process may use: the machine's (`MemTotal`), or its cgroup's limit when that
/// is lower (a container). None where neither can be read (not Linux).
pub fn memory_available() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_meminfo_total(&text));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",                   // cgroup v2
        "/sys/fs/cgroup/memory/memory.limit_in_bytes", // cgroup v1
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .and_then(|text| text.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Where `memory_available` cannot say: a bound that fits a small machine.
const FALLBACK: u64 = 1 << 30;

/// The default `max_retained_bytes`: half of [`memory_available`], else 1 GiB.
pub fn default_max_retained_bytes() -> u64 {
    memory_available().map_or(FALLBACK, |m| m / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_kib() {
        let text = "MemTotal:       24731400 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24_731_400 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }
}
