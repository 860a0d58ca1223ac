//! The `sigex` binary: parses the command line and hands it to [`sigex::cli`]. A failed command
//! ends the process with its message (no backtrace) and exit status 1; `status` has exit
//! statuses of its own; a command line clap refuses exits 2.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match sigex::cli::Cli::parse().dispatch() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}", sigex::cli::report(&error));
            ExitCode::FAILURE
        }
    }
}
