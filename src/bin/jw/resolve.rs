//! The job an ID argument stands for: a full id as it is; a unique start
//! of an id (4 characters or more) or a job's name through jwd's
//! `Resolve` (protocol 3). Every command that takes an ID calls this.

use jw::client::{Client, ClientError};
use jw::protocol::{ErrorCode, JobId};

use crate::failure::Failure;

/// Length of a full id as printed (`6f1c2a9e-3b4d-4f0a-8c11-5e7d2093b401`).
const FULL_ID_LEN: usize = 36;

/// The job `given` names: the id itself when it is a full one, else what
/// jwd resolves it to. The failure says why none (or several) match.
pub(crate) async fn resolve(client: &Client, given: &str) -> Result<JobId, Failure> {
    if given.len() == FULL_ID_LEN {
        if let Ok(id) = given.parse::<JobId>() {
            return Ok(id);
        }
    }
    if given.is_empty() {
        return Err(Failure::usage(
            "an empty job id: give the id, its first 4 or more characters, or the job's name",
        ));
    }
    if client.version() < 3 {
        return Err(Failure::new(format!(
            "{given:?} is not a full job id (36 characters): short ids and names need a jwd \
             that speaks protocol 3 (this one speaks {}); give the full id (`jw list`) or \
             upgrade jwd",
            client.version()
        )));
    }
    client.resolve(given).await.map_err(|e| match e.code() {
        Some(ErrorCode::NOT_FOUND) => Failure::new(format!(
            "no job {given:?}: it is neither the name of one of your jobs nor the start of the \
             id of a job you may see (`jw list` shows them; a short id needs 4 characters or \
             more)"
        )),
        _ => match e {
            ClientError::Server(info) if info.code == ErrorCode::AMBIGUOUS => {
                Failure::new(format!("{given:?}: {}", info.message))
            }
            other => Failure::from(other),
        },
    })
}
