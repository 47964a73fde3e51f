//! `jw man [COMMAND]`: the manual page of jw or of one of its commands, in
//! roff, made from the same definitions as `--help` (clap_mangen).

use std::io::Write;

use crate::failure::Failure;
use crate::help::command;

/// The roff page of `name` (`None`: jw's own page).
pub(crate) fn page(name: Option<&str>) -> Result<Vec<u8>, Failure> {
    let mut jw = command();
    // Global flags reach the subcommands only once the command is built.
    jw.build();
    let cmd = match name {
        None => jw,
        Some(name) => {
            let Some(sub) = jw.find_subcommand(name) else {
                let known: Vec<_> = jw
                    .get_subcommands()
                    .map(|c| c.get_name().to_string())
                    .filter(|c| c != "help")
                    .collect();
                return Err(Failure::usage(format!(
                    "no command {name:?}: jw man takes one of {}",
                    known.join(", ")
                )));
            };
            let full = format!("jw-{}", sub.get_name());
            sub.clone().display_name(full.clone()).bin_name(full)
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut roff)
        .map_err(|e| Failure::new(format!("cannot render the manual page: {e}")))?;
    Ok(roff)
}

/// Prints the page to stdout.
pub(crate) fn man(name: Option<&str>) -> Result<u8, Failure> {
    write_out(&page(name)?)
}

/// Writes a generated text (a page, a completion script) to stdout: a
/// reader that went away (`| head`) ends jw as SIGPIPE would, silently.
pub(crate) fn write_out(text: &[u8]) -> Result<u8, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::output_closed()),
        Err(e) => Err(Failure::new(format!("cannot write to stdout: {e}"))),
    }
}
