//! The TUN device: a layer-3 interface whose packets meshd reads and writes.
//!
//! The device is created with `IFF_TUN | IFF_NO_PI | IFF_VNET_HDR`: every
//! `read` returns a `virtio_net_hdr` and then an IP packet (IPv4 or IPv6,
//! told apart by the version nibble), and every `write` injects one behind
//! an all-zero header. With the header, meshd asks for TCP segmentation
//! offload (`TUNSETOFFLOAD`): the kernel may then hand over up to 64 KiB of a
//! TCP stream in one read, which [`super::offload::split`] cuts into
//! packets. It is not made persistent, so the kernel deletes it (and every
//! route and address on it) when the file descriptor is closed, i.e. when
//! the [`Tun`] is dropped or the daemon dies.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::{open, OFlag};
use nix::libc;
use nix::sys::stat::Mode;

use super::context;

/// Where the TUN clone device lives.
const TUN_PATH: &str = "/dev/net/tun";

/// `IFNAMSIZ`: interface names are at most 15 bytes plus the NUL.
const IFNAMSIZ: usize = 16;

/// `struct ifreq` as used by `TUNSETIFF`: the name, then the flags in the
/// union. The kernel copies `sizeof(struct ifreq)` (40 bytes on 64-bit, 32 on
/// 32-bit targets) in and out, so the padding makes this at least as large.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 24],
}

mod ioctl {
    // TUNSETIFF is declared `_IOW('T', 202, int)` but reads *and writes back*
    // a whole `struct ifreq` (the final name), hence the "bad" read-write form.
    nix::ioctl_readwrite_bad!(tunsetiff, nix::libc::TUNSETIFF, super::IfReq);
    // TUNSETOFFLOAD takes the offload bits by value.
    nix::ioctl_write_int_bad!(tunsetoffload, nix::libc::TUNSETOFFLOAD);
}

/// An open TUN device. Closing it (drop) deletes the interface.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
    tso: bool,
}

impl Tun {
    /// Creates the TUN device `name` (a `%d` in it lets the kernel pick a
    /// free number, e.g. `"meshd%d"` -> `"meshd0"`). The descriptor is
    /// non-blocking and close-on-exec. The device starts down, without
    /// addresses.
    pub fn create(name: &str) -> io::Result<Tun> {
        let req_name = ifname_bytes(name).map_err(|e| context(e, format!("TUN name {name:?}")))?;
        let fd = open(
            TUN_PATH,
            OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| {
            let hint = if e == nix::errno::Errno::ENOENT || e == nix::errno::Errno::ENODEV {
                " (no TUN support: load the `tun` kernel module, kmod-tun on OpenWrt)"
            } else {
                ""
            };
            context(e.into(), format!("opening {TUN_PATH}{hint}"))
        })?;

        let mut req = IfReq {
            name: req_name,
            flags: (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
            _pad: [0; 24],
        };
        // SAFETY: `fd` is an open /dev/net/tun descriptor and `req` is a live,
        // exclusively borrowed `IfReq` at least as large as the kernel's
        // `struct ifreq`; the kernel reads it and writes the final name back
        // into it, and keeps no pointer to it after the call.
        unsafe { ioctl::tunsetiff(fd.as_raw_fd(), &mut req) }
            .map_err(|e| context(e.into(), format!("TUNSETIFF {name:?}")))?;

        let len = req.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        // Checksum offload (which TSO needs), TSO for both families. A kernel
        // that refuses keeps sending plain packets behind the header.
        let bits = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: `fd` is the TUN just set up; the argument is a plain int.
        let tso = match unsafe { ioctl::tunsetoffload(fd.as_raw_fd(), bits as libc::c_int) } {
            Ok(_) => true,
            Err(e) => {
                log::warn!("TUN {name}: no TCP segmentation offload ({e}): one read per packet");
                false
            }
        };
        Ok(Tun { fd, name, tso })
    }

    /// Whether the kernel took the TCP segmentation offload.
    pub fn tso(&self) -> bool {
        self.tso
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf`: the `virtio_net_hdr`, then a packet or a
    /// TSO super-packet ([`super::offload::split`] makes packets of it),
    /// returning its length. A frame longer than `buf` is truncated (size
    /// `buf` for [`super::offload::MAX_FRAME`]). Returns
    /// [`io::ErrorKind::WouldBlock`] when nothing is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        super::raw::read(self.fd.as_raw_fd(), buf)
    }

    /// Injects one IP packet into the kernel as if received on the device,
    /// behind the all-zero header (no offload: its checksums are complete).
    /// Returns [`io::ErrorKind::WouldBlock`] if the kernel cannot take it now.
    /// Returns the packet's length (the header not counted).
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        let header = super::offload::PLAIN;
        super::raw::writev2(self.fd.as_raw_fd(), &header, packet)
            .map(|n| n.saturating_sub(header.len()))
    }
}

impl Tun {
    /// Writes one whole frame, its `virtio_net_hdr` included (a
    /// super-packet from [`super::offload::Coalescer`]).
    pub fn write_frame(&self, frame: &[u8]) -> io::Result<usize> {
        super::raw::write(self.fd.as_raw_fd(), frame)
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Checks an interface name (1-15 bytes, no NUL, `/`, `:` or whitespace, as
/// the kernel's `dev_valid_name` wants) and returns it NUL-padded.
fn ifname_bytes(name: &str) -> io::Result<[u8; IFNAMSIZ]> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid("invalid interface name"));
    }
    if name.len() >= IFNAMSIZ {
        return Err(invalid("interface name longer than 15 bytes"));
    }
    if name
        .bytes()
        .any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace())
    {
        return Err(invalid(
            "interface name contains NUL, '/', ':' or whitespace",
        ));
    }
    let mut out = [0u8; IFNAMSIZ];
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_is_large_enough() {
        assert!(std::mem::size_of::<IfReq>() >= std::mem::size_of::<libc::ifreq>());
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(&ifname_bytes("meshd%d").unwrap()[..8], b"meshd%d\0");
        assert_eq!(ifname_bytes("a23456789012345").unwrap()[15], 0);
        for bad in [
            "",
            ".",
            "..",
            "a234567890123456",
            "a b",
            "a/b",
            "a:b",
            "a\0b",
        ] {
            let e = ifname_bytes(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
