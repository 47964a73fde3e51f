//! `jwd --config FILE`: settings from a TOML file. Each key is one of jwd's
//! long flags without its dashes and takes what the flag takes:
//!
//! ```toml
//! listen = "0.0.0.0:7443"
//! crl = ["/etc/jw/pki/crl.pem"]   # a repeatable flag: an array
//! max-output = "2G"
//! max-connections = 4096          # numbers as numbers or strings
//! keep-jobs-on-exit = true        # a switch: true, or false (the default)
//! ```
//!
//! The file becomes flags placed before the command line's, each checked
//! by the flag's own parser, so the file and the flags cannot disagree on
//! what a value means. A setting also given on the command line is left
//! out: the flag overrides it (for a repeatable flag, all of its values).
//! Paths must be absolute (a service's working directory is `/`).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches, Parser, ValueHint};

use crate::args::Args;

/// The most a config file may hold: a few hundred bytes of settings in
/// practice; a FIFO or /dev/zero given by mistake is refused, not read.
const MAX_CONFIG: u64 = 1 << 20;

/// Flags that are not settings: they say what to do with the settings.
const NOT_SETTINGS: &[&str] = &["config", "check-config", "help", "version"];

/// Why jwd's settings could not be read.
#[derive(Debug)]
pub(crate) enum SettingsError {
    /// A usage error or --help/--version: clap prints and exits.
    Usage(clap::Error),
    /// The config file: what is wrong, naming the file and the key.
    File(String),
}

/// jwd's settings: the config file's (if `--config` is given), overridden
/// by the command line's.
pub(crate) fn settings(argv: Vec<OsString>) -> Result<Args, SettingsError> {
    let command = Args::command();
    // A first look at the command line alone: which file, and which
    // settings it gives (a required flag the file holds is not missing).
    let first = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .map_err(SettingsError::Usage)?;
    let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
        return Args::try_parse_from(&argv).map_err(SettingsError::Usage);
    };
    let on_command_line: HashSet<String> = command
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| first.value_source(id) == Some(ValueSource::CommandLine))
        .collect();
    let bytes = jw::settings_file::read_regular(&path, MAX_CONFIG).map_err(|e| {
        SettingsError::File(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        SettingsError::File(format!(
            "the config file {} is not UTF-8 text",
            path.display()
        ))
    })?;
    let from_file = file_flags(&command, &path, &text, &on_command_line)?;
    let mut all = Vec::with_capacity(argv.len() + from_file.len());
    let mut argv = argv.into_iter();
    all.extend(argv.next());
    all.extend(from_file);
    all.extend(argv);
    let matches = command
        .try_get_matches_from(all)
        .map_err(SettingsError::Usage)?;
    Args::from_arg_matches(&matches).map_err(SettingsError::Usage)
}

/// The flags a config file's text stands for, each value checked.
fn file_flags(
    command: &Command,
    path: &Path,
    text: &str,
    on_command_line: &HashSet<String>,
) -> Result<Vec<OsString>, SettingsError> {
    let file = path.display();
    let table: toml::Table = text
        .parse()
        .map_err(|e| SettingsError::File(format!("{file}: not valid TOML: {e}")))?;
    let mut seen = HashSet::new();
    let mut flags = Vec::new();
    for (key, value) in &table {
        let arg = setting(command, key).ok_or_else(|| {
            SettingsError::File(format!(
                "{file}: unknown setting `{key}`: the settings are jwd's long flags without the dashes (jwd --help lists them)"
            ))
        })?;
        let long = arg.get_long().unwrap_or(key);
        if !seen.insert(arg.get_id().to_string()) {
            return Err(SettingsError::File(format!(
                "{file}: `{key}` sets {long} a second time"
            )));
        }
        if on_command_line.contains(arg.get_id().as_str()) {
            continue;
        }
        let bad = |what: String| SettingsError::File(format!("{file}: {key}: {what}"));
        match arg.get_action() {
            ArgAction::SetTrue => match value {
                toml::Value::Boolean(true) => flags.push(format!("--{long}").into()),
                toml::Value::Boolean(false) => {}
                _ => return Err(bad("give true or false".into())),
            },
            ArgAction::Append => {
                let values = match value {
                    toml::Value::Array(values) => values.iter().collect(),
                    one => vec![one],
                };
                for value in values {
                    flags.push(flag(command, arg, long, value).map_err(bad)?);
                }
            }
            _ => flags.push(flag(command, arg, long, value).map_err(bad)?),
        }
    }
    Ok(flags)
}

/// The flag a key names (by its long name or an alias), if it is a setting.
fn setting<'c>(command: &'c Command, key: &str) -> Option<&'c Arg> {
    if NOT_SETTINGS.contains(&key) {
        return None;
    }
    command.get_arguments().find(|a| {
        a.get_long() == Some(key) || a.get_all_aliases().is_some_and(|all| all.contains(&key))
    })
}

/// `--long=value` for one value of a key, checked by the flag's parser.
fn flag(command: &Command, arg: &Arg, long: &str, value: &toml::Value) -> Result<OsString, String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Boolean(_) => {
            return Err(format!("--{long} takes a value, not true or false"))
        }
        _ => return Err("give a string or a number".into()),
    };
    let is_path = matches!(
        arg.get_value_hint(),
        ValueHint::FilePath | ValueHint::DirPath | ValueHint::AnyPath
    );
    if is_path && !Path::new(&text).is_absolute() {
        return Err(format!(
            "{text:?} is a relative path: give an absolute one (jwd may run from any directory)"
        ));
    }
    let flag: OsString = format!("--{long}={text}").into();
    // The flag's own parser, alone: every flag optional for this one look.
    command
        .clone()
        .mut_args(|a| a.required(false))
        .try_get_matches_from([OsStr::new("jwd"), &flag])
        .map_err(|e| {
            let said = e.to_string();
            let first = said.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        })?;
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, cli: &[&str]) -> Result<Args, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwd.toml");
        std::fs::write(&path, text).unwrap();
        let mut argv: Vec<OsString> = vec!["jwd".into(), "--config".into(), path.into()];
        argv.extend(cli.iter().map(OsString::from));
        settings(argv).map_err(|e| match e {
            SettingsError::Usage(e) => e.to_string(),
            SettingsError::File(e) => e,
        })
    }

    const TLS: &str = "cert = \"/c.crt\"\nkey = \"/c.key\"\nclient-ca = \"/ca.crt\"\n";

    #[test]
    fn the_file_gives_settings_and_the_command_line_overrides_them() {
        let args = with_file(
            &format!("{TLS}listen = \"0.0.0.0:9000\"\nmax-output = \"2M\"\ncrl = [\"/a.pem\", \"/b.pem\"]\nkeep-jobs-on-exit = true\nmax-connections = 77\n"),
            &["--max-output", "3M"],
        )
        .unwrap();
        assert_eq!(args.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(args.max_output, 3 << 20);
        assert_eq!(args.crl, [PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]);
        assert!(args.keep_jobs_on_exit);
        assert_eq!(args.max_connections, Some(77));
        assert_eq!(args.cert, PathBuf::from("/c.crt"));
    }

    #[test]
    fn a_repeatable_flag_on_the_command_line_replaces_the_files_values() {
        let args = with_file(
            &format!("{TLS}crl = [\"/a.pem\", \"/b.pem\"]\n"),
            &["--crl", "/c.pem"],
        )
        .unwrap();
        assert_eq!(args.crl, [PathBuf::from("/c.pem")]);
    }

    #[test]
    fn an_alias_is_a_setting_too() {
        let args = with_file(&format!("{TLS}max-output-per-user = \"none\"\n"), &[]).unwrap();
        assert_eq!(args.max_output_total.0, None);
    }

    #[test]
    fn wrong_settings_are_named_with_the_file_and_the_key() {
        for (text, says) in [
            ("listn = \"x\"\n", "unknown setting `listn`"),
            ("config = \"/x\"\n", "unknown setting `config`"),
            (
                "max-output = \"lots\"\n",
                "max-output: invalid value 'lots'",
            ),
            (
                "data-dir = \"var/lib\"\n",
                "data-dir: \"var/lib\" is a relative path",
            ),
            ("no-seccomp = \"yes\"\n", "no-seccomp: give true or false"),
            ("max-output = true\n", "takes a value, not true or false"),
            ("listen = [1, 2]\n", "listen: give a string or a number"),
            (
                "max-output = \"1G\"\nmax-output-total = \"1G\"\nmax-output-per-user = \"1G\"\n",
                "a second time",
            ),
            ("listen = \n", "not valid TOML"),
        ] {
            let err = with_file(&format!("{TLS}{text}"), &[]).unwrap_err();
            assert!(
                err.contains("jwd.toml: ") && err.contains(says),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn a_required_flag_may_come_from_either_place() {
        let args = with_file(
            "cert = \"/c.crt\"\nkey = \"/c.key\"\n",
            &["--client-ca", "/ca.crt"],
        )
        .unwrap();
        assert_eq!(args.client_ca, PathBuf::from("/ca.crt"));
        let err = with_file("cert = \"/c.crt\"\n", &[]).unwrap_err();
        assert!(
            err.contains("--key") && err.contains("--client-ca"),
            "{err}"
        );
    }

    #[test]
    fn without_a_file_the_command_line_alone_counts() {
        let argv = ["jwd", "--cert", "c", "--key", "k", "--client-ca", "ca"].map(OsString::from);
        let args = settings(argv.to_vec()).unwrap();
        assert_eq!(args.retain.0, Some(jw::job::DEFAULT_RETAIN));
        assert_eq!(
            args.max_output_total.0,
            Some(jw::job::DEFAULT_MAX_OUTPUT_TOTAL)
        );
    }

    #[test]
    fn a_cgroup_name_is_one_directory_name_not_a_path() {
        for bad in ["/", ".", "..", "../../../../tmp/x", "a/b", ".hidden", ""] {
            let argv = ["jwd", "--cert", "c", "--key", "k", "--client-ca", "ca"];
            let mut argv = argv.map(OsString::from).to_vec();
            argv.extend([OsString::from("--cgroup-name"), bad.into()]);
            match settings(argv) {
                Err(SettingsError::Usage(e)) => {
                    assert!(e.to_string().contains("not a cgroup name"), "{bad}: {e}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let err = with_file(&format!("{TLS}cgroup-name = \"..\"\n"), &[]).unwrap_err();
        assert!(err.contains("not a cgroup name"), "{err}");
        let args = with_file(&format!("{TLS}cgroup-name = \"jw-2.test_x\"\n"), &[]).unwrap();
        assert_eq!(args.cgroup_name, "jw-2.test_x");
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("jwd.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let zero = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for path in [fifo, zero] {
            let argv = vec![
                "jwd".into(),
                "--config".into(),
                path.clone().into_os_string(),
            ];
            match settings(argv) {
                Err(SettingsError::File(e)) => {
                    assert!(e.contains("not a regular file"), "{e}")
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let argv = ["jwd", "--config", "/no/such/jwd.toml"].map(OsString::from);
        match settings(argv.to_vec()) {
            Err(SettingsError::File(e)) => assert!(e.contains("/no/such/jwd.toml"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
