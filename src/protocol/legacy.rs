//! The wire forms of versions 1 and 2 that version 3 changed: `JobInfo`
//! without the fields version 3 appended. A server writes them for an
//! older session ([`encode_for`]), and jwd reads status records written
//! before version 3 with them.
//!
//! Only `Status`, `ListItem` and `End` carry a `JobInfo`; every other
//! message is the same bytes in every version.

use serde::{Deserialize, Serialize};

use super::message::{
    ErrorInfo, Event, JobInfo, JobState, Limits, OutputChunk, OutputInfo, ServerMessage, Usage,
    Welcome,
};
use super::{decode, encode, Attached, JobId, ProtocolError};

/// `JobInfo` as versions 1 and 2 write it: the same fields, in the same
/// order, without version 3's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfoV2 {
    pub id: JobId,
    pub owner: String,
    pub command: String,
    pub args: Vec<String>,
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub stopped: bool,
    pub started_at_ms: u64,
    pub ended_at_ms: Option<u64>,
    pub usage: Usage,
    pub output: OutputInfo,
    pub error: Option<String>,
}

impl From<&JobInfo> for JobInfoV2 {
    fn from(i: &JobInfo) -> Self {
        JobInfoV2 {
            id: i.id,
            owner: i.owner.clone(),
            command: i.command.clone(),
            args: i.args.clone(),
            state: i.state,
            exit_code: i.exit_code,
            signal: i.signal,
            // A timeout is a stop by the server; an older client knows only
            // stops.
            oom_killed: i.oom_killed,
            stopped: i.stopped || i.timed_out,
            started_at_ms: i.started_at_ms,
            ended_at_ms: i.ended_at_ms,
            usage: i.usage,
            output: i.output,
            error: i.error.clone(),
        }
    }
}

impl From<JobInfoV2> for JobInfo {
    fn from(i: JobInfoV2) -> Self {
        JobInfo {
            id: i.id,
            owner: i.owner,
            command: i.command,
            args: i.args,
            state: i.state,
            exit_code: i.exit_code,
            signal: i.signal,
            oom_killed: i.oom_killed,
            stopped: i.stopped,
            started_at_ms: i.started_at_ms,
            ended_at_ms: i.ended_at_ms,
            usage: i.usage,
            output: i.output,
            error: i.error,
            name: None,
            limits: Limits::default(),
            timeout_ms: None,
            timed_out: false,
        }
    }
}

/// `ServerMessage` as versions 1 and 2 write it: the same variants in the
/// same order (wire order), with `JobInfoV2` where version 3 has `JobInfo`.
#[derive(Serialize, Deserialize)]
enum ServerMessageV2 {
    Welcome(Welcome),
    Event { stream: u32, event: EventV2 },
    Fatal(ErrorInfo),
}

#[derive(Serialize, Deserialize)]
enum EventV2 {
    Started { job: JobId },
    Status(JobInfoV2),
    ListItem(JobInfoV2),
    ListEnd { count: u32 },
    Output(OutputChunk),
    End(JobInfoV2),
    Removed,
    Error(ErrorInfo),
    Attached(Attached),
    InputCredit { bytes: u32 },
    Detached { input_offset: u64 },
}

impl From<EventV2> for Event {
    fn from(e: EventV2) -> Event {
        match e {
            EventV2::Started { job } => Event::Started { job },
            EventV2::Status(i) => Event::Status(i.into()),
            EventV2::ListItem(i) => Event::ListItem(i.into()),
            EventV2::ListEnd { count } => Event::ListEnd { count },
            EventV2::Output(c) => Event::Output(c),
            EventV2::End(i) => Event::End(i.into()),
            EventV2::Removed => Event::Removed,
            EventV2::Error(e) => Event::Error(e),
            EventV2::Attached(a) => Event::Attached(a),
            EventV2::InputCredit { bytes } => Event::InputCredit { bytes },
            EventV2::Detached { input_offset } => Event::Detached { input_offset },
        }
    }
}

/// Appends `msg` as one frame in the form protocol `version` defines.
/// Only a `JobInfo` differs; an event version 3 added is never sent on an
/// older session (the requests that answer with it need version 3).
pub fn encode_for(
    version: u32,
    msg: &ServerMessage,
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    if version >= 3 {
        return encode(msg, out);
    }
    let ServerMessage::Event { stream, event } = msg else {
        return encode(msg, out);
    };
    let event = match event {
        Event::Status(i) => EventV2::Status(i.into()),
        Event::ListItem(i) => EventV2::ListItem(i.into()),
        Event::End(i) => EventV2::End(i.into()),
        _ => return encode(msg, out),
    };
    encode(
        &ServerMessageV2::Event {
            stream: *stream,
            event,
        },
        out,
    )
}

/// Decodes a server's frame payload in the form protocol `version` defines.
pub fn decode_for(version: u32, payload: &[u8]) -> Result<ServerMessage, ProtocolError> {
    if version >= 3 {
        return decode(payload);
    }
    Ok(match decode::<ServerMessageV2>(payload)? {
        ServerMessageV2::Welcome(w) => ServerMessage::Welcome(w),
        ServerMessageV2::Event { stream, event } => ServerMessage::Event {
            stream,
            event: event.into(),
        },
        ServerMessageV2::Fatal(e) => ServerMessage::Fatal(e),
    })
}
