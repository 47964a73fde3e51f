//! `jw attach`: an interactive session with a job started with -i or -t,
//! its output followed from where it is now.

use jw::client::ClientError;
use tokio::sync::watch;

use crate::args::Cli;
use crate::connect::connect;
use crate::failure::Failure;
use crate::job_args::DetachArgs;
use crate::output::Offsets;
use crate::relay::Signals;
use crate::resolve::resolve;
use crate::session::{run_session, Session};
use crate::terminal;
use crate::text::describe_end;

/// `jw attach`: the job's exit code when it ends, 0 when the user detaches.
pub(crate) async fn attach(cli: &Cli, keys: &DetachArgs, given: &str) -> Result<u8, Failure> {
    let mut signals = Signals::catch()?;
    let (client, info, attachment) = signals
        .unless_interrupted(async {
            let client = connect(cli).await?;
            let id = resolve(&client, given).await?;
            // The output's current lengths first: the follow shows what
            // comes after them, nothing before.
            let info = client.status(id).await?;
            if !info.state.is_active() {
                return Err(Failure::new(format!(
                    "job {id} has ended ({}); `jw logs {id}` shows its output",
                    describe_end(&info)
                )));
            }
            let attachment = client.attach(id).await.map_err(cannot_attach)?;
            if attachment.terminal() && terminal::stdin_is_terminal() {
                // The job's terminal takes the size of the one attaching.
                attachment.resize(terminal::window_size()).await?;
            }
            Ok((client, info, attachment))
        })
        .await?;
    let id = info.id;
    let session = Session {
        id,
        attachment,
        from: Offsets {
            stdout: Some(info.output.stdout_bytes),
            stderr: Some(info.output.stderr_bytes),
        },
        keys: keys.detach_keys.clone(),
        signals,
    };
    let (current, _) = watch::channel(client);
    run_session(cli, session, &current)
        .await
        .map_err(|f| f.about_job(id))
}

/// jwd's answer already says why (no input, another writer, ...).
fn cannot_attach(e: ClientError) -> Failure {
    let mut failure = Failure::from(e);
    failure.message = format!("cannot attach: {}", failure.message);
    failure
}
