//! `mailtable`: the admin CLI. Thin: parse arguments, load the config, run
//! the command, turn its error into one line on stderr and an exit code from
//! the table in `mailtable_core::exit`.

mod args;
mod cmd;
mod ctx;
mod doctor;
mod error;
mod import;
mod quota;
mod secret_input;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    mailtable_core::logging::init("warn");
    match cmd::run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("mailtable: {e}");
            ExitCode::from(e.exit().code())
        }
    }
}
