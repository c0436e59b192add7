//! `decnet`: the command line of the decnet intelligence plane.
//!
//! A thin entry point: it parses the command line, sets up logging on standard error and
//! hands over to the subcommand. Product output (tags, tables, layers) goes to standard
//! output; logs and reports go to standard error.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format);
    cli::run(args)
}
