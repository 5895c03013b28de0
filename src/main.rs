//! The `streamlake` binary: parse the command line, run the chosen command, report errors.
//!
//! All logic lives in the library; this file only turns a failure into a message and an exit code.

use clap::Parser;

fn main() {
    let cli = streamlake::cli::Cli::parse();
    streamlake::logging::init(cli.verbose);
    match streamlake::commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("Error: {err:#}");
            std::process::exit(streamlake::commands::exit_code(&err));
        }
    }
}
