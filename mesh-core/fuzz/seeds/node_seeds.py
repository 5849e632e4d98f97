#!/usr/bin/env python3
"""Writes the seeds of the node_udp and node_lan targets (their input
layouts are in the targets' headers). Run from this directory:
python3 node_seeds.py. Each seed is a short script of what the targets
can do, so that the fuzzer starts from inputs that bring the mesh up and
reach each kind of step, rather than having to find a working delay first.
"""
import os

PEERS = 0x08
SECONDS_22 = 197  # a delay byte: 197 - 175 = 22 s, long enough for BGP
MS_20 = 20


def adv(d):
    return bytes([0, d])


def write(target, name, data):
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, name), "wb") as f:
        f.write(bytes(data))


# ---- node_udp: ops 0..9 ----
def raw(src, payload):
    return bytes([1, src, len(payload)]) + payload


def wg(src, kind, index_sel, n=0, body=b""):
    return bytes([2, src, kind - 1, index_sel, n]) + body


def stun_like(src, ty, tid_sel, attrs, flags):
    return bytes([3, src, ty >> 8, ty & 0xFF, tid_sel, len(attrs), flags]) + attrs


udp = "node_udp"
write(udp, "alone_garbage", bytes([0]) + raw(0, b"\x04\x00\x00\x00\x01\x02\x03") + raw(2, b"\xff" * 32) + adv(MS_20))
write(udp, "alone_wireguard_shapes", bytes([0]) + adv(MS_20) + wg(0, 1, 0x80) + wg(1, 2, 0) + wg(0, 3, 0) + wg(2, 4, 0, 3) + adv(MS_20))
write(udp, "alone_stun_lookalikes",
      bytes([0]) + adv(MS_20)
      + stun_like(0, 0x0001, 0x80, b"", 2)            # a Binding request with FINGERPRINT
      + stun_like(1, 0x0101, 0, b"\x00\x20\x00\x08\x00\x01\x12\x34\x05\x06\x07\x08", 2)  # a success to R1's request
      + stun_like(2, 0x0111, 0, b"", 4) + bytes([0, 0x40])  # an error response whose length lies
      + stun_like(0, 0x0011, 0x80, b"\x80\x22\x00\x03abc\x00", 0))  # an indication
write(udp, "peers_converge", bytes([PEERS]) + adv(SECONDS_22))
write(udp, "peers_replays_and_mutations",
      bytes([PEERS]) + adv(SECONDS_22)
      + bytes([5, 0, 0]) + bytes([5, 3, 1])          # replays, from the source and elsewhere
      + bytes([6, 1, 1, 0, 0x55]) + bytes([6, 2, 0, 40, 0])  # a flipped tag, a truncation
      + bytes([7, 0, 0]) + bytes([7, 1, 0]) + bytes([7, 2, 0]) + bytes([7, 3, 9])  # loss, double, redirect, cut
      + adv(MS_20))
write(udp, "peers_forged_stun_answers",
      bytes([PEERS | 2]) + adv(SECONDS_22)
      + bytes([4, 0, 0, 0, 0]) + bytes([4, 1, 1, 1, 0]) + bytes([4, 2, 3, 2, 1]) + adv(200))
write(udp, "exit_inbound",
      bytes([PEERS | 1]) + adv(SECONDS_22) + bytes([8, 0x80, 0, 4]) + b"ping" + bytes([8, 0, 1, 4]) + b"pong" + bytes([9]))
write(udp, "peers_long_silence", bytes([PEERS]) + adv(SECONDS_22) + bytes([7, 0, 0]) * 6 + adv(255) + adv(255) + adv(255))


# ---- node_lan: ops 0..7 ----
def pkt(flags, src, dst, proto, ttl, ports, payload=b""):
    return bytes([flags, src, dst, proto, ttl, ports, len(payload)]) + payload


def ipip(flags, src, dst, ttl, inner):
    return bytes([flags, src, dst, 4, ttl, 0]) + inner


GAME = 0x1B  # ports 9302 -> 9302
BFD = 0x00
lan = "node_lan"
# address selectors: 0x10|n-1 -> host .2 of R(n)'s LAN; 3,4,5 the overlays of R1..R3
R1H, R2H, R3H = 0x10, 0x11, 0x12
write(lan, "alone_lan_packets",
      bytes([0])
      + bytes([1]) + pkt(0, R1H, R2H, 0, 64, GAME, b"game")       # to a member (no tunnel yet)
      + bytes([1]) + pkt(0, R1H, 9, 0, 64, GAME, b"web")          # no route: ICMP unreachable
      + bytes([1]) + pkt(1, R1H, R2H, 3, 64, GAME, b"\x80\x00\x00\x00\x00\x01\x00\x01")  # ICMPv6 echo
      + bytes([1]) + pkt(0, R1H, 3, 2, 64, 0x02 | 0x10, b"")      # TCP to R1's overlay (BGP port)
      + bytes([5, 4]) + b"\x45\x00\x00\x14")
write(lan, "transit_ttl",
      bytes([PEERS]) + adv(SECONDS_22)
      + bytes([2]) + pkt(0, R2H, R3H, 0, 64, GAME, b"hop")        # R2 -> R1 -> R3
      + bytes([2]) + pkt(0, R2H, R3H, 0, 1, GAME, b"ttl1")        # time exceeded at R1
      + bytes([4]) + pkt(0, R2H, R3H, 0, 2, GAME, b"lan")         # from R2's LAN
      + bytes([3]) + pkt(1, R3H, R2H, 0, 64, GAME, b"six")        # IPv6
      + adv(MS_20))
write(lan, "spoofed_and_martians",
      bytes([PEERS]) + adv(SECONDS_22)
      + bytes([2]) + pkt(0, 8, R1H, 0, 64, GAME, b"spoof")        # a stranger's source
      + bytes([2]) + pkt(0, R2H, 10, 0, 64, GAME, b"lo")          # to loopback
      + bytes([2]) + pkt(0, R2H, 12, 0, 64, GAME, b"bcast")       # to broadcast
      + bytes([3]) + pkt(0, R3H, 11, 0, 64, GAME, b"mdns")        # multicast
      + bytes([2]) + pkt(0, 3, R3H, 0, 64, GAME, b"as R1")        # R2 posing as R1
      + adv(MS_20))
write(lan, "posing_as_own_home",
      bytes([PEERS]) + adv(SECONDS_22)
      + bytes([2]) + pkt(0, R1H, 0x20, 0, 64, GAME, b"as R1's host")   # R2: R1's host to another
      + bytes([3]) + pkt(1, R1H, 0x20, 0, 64, GAME, b"six")            # R3, IPv6
      + bytes([2]) + pkt(0, 3, R1H, 0, 64, GAME, b"as R1")             # R1's overlay to its host
      + adv(MS_20))
write(lan, "control_in_tunnel",
      bytes([PEERS]) + adv(SECONDS_22)
      + bytes([2]) + pkt(0, 4, 3, 0, 255, BFD, b"\x20\x40\x03\x18" + b"\x00" * 20)  # a BFD lookalike
      + bytes([2]) + pkt(0, 4, 3, 0, 64, 0x09, b"\x00\x01\x02")   # peer exchange port
      + bytes([2]) + ipip(0, 4, 3, 64, pkt(0, R2H, 9, 0, 64, GAME, b"to the internet"))  # IP in IP
      + adv(MS_20))
write(lan, "exit_wrapped",
      bytes([PEERS | 1]) + adv(SECONDS_22)
      + bytes([2]) + ipip(0, 4, 3, 64, pkt(0, R2H, 9, 0, 64, GAME, b"console"))
      + adv(MS_20) + bytes([7, 0, 0, 5]) + b"reply" + adv(MS_20))
write(lan, "broken_headers",
      bytes([PEERS]) + adv(SECONDS_22)
      + bytes([2]) + pkt(2, R2H, R1H, 0, 64, GAME, b"csum")       # bad header checksum
      + bytes([2]) + pkt(16, R2H, R1H, 0, 64, GAME, b"len") + bytes([0xff, 0xff])
      + bytes([2]) + pkt(32, R2H, R1H, 0, 64, GAME, b"cut") + bytes([10])
      + bytes([2]) + pkt(8, R2H, R3H, 0, 64, GAME, b"frag")       # a later fragment
      + bytes([6, 3]) + b"\x60\x00\x00")
