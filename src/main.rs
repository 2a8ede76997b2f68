//! The `peergate` binary: parse the command line, run it (which starts
//! logging once the configuration is known), exit.

use std::process::ExitCode;

use clap::Parser;
use peergate::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Thousands of sockets need file descriptors: take the hard limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("peergate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
