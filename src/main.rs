//! The `raftka` binary. `raftka cluster|topic|group …` runs an admin command (a Kafka client,
//! see `raftka::cli`); anything else reads broker settings, starts the broker and stops it
//! cleanly on SIGTERM/SIGINT.

use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: raftka::alloc::GuardedAlloc = raftka::alloc::GuardedAlloc;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if raftka::cli::is_admin_command(&args) {
        return raftka::cli::main(args);
    }
    let config = match raftka::BrokerConfig::from_env_and_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raftka: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let level = config.raw("log.level").map_or("info", |(v, _)| v);
    let format = config.raw("log.format").map_or("text", |(v, _)| v);
    if let Err(e) =
        raftka::logging::LogFormat::parse(format).and_then(|f| raftka::logging::init(level, f))
    {
        eprintln!("raftka: {e}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raftka: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            signal_token.cancel();
        });
        raftka::run(config, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftka: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
