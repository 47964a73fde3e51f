//! Who may do what. Users act on their own jobs; admins on every job. A job
//! a user may not see is reported as not found, never as forbidden, so ids
//! cannot be probed.

use crate::protocol::Identity;

/// The owner to filter jobs by: the user's own name, or none for admins.
pub fn job_scope(identity: &Identity) -> Option<&str> {
    if identity.admin {
        None
    } else {
        Some(identity.user.as_str())
    }
}

/// The owner whose jobs' input the caller may write: their own only, even
/// for admins (typing into someone's session is not administration).
pub fn input_scope(identity: &Identity) -> &str {
    identity.user.as_str()
}

/// The owner whose jobs the caller may hold (`Hold`): their own only,
/// even for admins (keeping someone's session alive is not
/// administration).
pub fn hold_scope(identity: &Identity) -> &str {
    identity.user.as_str()
}

/// Whether the caller may list every user's jobs.
pub fn may_list_all(identity: &Identity) -> bool {
    identity.admin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(user: &str, admin: bool) -> Identity {
        Identity {
            user: user.into(),
            groups: vec![],
            admin,
        }
    }

    #[test]
    fn users_see_their_own_and_admins_everything() {
        assert_eq!(job_scope(&id("alice", false)), Some("alice"));
        assert_eq!(job_scope(&id("root", true)), None);
        assert!(!may_list_all(&id("alice", false)));
        assert!(may_list_all(&id("root", true)));
        assert_eq!(hold_scope(&id("root", true)), "root");
    }
}
