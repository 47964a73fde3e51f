//! The help's examples, one set a command, and the clap command they are
//! part of: what `main` parses with, and what `jw man` and `jw
//! completions` are made from.

use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::args::Cli;

/// Each command's examples, shown after its flags.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "start",
        "  jw start -- make -j4                   # prints the job's id\n  \
         jw start --name nightly --timeout 2h -- ./backup.sh\n  \
         jw start --memory 1G --cpu 2 -- python3 train.py",
    ),
    (
        "run",
        "  jw run -- uname -a\n  \
         jw run --memory 256M --cpu 0.5 --timeout 10m -- make test\n  \
         jw run -it -- sh                       # a shell in the job, as ssh\n  \
         jw run -d --name web -- ./serve        # as jw start",
    ),
    (
        "attach",
        "  jw attach 6f1c                         # a unique start of the id\n  \
         jw attach --detach-keys ctrl-x web     # by --name; Ctrl-X detaches",
    ),
    (
        "kill",
        "  jw kill 6f1c2a9e                       # SIGTERM to the job's command\n  \
         jw kill -s HUP web\n  \
         jw kill -s KILL --all 6f1c2a9e        # every process of the job",
    ),
    (
        "logs",
        "  jw logs 6f1c2a9e\n  \
         jw logs -f nightly                     # follow until the job ends\n  \
         jw logs -n 20 -f nightly               # the last 20 lines, then follow\n  \
         jw logs --since 10m -t 6f1c2a9e        # the last 10 minutes, lines dated\n  \
         jw logs --stderr 6f1c2a9e",
    ),
    (
        "status",
        "  jw status 6f1c2a9e\n  \
         jw status nightly web\n  \
         jw status --json 6f1c | jq .state",
    ),
    (
        "list",
        "  jw list\n  \
         jw list --state running -q             # ids of running jobs\n  \
         jw list --state failed,lost --json",
    ),
    (
        "stop",
        "  jw stop 6f1c2a9e\n  \
         jw stop --grace 1m nightly web\n  \
         jw stop $(jw list --state running -q)",
    ),
    (
        "wait",
        "  jw wait 6f1c2a9e; echo \"exit code $?\"\n  \
         id=$(jw start -- make) && jw wait \"$id\"",
    ),
    (
        "rm",
        "  jw rm 6f1c2a9e\n  \
         jw rm $(jw list --state ended -q)",
    ),
    (
        "prune",
        "  jw prune                               # asks first on a terminal\n  \
         jw prune -f --older-than 7d",
    ),
    (
        "certs",
        "  jw certs init --out ./pki --server-name jw.example.com --user alice --admin root\n  \
         jw certs add-user bob --group dev --out ./pki\n  \
         jw certs renew server --out ./pki         # then: systemctl reload jwd\n  \
         jw certs revoke bob --out ./pki           # then: systemctl reload jwd",
    ),
    (
        "completions",
        "  jw completions bash > /etc/bash_completion.d/jw\n  \
         jw completions zsh > \"${fpath[1]}/_jw\"\n  \
         jw completions fish > ~/.config/fish/completions/jw.fish",
    ),
    (
        "man",
        "  jw man | man -l -\n  \
         jw man run > jw-run.1",
    ),
];

/// Each `jw certs` command's examples.
const CERTS_EXAMPLES: &[(&str, &str)] = &[
    (
        "init",
        "  jw certs init --out ./pki --user alice --admin root\n  \
         jw certs init --out /etc/jw/pki --server-name jw.example.com --server-name 10.0.0.5",
    ),
    (
        "add-user",
        "  jw certs add-user bob --out /etc/jw/pki\n  \
         jw certs add-user carol --admin --group ops --days 90 --out /etc/jw/pki",
    ),
    (
        "renew",
        "  jw certs renew bob --out /etc/jw/pki            # a new key, same subject\n  \
         jw certs renew server --days 730 --out /etc/jw/pki && systemctl reload jwd",
    ),
    (
        "revoke",
        "  jw certs revoke bob --out /etc/jw/pki && systemctl reload jwd\n  \
         jw certs revoke bob --out /etc/jw/pki && jw certs renew bob --out /etc/jw/pki  # a leaked key",
    ),
];

/// The `jw` command line with the examples of every command.
pub(crate) fn command() -> clap::Command {
    let mut cli = Cli::command().after_help(
        "Examples:\n  \
         export JW_ADDR=jw.example.com:7443 JW_CA=ca.crt JW_CERT=me.crt JW_KEY=me.key\n  \
         jw run -- uname -a\n  \
         jw start --name nightly -- ./backup.sh && jw logs -f nightly",
    );
    for (name, examples) in EXAMPLES {
        let text = format!("Examples:\n{examples}");
        cli = cli.mut_subcommand(name, |c| c.after_help(text));
    }
    cli.mut_subcommand("certs", |mut certs| {
        for (name, examples) in CERTS_EXAMPLES {
            let text = format!("Examples:\n{examples}");
            certs = certs.mut_subcommand(name, |c| c.after_help(text));
        }
        certs
    })
}

/// The command line parsed; help, version and usage errors end jw here
/// (0 for help and version, 2 for a usage error).
pub(crate) fn parse() -> Cli {
    let matches: ArgMatches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_examples() {
        let cli = command();
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(after.contains("Examples:\n  jw "), "{name}: {after}");
        }
        let documented: Vec<_> = EXAMPLES.iter().map(|(name, _)| *name).collect();
        for name in documented {
            assert!(cli.find_subcommand(name).is_some(), "{name}");
        }
        let certs = cli.find_subcommand("certs").expect("jw certs");
        for sub in certs.get_subcommands().filter(|s| s.get_name() != "help") {
            let after = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Examples:\n  jw certs "),
                "certs {}: {after}",
                sub.get_name()
            );
        }
        for (name, _) in CERTS_EXAMPLES {
            assert!(certs.find_subcommand(name).is_some(), "certs {name}");
        }
    }
}
