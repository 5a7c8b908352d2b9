//! Resident memory of sled alone under the broker's write pattern: appends of `--value` byte
//! values under ascending keys in `--trees` trees, `--mib` MiB in all, with the broker's sled
//! settings (`--segment` bytes, `--cache` bytes). Prints RSS every `--every` MiB, then the
//! same after a pause, so sled's own memory can be told apart from the broker's.
//!
//! ```text
//! sled_memory [--mib 512] [--value 65536] [--trees 6] [--segment 16777216] [--cache 67108864]
//!             [--batch 1] [--every 64]
//! ```

use std::time::Instant;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let mib = arg("--mib", 512);
    let value = arg("--value", 65536) as usize;
    let trees = arg("--trees", 6);
    let segment = arg("--segment", 16 << 20) as usize;
    let cache = arg("--cache", 64 << 20);
    let batch = arg("--batch", 1).max(1);
    let every = arg("--every", 64);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache)
        .segment_size(segment)
        .flush_every_ms(Some(500))
        .open()
        .expect("open sled");
    let trees: Vec<sled::Tree> = (0..trees)
        .map(|i| db.open_tree(format!("log:t:{i}")).expect("tree"))
        .collect();
    let v = vec![7u8; value];
    let total = mib << 20;
    let start = Instant::now();
    let mut written = 0u64;
    let mut next_report = every << 20;
    let mut key = 0u64;
    while written < total {
        for t in &trees {
            let mut b = sled::Batch::default();
            for _ in 0..batch {
                b.insert(&key.to_be_bytes(), &v[..]);
                key += 1;
                written += value as u64;
            }
            t.apply_batch(b).expect("insert");
        }
        if written >= next_report {
            println!(
                "written_mib={} rss_mib={:.0} secs={:.1}",
                written >> 20,
                rss_mib(),
                start.elapsed().as_secs_f64()
            );
            next_report += every << 20;
        }
    }
    db.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let blobs = std::fs::read_dir(dir.path().join("blobs")).map_or(0, |d| d.count());
    println!(
        "done written_mib={} rss_mib={:.0} blob_files={blobs} disk_mib={}",
        written >> 20,
        rss_mib(),
        db.size_on_disk().unwrap_or(0) >> 20
    );
}
