//! Log output of the broker: stderr, `text` or `json` lines, filtered so that a person can
//! read them.
//!
//! Without `RUST_LOG`, raftka's own targets log at `log.level` (default info) and the
//! libraries under it (openraft, tonic, h2, hyper, tower, sled) at warn; on top of that,
//! openraft's per-retry warnings and errors about a peer that does not answer (each
//! replication retry, heartbeat and leadership confirmation logs one) are dropped: raftka's
//! network layer logs one line when a peer stops answering and one when it answers again
//! (`peer unreachable` / `peer reachable again`, in rpc/network.rs). With `RUST_LOG` set,
//! its directives (tracing's EnvFilter syntax) are used as given and nothing is dropped, so
//! `RUST_LOG=info,openraft=debug` shows every retry.
//!
//! Depends on nothing else in the crate.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Levels `log.level` accepts (Kafka's log4j names, case-insensitive).
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Libraries whose info/debug lines are internals: warn unless RUST_LOG asks for more.
const QUIET_LIBRARIES: &[&str] = &[
    "openraft",
    "tonic",
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "sled",
];

/// A `log.level` or `log.format` value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LogSetupError {
    #[error("setting `log.level`: invalid value `{0}`: expected one of error, warn, info, debug, trace, off")]
    Level(String),
    #[error("setting `log.format`: invalid value `{0}`: expected text or json")]
    Format(String),
    #[error("environment RUST_LOG: {0}")]
    RustLog(#[source] tracing_subscriber::filter::ParseError),
    /// The directives built from `log.level` do not parse (a bug: every level is checked).
    #[error("setting `log.level`: the filter built from it does not parse: {0}")]
    LevelFilter(#[source] tracing_subscriber::filter::ParseError),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<Self, LogSetupError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(LogSetupError::Format(s.to_string())),
        }
    }
}

/// The default filter directives for `level` (used when RUST_LOG is unset).
pub fn default_directives(level: &str) -> Result<String, LogSetupError> {
    let level = level.trim().to_ascii_lowercase();
    if !LEVELS.contains(&level.as_str()) {
        return Err(LogSetupError::Level(level));
    }
    let mut d = level.clone();
    for lib in QUIET_LIBRARIES {
        // A library never logs more than raftka itself: log.level=error quiets them too.
        let lib_level = if matches!(level.as_str(), "off" | "error") {
            level.as_str()
        } else {
            "warn"
        };
        d.push_str(&format!(",{lib}={lib_level}"));
    }
    Ok(d)
}

/// Installs the global subscriber: stderr, `format`, `RUST_LOG` when set, else `level` with
/// the quiet defaults described in the module docs.
pub fn init(level: &str, format: LogFormat) -> Result<(), LogSetupError> {
    let (filter, quiet) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => (
            EnvFilter::try_new(&v).map_err(LogSetupError::RustLog)?,
            false,
        ),
        _ => (
            EnvFilter::try_new(default_directives(level)?).map_err(LogSetupError::LevelFilter)?,
            true,
        ),
    };
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt.with_filter(QuietRetries { enabled: quiet }))
        .try_init();
    Ok(())
}

/// Drops openraft's warn/error events that repeat on every retry to a peer that does not
/// answer (raftka logs the peer's state changes instead).
struct QuietRetries {
    enabled: bool,
}

impl<S> Filter<S> for QuietRetries {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        !(self.enabled && is_retry_noise(event))
    }
}

/// Fragments of openraft's per-retry messages about unreachable or slow peers, and of its
/// benign start-up races (another voter initialised the quorum first; a vote answer that
/// arrived after the vote changed).
const RETRY_NOISE: &[&str] = &[
    "Unreachable",
    "Timeout",
    "timeout",
    "backoff",
    "heartbeat error",
    "update progress error",
    "error replication to",
    "vote changed",
    "Can not initialize",
];

fn is_retry_noise(event: &Event<'_>) -> bool {
    let meta = event.metadata();
    if *meta.level() > Level::WARN || !meta.target().starts_with("openraft") {
        return false;
    }
    let mut v = FieldText(String::new());
    event.record(&mut v);
    RETRY_NOISE.iter().any(|n| v.0.contains(n))
}

/// Every field of an event as text (the message included).
struct FieldText(String);

impl Visit for FieldText {
    fn record_debug(&mut self, _field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{value:?} "));
    }

    fn record_str(&mut self, _field: &Field, value: &str) {
        self.0.push_str(value);
        self.0.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_stay_at_warn_under_info_and_debug() {
        let d = default_directives("INFO").unwrap();
        assert!(d.starts_with("info,openraft=warn,tonic=warn"), "{d}");
        assert!(default_directives("debug").unwrap().contains("h2=warn"));
        assert!(default_directives("error")
            .unwrap()
            .contains("openraft=error"));
        assert!(EnvFilter::try_new(d).is_ok());
    }

    #[test]
    fn unknown_levels_and_formats_are_refused() {
        assert!(default_directives("verbose").is_err());
        assert!(LogFormat::parse("xml").is_err());
        assert_eq!(LogFormat::parse("JSON").unwrap(), LogFormat::Json);
    }
}
