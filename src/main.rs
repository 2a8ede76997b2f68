//! The `peergate` binary: parse the command line, start logging, run, exit.

use std::process::ExitCode;

use clap::Parser;
use peergate::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    peergate::telemetry::init();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("peergate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
