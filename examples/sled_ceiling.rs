//! Raw sled write rate for the bytes a produce benchmark sends: the ceiling a sled-backed
//! broker cannot beat on this machine.
//!
//! ```text
//! sled_ceiling [--records 500000] [--size 1024] [--batch 16] [--blob-records 64]
//!              [--cache-bytes 67108864] [--flush-ms 500]
//! ```
//!
//! Runs, each in a fresh temporary database: plain `insert` per record, and one `apply_batch`
//! per `--batch` records (as a broker appending a record batch record by record would). Keys
//! are big-endian u64 offsets, values `--size` bytes; the final `flush` is inside the timing.
//! The cache size and background flush period default to the broker's defaults
//! (`sled.cache.capacity.bytes`, `log.flush.interval.ms`). Prints `name=value` pairs; the
//! `sled_ceiling_*` figures are the faster of those two runs.
//!
//! A third, informational run (`sled_blob*`, run first, skipped with `--blob-records 0`) stores one value
//! of `--blob-records` x `--size` bytes per key (key = base offset), the layout of a broker
//! that keeps each Kafka record batch as one sled value: fewer, larger writes for the same
//! bytes, so it is usually faster than the per-record ceiling.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

struct Run {
    secs: f64,
}

fn parse_flags(args: &[String]) -> Result<HashMap<String, u64>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let name = arg
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (
                name.to_string(),
                it.next()
                    .ok_or_else(|| format!("flag --{name} needs a value"))?
                    .clone(),
            ),
        };
        let v = value
            .parse()
            .map_err(|_| format!("flag --{name}: not a number: {value:?}"))?;
        out.insert(name, v);
    }
    Ok(out)
}

fn open(dir: &std::path::Path, cache: u64, flush_ms: u64) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache)
        .flush_every_ms(if flush_ms == 0 { None } else { Some(flush_ms) })
        .open()
}

/// How records map to sled writes.
#[derive(Clone, Copy)]
enum Mode {
    /// One `insert` per record.
    Insert,
    /// One `apply_batch` holding this many per-record inserts.
    Batch(u64),
    /// One `insert` whose value is this many records' bytes.
    Blob(u64),
}

fn run(records: u64, size: usize, mode: Mode, cache: u64, flush_ms: u64) -> sled::Result<Run> {
    let dir = tempfile::tempdir()?;
    let db = open(dir.path(), cache, flush_ms)?;
    let tree = db.open_tree("bench-0")?;
    let value: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let start = Instant::now();
    match mode {
        Mode::Insert => {
            for off in 0..records {
                tree.insert(off.to_be_bytes(), value.as_slice())?;
            }
        }
        Mode::Batch(n) => {
            let mut off = 0u64;
            while off < records {
                let end = (off + n).min(records);
                let mut b = sled::Batch::default();
                for o in off..end {
                    b.insert(&o.to_be_bytes(), value.as_slice());
                }
                tree.apply_batch(b)?;
                off = end;
            }
        }
        Mode::Blob(n) => {
            let mut off = 0u64;
            while off < records {
                let end = (off + n).min(records);
                // Built per write, as a broker receives a fresh buffer per batch.
                let blob = value.repeat((end - off) as usize);
                tree.insert(off.to_be_bytes(), blob)?;
                off = end;
            }
        }
    }
    db.flush()?;
    let secs = start.elapsed().as_secs_f64();
    drop(tree);
    drop(db);
    Ok(Run { secs })
}

/// This process's peak resident memory so far (VmHWM), in MiB; for comparison with the broker's.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match parse_flags(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sled_ceiling: {e}");
            return ExitCode::from(2);
        }
    };
    let get = |n: &str, d: u64| flags.get(n).copied().unwrap_or(d);
    let records = get("records", 500_000);
    let size = get("size", 1024) as usize;
    let batch = get("batch", 16).max(1);
    let blob = get("blob-records", 64);
    let cache = get("cache-bytes", 64 * 1024 * 1024);
    let flush_ms = get("flush-ms", 500);
    let mb = records as f64 * size as f64 / (1024.0 * 1024.0);

    let mut best: Option<(f64, String)> = None;
    // The broker-layout run goes first so the peak RSS printed after it is its own (VmHWM
    // only grows).
    let mut modes = Vec::new();
    if blob > 0 {
        modes.push((format!("blob{blob}"), Mode::Blob(blob)));
    }
    modes.push(("insert".to_string(), Mode::Insert));
    modes.push((format!("batch{batch}"), Mode::Batch(batch)));
    for (mode, m) in modes {
        match run(records, size, m, cache, flush_ms) {
            Ok(r) => {
                println!(
                    "sled_{mode}_mb_s={:.2} sled_{mode}_records_s={:.0} sled_{mode}_seconds={:.3} peak_rss_mib_so_far={:.1}",
                    mb / r.secs,
                    records as f64 / r.secs,
                    r.secs,
                    peak_rss_mib()
                );
                let is_ceiling_mode = !matches!(m, Mode::Blob(_));
                if is_ceiling_mode && best.as_ref().is_none_or(|(s, _)| r.secs < *s) {
                    best = Some((r.secs, mode));
                }
            }
            Err(e) => {
                eprintln!("sled_ceiling: {mode} run failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (secs, mode) = best.expect("insert and batch runs");
    println!(
        "sled_ceiling_mb_s={:.2} sled_ceiling_records_s={:.0} sled_ceiling_mode={mode} records={records} size={size}",
        mb / secs,
        records as f64 / secs
    );
    ExitCode::SUCCESS
}
