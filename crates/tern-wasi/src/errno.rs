//! WASI errno values and the translation from host errors.

use rustix::io::Errno as Host;
use std::io;

/// A `wasi_snapshot_preview1` errno (the witx `$errno` enum, a u16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(pub u16);

/// Result of a host function body: `Ok` becomes errno 0.
pub(crate) type WasiResult<T> = Result<T, Errno>;

impl Errno {
    pub const AGAIN: Errno = Errno(6);
    pub const BADF: Errno = Errno(8);
    pub const EXIST: Errno = Errno(20);
    pub const FAULT: Errno = Errno(21);
    pub const FBIG: Errno = Errno(22);
    pub const ILSEQ: Errno = Errno(25);
    pub const INVAL: Errno = Errno(28);
    pub const IO: Errno = Errno(29);
    pub const ISDIR: Errno = Errno(31);
    pub const MFILE: Errno = Errno(33);
    pub const NAMETOOLONG: Errno = Errno(37);
    pub const NOENT: Errno = Errno(44);
    pub const NOMEM: Errno = Errno(48);
    pub const NOSYS: Errno = Errno(52);
    pub const NOTCONN: Errno = Errno(53);
    pub const NOTDIR: Errno = Errno(54);
    pub const NOTSOCK: Errno = Errno(57);
    pub const NOTSUP: Errno = Errno(58);
    pub const OVERFLOW: Errno = Errno(61);
    pub const PERM: Errno = Errno(63);
    pub const SPIPE: Errno = Errno(70);
    pub const NOTCAPABLE: Errno = Errno(76);

    pub fn code(self) -> i32 {
        i32::from(self.0)
    }
}

/// Host errno → WASI errno, in witx order. Linux aliases (EWOULDBLOCK,
/// EOPNOTSUPP, EDEADLOCK) share values with entries listed here.
const TABLE: &[(Host, u16)] = &[
    (Host::TOOBIG, 1),
    (Host::ACCESS, 2),
    (Host::ADDRINUSE, 3),
    (Host::ADDRNOTAVAIL, 4),
    (Host::AFNOSUPPORT, 5),
    (Host::AGAIN, 6),
    (Host::ALREADY, 7),
    (Host::BADF, 8),
    (Host::BADMSG, 9),
    (Host::BUSY, 10),
    (Host::CANCELED, 11),
    (Host::CHILD, 12),
    (Host::CONNABORTED, 13),
    (Host::CONNREFUSED, 14),
    (Host::CONNRESET, 15),
    (Host::DEADLK, 16),
    (Host::DESTADDRREQ, 17),
    (Host::DOM, 18),
    (Host::DQUOT, 19),
    (Host::EXIST, 20),
    (Host::FAULT, 21),
    (Host::FBIG, 22),
    (Host::HOSTUNREACH, 23),
    (Host::IDRM, 24),
    (Host::ILSEQ, 25),
    (Host::INPROGRESS, 26),
    (Host::INTR, 27),
    (Host::INVAL, 28),
    (Host::IO, 29),
    (Host::ISCONN, 30),
    (Host::ISDIR, 31),
    (Host::LOOP, 32),
    (Host::MFILE, 33),
    (Host::MLINK, 34),
    (Host::MSGSIZE, 35),
    (Host::MULTIHOP, 36),
    (Host::NAMETOOLONG, 37),
    (Host::NETDOWN, 38),
    (Host::NETRESET, 39),
    (Host::NETUNREACH, 40),
    (Host::NFILE, 41),
    (Host::NOBUFS, 42),
    (Host::NODEV, 43),
    (Host::NOENT, 44),
    (Host::NOEXEC, 45),
    (Host::NOLCK, 46),
    (Host::NOLINK, 47),
    (Host::NOMEM, 48),
    (Host::NOMSG, 49),
    (Host::NOPROTOOPT, 50),
    (Host::NOSPC, 51),
    (Host::NOSYS, 52),
    (Host::NOTCONN, 53),
    (Host::NOTDIR, 54),
    (Host::NOTEMPTY, 55),
    (Host::NOTRECOVERABLE, 56),
    (Host::NOTSOCK, 57),
    (Host::NOTSUP, 58),
    (Host::NOTTY, 59),
    (Host::NXIO, 60),
    (Host::OVERFLOW, 61),
    (Host::OWNERDEAD, 62),
    (Host::PERM, 63),
    (Host::PIPE, 64),
    (Host::PROTO, 65),
    (Host::PROTONOSUPPORT, 66),
    (Host::PROTOTYPE, 67),
    (Host::RANGE, 68),
    (Host::ROFS, 69),
    (Host::SPIPE, 70),
    (Host::SRCH, 71),
    (Host::STALE, 72),
    (Host::TIMEDOUT, 73),
    (Host::TXTBSY, 74),
    (Host::XDEV, 75),
];

impl From<Host> for Errno {
    fn from(e: Host) -> Self {
        TABLE
            .iter()
            .find(|(h, _)| *h == e)
            .map_or(Errno::IO, |&(_, w)| Errno(w))
    }
}

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Self {
        if let Some(raw) = e.raw_os_error() {
            return Host::from_raw_os_error(raw).into();
        }
        // Errors synthesised by std or cap-std (e.g. a sandbox escape is a
        // PermissionDenied without an OS code) only carry a kind.
        match e.kind() {
            io::ErrorKind::NotFound => Errno::NOENT,
            io::ErrorKind::PermissionDenied => Errno::PERM,
            io::ErrorKind::AlreadyExists => Errno::EXIST,
            io::ErrorKind::WouldBlock => Errno::AGAIN,
            io::ErrorKind::InvalidInput => Errno::INVAL,
            io::ErrorKind::InvalidData => Errno::ILSEQ,
            io::ErrorKind::OutOfMemory => Errno::NOMEM,
            io::ErrorKind::Unsupported => Errno::NOTSUP,
            io::ErrorKind::NotADirectory => Errno::NOTDIR,
            io::ErrorKind::IsADirectory => Errno::ISDIR,
            _ => Errno::IO,
        }
    }
}
