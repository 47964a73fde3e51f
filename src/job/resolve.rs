//! Which job a user means by a name or a short id: an exact name of the
//! caller's own jobs first, else an id prefix of at least `MIN_PREFIX` hex
//! digits (dashes where the printed id has them, or none at all) among the
//! jobs the caller may see.

use std::sync::Arc;

use super::engine::Manager;
use super::error::JobError;
use super::registry::Job;
use super::spec::MAX_NAME;
use crate::protocol::JobId;

/// The fewest hex digits an id prefix may have.
pub const MIN_PREFIX: usize = 4;
/// The most matches an ambiguous prefix lists.
pub const MAX_LISTED: usize = 10;

/// What a prefix is, once checked: the lower-case text, and whether it
/// carries dashes (then they must sit where the printed id has them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix {
    text: String,
    dashed: bool,
}

impl Prefix {
    /// `text` as an id prefix, if it can be one.
    fn parse(text: &str) -> Option<Prefix> {
        let hex = text.chars().filter(|c| c.is_ascii_hexdigit()).count();
        let only = text.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        (only && hex >= MIN_PREFIX && text.len() <= 36).then(|| Prefix {
            text: text.to_ascii_lowercase(),
            dashed: text.contains('-'),
        })
    }

    fn matches(&self, id: JobId) -> bool {
        let printed = id.to_string();
        if self.dashed {
            printed.starts_with(&self.text)
        } else {
            let bare: String = printed.chars().filter(|c| *c != '-').collect();
            bare.starts_with(&self.text)
        }
    }
}

/// Which job `text` means: `named` (the caller's job of that exact name),
/// else the one of `jobs` (those the caller may see, with their names)
/// whose id begins with it.
fn pick(
    text: &str,
    named: Option<JobId>,
    jobs: &[(JobId, Option<String>)],
) -> Result<JobId, JobError> {
    if let Some(id) = named {
        return Ok(id);
    }
    let Some(prefix) = Prefix::parse(text) else {
        return Err(JobError::NoSuchName {
            name: text.to_string(),
            hint: if text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                " (an id prefix needs at least 4 hex digits)"
            } else {
                ""
            },
        });
    };
    let found: Vec<&(JobId, Option<String>)> =
        jobs.iter().filter(|(id, _)| prefix.matches(*id)).collect();
    match found.as_slice() {
        [] => Err(JobError::NoSuchName {
            name: text.to_string(),
            hint: "",
        }),
        [one] => Ok(one.0),
        many => Err(JobError::Ambiguous {
            prefix: text.to_string(),
            count: many.len(),
            listed: many.iter().take(MAX_LISTED).map(|j| (*j).clone()).collect(),
        }),
    }
}

impl Manager {
    /// The job `text` names for `caller`: one of `caller`'s own jobs by its
    /// exact name, else the one job whose id begins with `text` among the
    /// jobs of `scope` (`None`: every job, for admins).
    pub fn resolve(
        &self,
        text: &str,
        caller: &str,
        scope: Option<&str>,
    ) -> Result<JobId, JobError> {
        if text.len() > MAX_NAME {
            return Err(JobError::NoSuchName {
                name: text.chars().take(MAX_NAME).collect::<String>() + "...",
                hint: " (names and ids are at most 64 characters)",
            });
        }
        let named = self.inner.registry.named(caller, text);
        // Only the jobs the prefix matches, with their names (for the
        // listing of an ambiguous one): no copy of every name per request.
        let jobs: Vec<(JobId, Option<String>)> = match (named, Prefix::parse(text)) {
            (None, Some(prefix)) => {
                let name = |j: &Arc<Job>| j.info.borrow().name.clone();
                self.jobs(scope)
                    .iter()
                    .filter(|j| prefix.matches(j.id))
                    .map(|j| (j.id, name(j)))
                    .collect()
            }
            _ => Vec::new(),
        };
        pick(text, named, &jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> JobId {
        text.parse().unwrap()
    }

    const A: &str = "0123abcd-4567-4890-8bcd-ef0123456789";

    #[test]
    fn prefixes_need_four_hex_digits_and_dashes_in_place() {
        let a = id(A);
        for good in [
            "0123",
            "0123ABCD",
            "0123abcd-",
            "0123abcd-45",
            "0123abcd4567",
            A,
        ] {
            assert!(Prefix::parse(good).unwrap().matches(a), "{good}");
        }
        for short in ["012", "-012", "web", "0123g", ""] {
            assert_eq!(Prefix::parse(short), None, "{short}");
        }
        for wrong in ["0123-abcd", "1234", "0123abcd-4567-4890-8bcd-ef01234567890"] {
            assert!(
                Prefix::parse(wrong).is_none_or(|p| !p.matches(a)),
                "{wrong}"
            );
        }
    }

    #[test]
    fn a_name_wins_and_unknown_text_is_not_found() {
        assert_eq!(pick("web", Some(id(A)), &[]).unwrap(), id(A));
        assert!(matches!(
            pick("web", None, &[]),
            Err(JobError::NoSuchName { .. })
        ));
        let err = pick("abc", None, &[]).unwrap_err().to_string();
        assert!(err.contains("at least 4 hex digits"), "{err}");
    }

    #[test]
    fn an_ambiguous_prefix_lists_at_most_ten_matches() {
        let jobs: Vec<(JobId, Option<String>)> = (0..12u8)
            .map(|i| {
                let text = format!("0123ab{i:02x}-4567-4890-8bcd-ef0123456789");
                (id(&text), (i == 0).then(|| "web".to_string()))
            })
            .chain([(id("9999abcd-4567-4890-8bcd-ef0123456789"), None)])
            .collect();
        assert_eq!(pick("9999", None, &jobs).unwrap(), jobs[12].0);
        assert_eq!(pick("0123ab0b", None, &jobs).unwrap(), jobs[11].0);
        match pick("0123", None, &jobs) {
            Err(JobError::Ambiguous { count, listed, .. }) => {
                assert_eq!((count, listed.len()), (12, MAX_LISTED));
                assert_eq!(listed[0], jobs[0]);
            }
            other => panic!("{other:?}"),
        }
        let text = pick("0123", None, &jobs).unwrap_err().to_string();
        assert!(
            text.contains("12 jobs") && text.contains("(web)") && text.contains("and 2 more"),
            "{text}"
        );
    }
}
