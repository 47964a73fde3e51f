//! `jw completions SHELL`: the completion script clap derives from the
//! command line definition (with its examples: `help.rs`).

use crate::failure::Failure;
use crate::help::command;
use crate::man::write_out;

/// The script for `shell`.
pub(crate) fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "jw", &mut script);
    script
}

/// Writes the script for `shell` to stdout (a closed stdout is no panic).
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<u8, Failure> {
    write_out(&script(shell))
}
