//! `tidings`: the tidings server and its command-line tools.
#![forbid(unsafe_code)]

mod admin_ui;
mod config_file;
mod dev_cert;
mod http;
mod limits;
mod listen;
mod memory_budget;
mod remote;
mod serve;
mod tls;
mod token;
mod topics;

use clap::{Parser, Subcommand, ValueEnum};

/// With `--features mimalloc` only: measured against glibc's malloc, it did not return the
/// memory of issue 19's abuses either and raised idle RSS per connection (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tidings: a Socket.IO server with durable topics and per-subscriber queues.
#[derive(Debug, Parser)]
#[command(name = "tidings", version, about, propagate_version = true)]
struct Cli {
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, env = "TIDINGS_LOG_FORMAT", global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

// Parsed once at start-up: the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Publish one message to a durable topic (through the HTTP API of a running server).
    Publish(topics::PublishArgs),
    /// Subscribe to a durable topic and print each delivery as a JSON line (acked after printing).
    Listen(listen::ListenArgs),
    /// Show every topic with its subscriptions' pending, in-flight and dead-letter counts.
    Topics(topics::TopicsArgs),
    /// Mint a JSON Web Token for development, signed with the server's secret or private key.
    Token(token::TokenArgs),
    /// Write a development CA and a server certificate for localhost it signed.
    DevCert(dev_cert::DevCertArgs),
}

fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: not in files, pipes or journald.
        .with_ansi(std::io::stderr().is_terminal())
        // A failed log write must never take the server down: by default tracing-subscriber
        // reports it with `eprintln!`, which panics when stderr is a closed pipe (`serve 2>&1 |
        // head`) — in whichever task logged, the shutdown task included.
        .log_internal_errors(false);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server logs its lifecycle; the client commands keep stderr for their own messages.
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Publish(args) => topics::publish(args).await,
            Command::Topics(args) => topics::topics(args).await,
            Command::Listen(args) => listen::listen(args).await,
            Command::Token(args) => token::token(args),
            Command::DevCert(args) => dev_cert::dev_cert(args),
        }
    })
}
