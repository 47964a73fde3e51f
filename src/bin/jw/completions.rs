//! `jw completions SHELL`: the completion script clap derives from the
//! command line definition.

use clap::CommandFactory;

use crate::args::Cli;

/// Writes the script for `shell` to stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> u8 {
    clap_complete::generate(shell, &mut Cli::command(), "jw", &mut std::io::stdout());
    0
}
