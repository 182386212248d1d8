//! `breakglass`: one binary. `breakglass serve` runs the server; every other subcommand is the
//! CLI talking to it over HTTP (or, for `init`, `admin` and `audit verify --data-dir`, working
//! on the server's data directory directly, on the server host).
#![forbid(unsafe_code)]

mod args;
mod client;
mod commands;
mod session;
mod ssh;

use args::Cli;
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("BREAKGLASS_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: not in log files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match rt.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            commands::print_error(&e, json);
            std::process::ExitCode::FAILURE
        }
    }
}
