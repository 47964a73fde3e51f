//! `ip link set lo up` with two ioctls: a new network namespace starts with
//! `lo` down. No wrapper among the crate's dependencies sets interface
//! flags, so the ioctls are raw.

use std::ffi::c_char;
use std::os::fd::AsRawFd;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::{At, Failure};
use crate::job::channel::Stage;

/// An `ifreq` naming `lo`, every other byte zero.
fn loopback_request() -> libc::ifreq {
    // SAFETY: ifreq is plain C data (a name array and a union of integers,
    // addresses and a pointer-sized map), for which all-zero bytes are a
    // valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as c_char;
    req.ifr_name[1] = b'o' as c_char;
    req
}

/// Brings `lo` up in the init's network namespace.
pub(super) fn up() -> Result<(), Failure> {
    let sock = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .at(Stage::Loopback)?;
    let mut req = loopback_request();
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name of `req` and
    // writes the flags into its union; `req` is a live ifreq and `sock` an
    // open socket.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).at(Stage::Loopback);
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the union holds the flags.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the name and flags of `req`, a live ifreq;
    // `sock` is an open socket.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).at(Stage::Loopback);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_request_names_lo() {
        let req = super::loopback_request();
        let name: Vec<u8> = req.ifr_name.iter().map(|&c| c as u8).collect();
        assert_eq!(&name[..3], b"lo\0");
    }
}
