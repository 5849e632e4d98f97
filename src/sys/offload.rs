//! TCP segmentation offload on the TUN device: what the kernel hands meshd
//! with `IFF_VNET_HDR` and `TUN_F_TSO4 | TUN_F_TSO6`, cut back into the
//! packets the wire carries.
//!
//! With the offload on, a console's (or the router's own) TCP stack sends up
//! to 64 KiB of a stream to the TUN as one "super-packet": one IP and TCP
//! header, then many segments' worth of payload, and a `virtio_net_hdr` in
//! front saying how to cut it (`gso_size`, the MSS). One `read` then brings
//! what was 40-odd reads, and the sender's stack does its per-segment work
//! once. meshd cuts it here, each segment with its own headers and full
//! checksums, and encrypts the segments one by one as before: the tunnel
//! still carries datagrams no larger than the TUN's MTU.
//!
//! With `TUN_F_CSUM` (which TSO needs) the kernel may also hand over a single
//! packet whose TCP or UDP checksum is left partial (`NEEDS_CSUM`): only the
//! pseudo-header's sum is in the field. [`split`] completes it.
//!
//! Writes carry the same header, all zero: a plain packet whose checksums
//! the far end's meshd already completed.
//!
//! The header is in the host's byte order (the legacy virtio layout, as the
//! TUN uses unless told `TUNSETVNETLE`/`BE`): little-endian on x86 and
//! arm64, big-endian on ath79's MIPS.

use std::fmt;

/// `sizeof(struct virtio_net_hdr)`, the TUN's default `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 10;

/// Room for the largest read: the header and a 64 KiB super-packet.
pub const MAX_FRAME: usize = VNET_HDR_LEN + 65535;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_ECN: u8 = 0x80;

const PROTO_TCP: u8 = 6;

/// Why a frame read from the TUN could not be turned into packets. Each is
/// counted by the daemon and the frame dropped; none should happen with a
/// kernel that keeps to the offloads meshd asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// Shorter than the header, or than the headers it describes.
    Truncated,
    /// A checksum position outside the packet.
    BadChecksumOffset,
    /// A GSO type meshd did not ask for (UDP fragmentation, USO).
    UnsupportedGso(u8),
    /// A TSO packet that is not plain IPv4/IPv6 TCP (options in IPv6
    /// extension headers, a wrong version), or with a zero MSS.
    NotTcp,
    /// A segment larger than the buffer it is built in.
    SegmentTooLarge,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadError::Truncated => f.write_str("frame shorter than its headers"),
            OffloadError::BadChecksumOffset => f.write_str("checksum offset outside the packet"),
            OffloadError::UnsupportedGso(t) => write!(f, "GSO type {t} not asked for"),
            OffloadError::NotTcp => f.write_str("TSO frame that is not plain TCP"),
            OffloadError::SegmentTooLarge => f.write_str("segment larger than its buffer"),
        }
    }
}

impl std::error::Error for OffloadError {}

/// The all-zero header in front of every packet meshd writes: no offload,
/// checksums complete.
pub const PLAIN: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

struct VnetHdr {
    flags: u8,
    gso_type: u8,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

impl VnetHdr {
    fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            // b[2..4] is hdr_len, a hint: the headers' length is read from
            // the headers themselves.
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }
}

/// Turns one frame read from the TUN (header included) into the IP packets
/// it stands for, calling `each` with every one in order, and returns how
/// many there were. A plain packet is passed on in place (its checksum
/// completed there if the kernel left it partial); a super-packet's segments
/// are built one at a time in `scratch`, which needs room for the headers and
/// one MSS (the TUN's MTU is enough).
pub fn split(
    frame: &mut [u8],
    scratch: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let hdr = VnetHdr::parse(frame).ok_or(OffloadError::Truncated)?;
    let packet = &mut frame[VNET_HDR_LEN..];
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                complete_checksum(packet, hdr.csum_start.into(), hdr.csum_offset.into())?;
            }
            each(packet);
            Ok(1)
        }
        GSO_TCPV4 | GSO_TCPV6 => segment(packet, hdr.gso_size.into(), scratch, each),
        other => Err(OffloadError::UnsupportedGso(other)),
    }
}

/// Whether a frame read from the TUN is a TSO super-packet (many packets),
/// not one packet.
pub fn is_super_packet(frame: &[u8]) -> bool {
    frame.get(1).is_some_and(|t| t & !GSO_ECN != GSO_NONE)
}

/// Finishes a partial checksum: the field at `start + offset` holds the
/// pseudo-header's sum, and the one's-complement sum runs from `start` to the
/// end (as the kernel's `skb_checksum_help`, a zero result sent as 0xffff).
fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let field = start
        .checked_add(offset)
        .filter(|&f| f + 2 <= packet.len())
        .ok_or(OffloadError::BadChecksumOffset)?;
    let sum = fold(sum_words(&packet[start..], 0));
    let c = match !sum {
        0 => 0xffff,
        c => c,
    };
    packet[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Cuts a TSO super-packet (IPv4 or IPv6, then TCP) into segments of `mss`
/// payload bytes, as the kernel's `tcp_gso_segment` does: IPv4 IDs count up,
/// sequence numbers advance, FIN and PSH only on the last, CWR only on the
/// first, and every checksum computed whole.
fn segment(
    packet: &[u8],
    mss: usize,
    scratch: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let v4 = match packet.first().map(|b| b >> 4) {
        Some(4) => true,
        Some(6) => false,
        Some(_) => return Err(OffloadError::NotTcp),
        None => return Err(OffloadError::Truncated),
    };
    let ip_len = if v4 {
        usize::from(packet[0] & 0x0f) * 4
    } else {
        40
    };
    let proto = if v4 { packet.get(9) } else { packet.get(6) };
    if ip_len < 20 || proto != Some(&PROTO_TCP) || mss == 0 {
        return Err(OffloadError::NotTcp);
    }
    let tcp_len = packet
        .get(ip_len + 12)
        .map(|b| usize::from(b >> 4) * 4)
        .ok_or(OffloadError::Truncated)?;
    let headers = ip_len + tcp_len;
    if tcp_len < 20 || packet.len() < headers {
        return Err(OffloadError::Truncated);
    }
    let payload = &packet[headers..];
    let seq0 = u32::from_be_bytes([
        packet[ip_len + 4],
        packet[ip_len + 5],
        packet[ip_len + 6],
        packet[ip_len + 7],
    ]);
    let id0 = u16::from_be_bytes([packet[4], packet[5]]);
    let flags0 = packet[ip_len + 13];
    // The pseudo-header's addresses, summed once.
    let addrs = if v4 {
        sum_words(&packet[12..20], 0)
    } else {
        sum_words(&packet[8..40], 0)
    };
    let count = payload.len().div_ceil(mss).max(1);
    for i in 0..count {
        let chunk = payload
            .get(i * mss..((i + 1) * mss).min(payload.len()))
            .unwrap_or(&[]);
        let len = headers + chunk.len();
        let seg = scratch
            .get_mut(..len)
            .ok_or(OffloadError::SegmentTooLarge)?;
        seg[..headers].copy_from_slice(&packet[..headers]);
        seg[headers..].copy_from_slice(chunk);
        if v4 {
            seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            seg[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            seg[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum_words(&seg[..ip_len], 0));
            seg[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            seg[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        }
        let tcp = &mut seg[ip_len..];
        let seq = seq0.wrapping_add((i * mss) as u32);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < count {
            flags &= !(0x01 | 0x08); // FIN, PSH
        }
        if i > 0 {
            flags &= !0x80; // CWR
        }
        tcp[13] = flags;
        tcp[16..18].copy_from_slice(&[0, 0]);
        let pseudo = addrs + u64::from(PROTO_TCP) + tcp.len() as u64;
        let c = !fold(sum_words(tcp, pseudo));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        each(seg);
    }
    Ok(count)
}

/// Consecutive segments of one TCP stream, read from the tunnels, joined
/// into one super-packet for one TUN write (receive offload, as the kernel's
/// GRO does for a NIC): the forwarding, firewall and TCP receive paths then
/// run once per 64 KiB, not once per segment.
///
/// Segments join only when nothing is lost by it: same addresses, ports,
/// TTL, TOS, ACK number, window and TCP options; the next sequence number
/// and (IPv4) the next ID; only ACK, and PSH on the last; every segment but
/// the last as long as the first; no IP options or extension headers; valid
/// IPv4 header and TCP checksums (the super-packet's are written anew or
/// left for the kernel to complete, so a bad one would otherwise be made
/// good).
#[derive(Debug)]
pub struct Coalescer {
    /// The header, then the super-packet.
    buf: Vec<u8>,
    /// Bytes of `buf` in use, header included (0: empty).
    len: usize,
    count: usize,
    v4: bool,
    /// IP plus TCP header length.
    headers: usize,
    /// Payload of the first segment: every one but the last has it.
    mss: usize,
    next_seq: u32,
    next_id: u16,
    /// A short segment or a PSH came: nothing more joins.
    closed: bool,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            // Zeroed: only the pages a super-packet reaches are touched.
            buf: vec![0; MAX_FRAME],
            len: 0,
            count: 0,
            v4: true,
            headers: 0,
            mss: 0,
            next_seq: 0,
            next_id: 0,
            closed: false,
        }
    }
}

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// A TCP segment's layout, if it is one that may join: (IPv4?, IP header
/// length, TCP header length).
fn joinable(p: &[u8]) -> Option<(bool, usize, usize)> {
    let (v4, ip_len) = match p.first()? >> 4 {
        // No options, not a fragment, the length the packet has.
        4 if p[0] == 0x45
            && p.len() >= 40
            && p[9] == PROTO_TCP
            && u16::from_be_bytes([p[6], p[7]]) & 0x3fff == 0
            && usize::from(u16::from_be_bytes([p[2], p[3]])) == p.len() =>
        {
            (true, 20)
        }
        6 if p.len() >= 60
            && p[6] == PROTO_TCP
            && usize::from(u16::from_be_bytes([p[4], p[5]])) + 40 == p.len() =>
        {
            (false, 40)
        }
        _ => return None,
    };
    let tcp_len = usize::from(p[ip_len + 12] >> 4) * 4;
    let flags = p[ip_len + 13];
    if tcp_len < 20 || p.len() <= ip_len + tcp_len || flags & !PSH != ACK {
        return None;
    }
    // The IPv4 header's checksum must hold too: the super-packet's header
    // is written anew, which would make a bad one good.
    if v4 && fold(sum_words(&p[..20], 0)) != 0xffff {
        return None;
    }
    // The segment's own checksum must hold.
    let addrs = if v4 { &p[12..20] } else { &p[8..40] };
    let pseudo = sum_words(addrs, 0) + u64::from(PROTO_TCP) + (p.len() - ip_len) as u64;
    (fold(sum_words(&p[ip_len..], pseudo)) == 0xffff).then_some((v4, ip_len, tcp_len))
}

impl Coalescer {
    /// Adds `packet` if it continues what is gathered (or, gathering
    /// nothing, if it is a segment that may start a super-packet); `false`
    /// if not: write what is gathered, then try again (a packet that cannot
    /// start one is written alone).
    pub fn push(&mut self, p: &[u8]) -> bool {
        let Some((v4, ip_len, tcp_len)) = joinable(p) else {
            return false;
        };
        let headers = ip_len + tcp_len;
        let payload = p.len() - headers;
        let seq = u32::from_be_bytes([p[ip_len + 4], p[ip_len + 5], p[ip_len + 6], p[ip_len + 7]]);
        let id = u16::from_be_bytes([p[4], p[5]]);
        if self.len == 0 {
            self.buf[VNET_HDR_LEN..VNET_HDR_LEN + p.len()].copy_from_slice(p);
            self.len = VNET_HDR_LEN + p.len();
            self.count = 1;
            self.v4 = v4;
            self.headers = headers;
            self.mss = payload;
        } else {
            let first = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.headers];
            // Same header but for the fields a segment changes: IPv4's total
            // length, ID and checksum, IPv6's payload length; TCP's sequence
            // number, flags and checksum.
            let same = v4 == self.v4
                && headers == self.headers
                && if v4 {
                    p[..2] == first[..2] && p[6..10] == first[6..10] && p[12..20] == first[12..20]
                } else {
                    p[..4] == first[..4] && p[6..40] == first[6..40]
                }
                && p[ip_len..ip_len + 4] == first[ip_len..ip_len + 4]
                && p[ip_len + 8..ip_len + 13] == first[ip_len + 8..ip_len + 13]
                && p[ip_len + 14..ip_len + 16] == first[ip_len + 14..ip_len + 16]
                && p[ip_len + 18..headers] == first[ip_len + 18..headers];
            if !same
                || self.closed
                || seq != self.next_seq
                || (v4 && id != self.next_id)
                || payload > self.mss
                || self.count == 64
                || self.len - VNET_HDR_LEN + payload > 65535
            {
                return false;
            }
            self.buf[self.len..self.len + payload].copy_from_slice(&p[headers..]);
            self.len += payload;
            self.count += 1;
            let at = VNET_HDR_LEN + ip_len + 13;
            self.buf[at] |= p[ip_len + 13] & PSH;
        }
        self.next_seq = seq.wrapping_add(payload as u32);
        self.next_id = id.wrapping_add(1);
        self.closed = payload < self.mss || p[ip_len + 13] & PSH != 0;
        true
    }

    /// Whether anything is gathered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What is gathered, as one frame for [`super::tun::Tun::write_frame`]:
    /// a single segment as it came, several as a super-packet whose header
    /// asks the kernel for TSO and to complete the TCP checksum. Empty
    /// afterwards.
    pub fn take(&mut self) -> Option<&[u8]> {
        if self.len == 0 {
            return None;
        }
        let len = std::mem::take(&mut self.len);
        let ip_len = if self.v4 { 20 } else { 40 };
        if self.count == 1 {
            self.buf[..VNET_HDR_LEN].copy_from_slice(&PLAIN);
            return Some(&self.buf[..len]);
        }
        let (hdr, p) = self.buf[..len].split_at_mut(VNET_HDR_LEN);
        let total = p.len();
        if self.v4 {
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[10..12].copy_from_slice(&[0, 0]);
            let c = !fold(sum_words(&p[..20], 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        } else {
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        }
        // A partial checksum: the pseudo-header's sum, for the kernel (or
        // its segmentation) to finish.
        let addrs = if self.v4 { &p[12..20] } else { &p[8..40] };
        let pseudo = fold(sum_words(addrs, 0) + u64::from(PROTO_TCP) + (total - ip_len) as u64);
        p[ip_len + 16..ip_len + 18].copy_from_slice(&pseudo.to_be_bytes());
        hdr[0] = F_NEEDS_CSUM;
        hdr[1] = if self.v4 { GSO_TCPV4 } else { GSO_TCPV6 };
        hdr[2..4].copy_from_slice(&(self.headers as u16).to_ne_bytes());
        hdr[4..6].copy_from_slice(&(self.mss as u16).to_ne_bytes());
        hdr[6..8].copy_from_slice(&(ip_len as u16).to_ne_bytes());
        hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
        Some(&self.buf[..len])
    }
}

/// The one's-complement sum of `data` as big-endian 16-bit words (an odd
/// last byte padded with zero), added to `acc`, not yet folded. Eight bytes
/// at a time, in the machine's own byte order: the sum of 64-bit words,
/// carries included, folds to the same 16 bits, byte-swapped on a
/// little-endian machine (RFC 1071, 2.(B) and 2.(C)).
fn sum_words(data: &[u8], acc: u64) -> u64 {
    let word = |c: &[u8]| u128::from(u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])));
    // A u128 holds the sum of 2^64 words without overflow: no carries to
    // track. Four words a turn, then single words.
    let mut wide: u128 = 0;
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        wide += word(&b[..8]) + word(&b[8..16]) + word(&b[16..24]) + word(&b[24..]);
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        wide += word(w);
    }
    let wide = (wide >> 64) as u64 + (wide as u64 >> 32) + (wide as u64 & 0xffff_ffff);
    let native = fold(wide);
    // The same sum in network order: swapped on a little-endian machine.
    let mut acc = acc + u64::from(u16::from_be(native));
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a 64-bit running sum to 16 bits, carries added back in.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's sum, written apart from the code under test: 16-bit
    /// words, an odd last byte padded with a zero byte, carries folded.
    fn rfc1071(data: &[u8], pseudo: u64) -> u16 {
        let mut padded = data.to_vec();
        if padded.len() % 2 == 1 {
            padded.push(0);
        }
        let mut sum = pseudo;
        for w in padded.chunks(2) {
            sum += u64::from(w[0]) * 256 + u64::from(w[1]);
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The whole one's-complement check: a packet region with its checksum
    /// in place sums to 0xffff.
    fn verifies(data: &[u8], pseudo: u64) -> bool {
        rfc1071(data, pseudo) == 0xffff
    }

    fn tcp_pseudo(seg: &[u8]) -> u64 {
        if seg[0] >> 4 == 4 {
            let ihl = usize::from(seg[0] & 0xf) * 4;
            u64::from(rfc1071(&seg[12..20], 0)) + 6 + (seg.len() - ihl) as u64
        } else {
            u64::from(rfc1071(&seg[8..40], 0)) + 6 + (seg.len() - 40) as u64
        }
    }

    /// A TSO super-packet as the kernel hands it: IPv4 or IPv6, TCP with a
    /// 12-byte option block, `payload` bytes counting up, PSH|ACK|CWR|FIN.
    fn super_packet(v4: bool, payload: usize, mss: u16) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN];
        f[0] = F_NEEDS_CSUM;
        f[1] = if v4 { GSO_TCPV4 } else { GSO_TCPV6 };
        f[4..6].copy_from_slice(&mss.to_ne_bytes());
        let ip_len = if v4 { 20 } else { 40 };
        f[6..8].copy_from_slice(&(ip_len as u16).to_ne_bytes());
        f[8..10].copy_from_slice(&16u16.to_ne_bytes());
        let total = ip_len + 32 + payload;
        let mut p = vec![0u8; total];
        if v4 {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[4..6].copy_from_slice(&0xfffeu16.to_be_bytes()); // ID wraps
            p[8] = 64;
            p[9] = 6;
            p[12..16].copy_from_slice(&[192, 168, 1, 10]);
            p[16..20].copy_from_slice(&[192, 168, 2, 10]);
        } else {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            p[6] = 6;
            p[7] = 64;
            p[8] = 0xfd;
            p[39] = 1;
            p[24] = 0xfd;
            p[39 - 16] = 2;
        }
        let t = &mut p[ip_len..];
        t[0..2].copy_from_slice(&5201u16.to_be_bytes());
        t[2..4].copy_from_slice(&40000u16.to_be_bytes());
        t[4..8].copy_from_slice(&0xffff_f000u32.to_be_bytes()); // seq wraps
        t[12] = 8 << 4;
        t[13] = 0x80 | 0x10 | 0x08 | 0x01;
        t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        for (i, b) in t[32..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f.extend_from_slice(&p);
        f
    }

    fn check_segments(v4: bool) {
        let mss = 1000;
        let mut frame = super_packet(v4, 4501, mss);
        let original = frame[VNET_HDR_LEN..].to_vec();
        let ip_len = if v4 { 20 } else { 40 };
        let mut scratch = vec![0u8; 1500];
        let mut segs = Vec::new();
        let n = split(&mut frame, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 5);
        assert_eq!(segs.len(), 5);
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let last = i == 4;
            assert_eq!(
                s.len(),
                ip_len + 32 + if last { 501 } else { 1000 },
                "segment {i}"
            );
            if v4 {
                assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, s.len());
                assert_eq!(
                    u16::from_be_bytes([s[4], s[5]]),
                    0xfffeu16.wrapping_add(i as u16)
                );
                assert!(verifies(&s[..20], 0), "IPv4 header checksum of {i}");
            } else {
                assert_eq!(u16::from_be_bytes([s[4], s[5]]) as usize, s.len() - 40);
            }
            let t = &s[ip_len..];
            let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            assert_eq!(seq, 0xffff_f000u32.wrapping_add(1000 * i as u32));
            assert_eq!(t[13] & 0x01 != 0, last, "FIN only on the last");
            assert_eq!(t[13] & 0x08 != 0, last, "PSH only on the last");
            assert_eq!(t[13] & 0x80 != 0, i == 0, "CWR only on the first");
            assert_eq!(t[13] & 0x10, 0x10, "ACK on all");
            assert_eq!(&t[20..32], &original[ip_len + 20..ip_len + 32], "options");
            assert!(verifies(t, tcp_pseudo(s)), "TCP checksum of {i}");
            payload.extend_from_slice(&t[32..]);
        }
        assert_eq!(payload, original[ip_len + 32..], "payload in order, whole");
    }

    #[test]
    fn a_tso_ipv4_super_packet_becomes_mss_sized_segments() {
        check_segments(true);
    }

    #[test]
    fn a_tso_ipv6_super_packet_becomes_mss_sized_segments() {
        check_segments(false);
    }

    #[test]
    fn a_partial_checksum_is_completed_in_place() {
        // A UDP datagram over IPv4 whose checksum holds the pseudo-header sum.
        let mut p = vec![0u8; 20 + 8 + 13];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&[192, 168, 1, 10]);
        p[16..20].copy_from_slice(&[192, 168, 2, 10]);
        let udp_len = (8 + 13) as u16;
        p[24..26].copy_from_slice(&udp_len.to_be_bytes());
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = 0xa0 + i as u8;
        }
        let pseudo = u64::from(rfc1071(&p[12..20], 0)) + 17 + u64::from(udp_len);
        p[26..28].copy_from_slice(&rfc1071(&[], pseudo).to_be_bytes());
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame[0] = F_NEEDS_CSUM;
        frame[6..8].copy_from_slice(&20u16.to_ne_bytes());
        frame[8..10].copy_from_slice(&6u16.to_ne_bytes());
        frame.extend_from_slice(&p);
        let mut out = Vec::new();
        let n = split(&mut frame, &mut [], |s| out = s.to_vec()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(out.len(), p.len());
        assert!(verifies(&out[20..], pseudo), "UDP checksum");
        assert_eq!(out[..26], p[..26], "only the checksum changed");
        assert_eq!(out[28..], p[28..], "only the checksum changed");
    }

    #[test]
    fn a_plain_packet_passes_unchanged() {
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend_from_slice(&[0x45, 1, 2, 3, 4, 5]);
        let mut out = Vec::new();
        assert_eq!(split(&mut frame, &mut [], |s| out = s.to_vec()), Ok(1));
        assert_eq!(out, [0x45, 1, 2, 3, 4, 5]);
    }

    /// `count` segments of one stream as `split` makes them from a TSO
    /// super-packet with only ACK (and PSH on the last), full checksums.
    fn stream(v4: bool, payload: usize, mss: u16) -> Vec<Vec<u8>> {
        let mut frame = super_packet(v4, payload, mss);
        let ip_len = if v4 { 20 } else { 40 };
        frame[VNET_HDR_LEN + ip_len + 13] = ACK | PSH;
        let mut scratch = vec![0u8; 2000];
        let mut segs = Vec::new();
        split(&mut frame, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        segs
    }

    fn coalesced(v4: bool) {
        let segs = stream(v4, 4501, 1000);
        let mut c = Coalescer::default();
        for s in &segs {
            assert!(c.push(s));
        }
        assert!(
            !c.push(&segs[0]),
            "nothing after the short, PSH-marked last"
        );
        let mut frame = c.take().unwrap().to_vec();
        assert!(c.is_empty() && c.take().is_none());
        let ip_len = if v4 { 20 } else { 40 };
        let hdr = VnetHdr::parse(&frame).unwrap();
        assert_eq!(hdr.flags, F_NEEDS_CSUM);
        assert_eq!(hdr.gso_type, if v4 { GSO_TCPV4 } else { GSO_TCPV6 });
        assert_eq!(
            (hdr.gso_size, hdr.csum_start, hdr.csum_offset),
            (1000, ip_len as u16, 16)
        );
        // The partial checksum, finished as the kernel would, holds over
        // the whole super-packet.
        let mut whole = frame[VNET_HDR_LEN..].to_vec();
        complete_checksum(&mut whole, ip_len, 16).unwrap();
        assert!(
            verifies(&whole[ip_len..], tcp_pseudo(&whole)),
            "super-packet checksum"
        );
        if v4 {
            assert!(verifies(&whole[..20], 0), "IPv4 header checksum");
        }
        // Cut again, it gives back the very segments.
        let mut scratch = vec![0u8; 2000];
        let mut again = Vec::new();
        split(&mut frame, &mut scratch, |s| again.push(s.to_vec())).unwrap();
        assert_eq!(again, segs);
    }

    #[test]
    fn a_stream_s_segments_join_into_one_super_packet_v4() {
        coalesced(true);
    }

    #[test]
    fn a_stream_s_segments_join_into_one_super_packet_v6() {
        coalesced(false);
    }

    #[test]
    fn segments_that_must_not_join_do_not() {
        let segs = stream(true, 3000, 1000);
        const TCP: usize = 20;
        type Change = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "a gap",
                Box::new(|s| s[TCP + 7] = s[TCP + 7].wrapping_add(1)),
            ),
            ("another port", Box::new(|s| s[TCP + 1] ^= 1)),
            ("another ACK number", Box::new(|s| s[TCP + 11] ^= 1)),
            ("another window", Box::new(|s| s[TCP + 15] ^= 1)),
            ("other options", Box::new(|s| s[TCP + 31] ^= 1)),
            ("another TTL", Box::new(|s| s[8] ^= 1)),
            ("an IPv4 ID out of order", Box::new(|s| s[5] ^= 2)),
            ("a SYN", Box::new(|s| s[TCP + 13] |= 0x02)),
            ("a FIN", Box::new(|s| s[TCP + 13] |= 0x01)),
            ("a bad TCP checksum", Box::new(|s| s[TCP + 40] ^= 1)),
            ("a fragment", Box::new(|s| s[6] |= 0x20)),
        ];
        // A bad IPv4 header checksum (the cases below keep it right).
        let mut c = Coalescer::default();
        assert!(c.push(&segs[0]));
        let mut bad = segs[1].clone();
        bad[11] ^= 1;
        assert!(!c.push(&bad), "a bad IPv4 header checksum joined");
        for (what, change) in cases {
            let mut c = Coalescer::default();
            assert!(c.push(&segs[0]), "{what}: the first");
            let mut second = segs[1].clone();
            change(&mut second);
            // Keep the IPv4 header's own checksum right: only what the
            // case names differs.
            second[10..12].copy_from_slice(&[0, 0]);
            let ck = !fold(sum_words(&second[..20], 0));
            second[10..12].copy_from_slice(&ck.to_be_bytes());
            assert!(!c.push(&second), "{what} joined");
            // What was gathered alone comes out as it came.
            let out = c.take().unwrap();
            assert_eq!(&out[..VNET_HDR_LEN], &PLAIN);
            assert_eq!(&out[VNET_HDR_LEN..], &segs[0][..], "{what}");
        }
        // Not TCP at all: never starts one.
        let mut c = Coalescer::default();
        let mut udp = segs[0].clone();
        udp[9] = 17;
        assert!(!c.push(&udp) && c.is_empty());
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut scratch = [0u8; 64];
        let mut none = |_: &[u8]| panic!("no packet from a bad frame");
        assert_eq!(
            split(&mut [0; 4], &mut scratch, &mut none),
            Err(OffloadError::Truncated)
        );
        // NEEDS_CSUM pointing past the end.
        let mut f = vec![0u8; VNET_HDR_LEN + 20];
        f[0] = F_NEEDS_CSUM;
        f[6..8].copy_from_slice(&19u16.to_ne_bytes());
        assert_eq!(
            split(&mut f, &mut scratch, &mut none),
            Err(OffloadError::BadChecksumOffset)
        );
        // UDP fragmentation offload: not asked for.
        let mut f = vec![0u8; VNET_HDR_LEN + 20];
        f[1] = 3;
        assert_eq!(
            split(&mut f, &mut scratch, &mut none),
            Err(OffloadError::UnsupportedGso(3))
        );
        // TSO with a zero MSS, and TSO of a UDP packet.
        let mut f = super_packet(true, 100, 0);
        assert_eq!(
            split(&mut f, &mut scratch, &mut none),
            Err(OffloadError::NotTcp)
        );
        let mut f = super_packet(true, 100, 50);
        f[VNET_HDR_LEN + 9] = 17;
        assert_eq!(
            split(&mut f, &mut scratch, &mut none),
            Err(OffloadError::NotTcp)
        );
        // A segment that does not fit the scratch buffer.
        let mut f = super_packet(false, 3000, 1000);
        assert_eq!(
            split(&mut f, &mut scratch, &mut none),
            Err(OffloadError::SegmentTooLarge)
        );
    }
}
