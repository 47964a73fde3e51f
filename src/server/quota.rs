//! What one user may hold of the server at once: connections and open
//! streams, counted across every runtime. A place is taken when the user
//! opens one and given back when its guard drops, so a connection or
//! stream that ends any way (closed, cut off, its task aborted) frees its
//! place. (Jobs per user are the engine's rule: `job::Manager`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Per-user caps (`jwd --max-connections-per-user`, `--max-streams-per-user`).
#[derive(Debug, Clone, Copy)]
pub struct UserLimits {
    pub connections: usize,
    pub streams: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Held {
    connections: usize,
    streams: usize,
}

/// The counts of every user holding something.
#[derive(Debug)]
pub(crate) struct Quotas {
    limits: UserLimits,
    held: Mutex<HashMap<String, Held>>,
}

/// Which count a place is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connection,
    Stream,
}

/// One place of one user; given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    quotas: Arc<Quotas>,
    user: String,
    kind: Kind,
}

/// Why a place was refused: the user already holds `max`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full {
    pub max: usize,
}

impl Quotas {
    pub fn new(limits: UserLimits) -> Arc<Quotas> {
        Arc::new(Quotas {
            limits,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A connection of `user`, if they hold fewer than the cap.
    pub fn connection(self: &Arc<Self>, user: &str) -> Result<Place, Full> {
        self.take(user, Kind::Connection)
    }

    /// An open stream of `user`, if they hold fewer than the cap.
    pub fn stream(self: &Arc<Self>, user: &str) -> Result<Place, Full> {
        self.take(user, Kind::Stream)
    }

    fn take(self: &Arc<Self>, user: &str, kind: Kind) -> Result<Place, Full> {
        let mut held = self.held.lock().expect("quota lock");
        let h = held.entry(user.to_string()).or_default();
        let (count, max) = match kind {
            Kind::Connection => (&mut h.connections, self.limits.connections),
            Kind::Stream => (&mut h.streams, self.limits.streams),
        };
        if *count >= max {
            if h.connections == 0 && h.streams == 0 {
                held.remove(user);
            }
            return Err(Full { max });
        }
        *count += 1;
        Ok(Place {
            quotas: self.clone(),
            user: user.to_string(),
            kind,
        })
    }

    #[cfg(test)]
    fn users(&self) -> usize {
        self.held.lock().expect("quota lock").len()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.quotas.held.lock().expect("quota lock");
        if let Some(h) = held.get_mut(&self.user) {
            match self.kind {
                Kind::Connection => h.connections -= 1,
                Kind::Stream => h.streams -= 1,
            }
            if h.connections == 0 && h.streams == 0 {
                held.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas() -> Arc<Quotas> {
        Quotas::new(UserLimits {
            connections: 2,
            streams: 3,
        })
    }

    #[test]
    fn each_user_gets_up_to_the_cap_and_places_come_back_on_drop() {
        let q = quotas();
        let a1 = q.connection("alice").unwrap();
        let _a2 = q.connection("alice").unwrap();
        assert_eq!(q.connection("alice").unwrap_err(), Full { max: 2 });
        // bob is not alice.
        let _b = q.connection("bob").unwrap();
        drop(a1);
        let _a3 = q.connection("alice").unwrap();
    }

    #[test]
    fn streams_are_counted_apart_from_connections() {
        let q = quotas();
        let _c = q.connection("alice").unwrap();
        let s: Vec<_> = (0..3).map(|_| q.stream("alice").unwrap()).collect();
        assert_eq!(q.stream("alice").unwrap_err(), Full { max: 3 });
        let _c2 = q.connection("alice").unwrap();
        drop(s);
        assert!(q.stream("alice").is_ok());
    }

    #[test]
    fn a_user_holding_nothing_costs_no_entry() {
        let q = quotas();
        let c = q.connection("alice").unwrap();
        let s = q.stream("alice").unwrap();
        assert_eq!(q.users(), 1);
        drop(c);
        drop(s);
        assert_eq!(q.users(), 0);
        // A refusal leaves nothing behind either.
        let q = Quotas::new(UserLimits {
            connections: 0,
            streams: 0,
        });
        assert!(q.connection("mallory").is_err());
        assert_eq!(q.users(), 0);
    }
}
