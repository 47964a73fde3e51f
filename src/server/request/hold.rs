//! `Hold`: `Wait` that, while its stream is open, holds a tied job (the
//! engine stops a tied job no client has held for its tie). The owner's
//! own jobs only, admins' too: holding someone's session open is not
//! administration. The hold ends with the stream (answered, cancelled, or
//! its connection gone).

use super::wait::until_end;
use super::{error_info, Outcome};
use crate::protocol::{Identity, JobId};
use crate::server::authz;
use crate::server::outbox::Outbox;
use crate::server::stream::StreamState;

pub(super) async fn apply(
    conn: &Outbox,
    stream: &StreamState,
    identity: &Identity,
    job: JobId,
) -> Outcome {
    let holding = match conn.shared.manager.hold(authz::hold_scope(identity), job) {
        Ok(holding) => holding,
        Err(e) => return Outcome::Failed(error_info(&e)),
    };
    until_end(conn, stream, holding.job()).await
}
