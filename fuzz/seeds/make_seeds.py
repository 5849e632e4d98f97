#!/usr/bin/env python3
"""Writes the seeds of the uci, control and netlink targets (the ubus_frame
seeds are cut from captures, see ../README.md). Run from this directory:
python3 make_seeds.py.

- uci: the files of ../../tests/fixtures/uci/ (written or read by the real
  uci tool) and the package's default ../../openwrt/meshd/files/meshd.config,
  each after a selector byte (which member the editor adds and removes),
  plus a complete file with two members written here.
- control: the two requests, in one write and byte by byte, a line that is
  too long, a partial line from a client that goes silent.
- netlink: reply datagrams built as the kernel builds them (native byte
  order, little endian here): a route dump (IPv4 and IPv6, a throw route,
  a cloned one, metrics with an MTU), a rule dump, a neighbour dump, a link
  reply, an ack, a kernel error with an extended-ack message, an
  interrupted dump.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- uci ----
fixtures = os.path.join(ROOT, "tests", "fixtures", "uci")
for name in sorted(os.listdir(fixtures)):
    if name.endswith(".conf"):
        with open(os.path.join(fixtures, name), "rb") as f:
            write("uci", name, bytes([0b10_00_00_00]) + f.read())
with open(os.path.join(ROOT, "openwrt", "meshd", "files", "meshd.config"), "rb") as f:
    write("uci", "openwrt-default.conf", bytes([0]) + f.read())
TWO_MEMBERS = b"""
config meshd 'main'
\toption private_key_file '/etc/meshd/private.key'
\toption overlay '10.0.0.1'
\toption asn '65001'
\tlist announce '192.168.1.0/24'
\toption bfd '1'

config member 'r2'
\toption public_key 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='
\toption overlay '10.0.0.2'
\toption asn '65002'
\tlist prefix '192.168.2.0/24'
\tlist endpoint '198.51.100.2:51820'

config member
\toption name 'r3'
\toption public_key 'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw='
\toption overlay '10.0.0.3'
\toption asn '65003'
\tlist endpoint 'r3.example.net:51820'
"""
write("uci", "two-members.conf", bytes([0b01_00_00_00]) + TWO_MEMBERS)

# ---- control ----
write("control", "status", b"\xff\x01status\n")
write("control", "status-json-bytewise", b"\x00\x01status json\n")
write("control", "too-long", b"\x3f\x00" + b"status " * 40)
write("control", "silent", b"\x03\x00stat")
write("control", "garbage-then-close", b"\x07\x01\xffstatus\x00json")

# ---- netlink ----
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_NEWROUTE, RTM_NEWNEIGH, RTM_NEWRULE = 16, 24, 28, 32
SEQ = 7


def pad(b):
    return b + b"\0" * (-len(b) % 4)


def nlmsg(ty, payload, flags=0x2, seq=SEQ):
    return pad(struct.pack("<IHHII", 16 + len(payload), ty, flags, seq, 4242) + payload)


def rta(ty, data):
    return pad(struct.pack("<HH", 4 + len(data), ty) + data)


def route(family, dst, plen, oif, rtype=1, table=254, proto=0xC8, flags=0, extra=b""):
    rtm = struct.pack("<BBBBBBBBI", family, plen, 0, 0, table, proto, 0, rtype, flags)
    attrs = rta(1, dst) + rta(4, struct.pack("<I", oif)) + rta(15, struct.pack("<I", table)) + extra
    return nlmsg(RTM_NEWROUTE, rtm + attrs)


v4 = bytes([192, 168, 2, 0])
v6 = bytes.fromhex("fd020000000000000000000000000000")
mtu = rta(8, rta(2, struct.pack("<I", 1380)))  # RTA_METRICS { RTAX_MTU }
dump = (route(2, v4, 24, 5, extra=rta(6, struct.pack("<I", 20)) + rta(7, bytes([10, 0, 0, 1])) + mtu)
        + route(10, v6, 64, 5)
        + route(2, bytes([10, 9, 0, 0]), 16, 1, rtype=9)      # a throw route
        + route(2, bytes([8, 8, 8, 8]), 32, 2, flags=0x200)   # cloned: skipped
        + nlmsg(NLMSG_DONE, struct.pack("<i", 0)))
write("netlink", "route-dump", struct.pack("<I", SEQ) + dump)


def rule(family, prio, table, src=None, src_len=0, iif=None, proto=None):
    hdr = struct.pack("<BBBBBBBBI", family, 0, src_len, 0, 0, 0, 0, 1, 0)  # FR_ACT_TO_TBL
    attrs = rta(6, struct.pack("<I", prio)) + rta(15, struct.pack("<I", table)) + rta(21, bytes([0xC8]))
    if src:
        attrs += rta(2, src)
    if iif:
        attrs += rta(3, iif + b"\0")
    if proto is not None:
        attrs += rta(22, bytes([proto]))
    attrs += rta(14, struct.pack("<I", 0))  # suppress_prefixlength 0
    return nlmsg(RTM_NEWRULE, hdr + attrs)


rules = (rule(2, 100, 200, src=bytes([192, 168, 1, 0]), src_len=24, iif=b"br-lan", proto=17)
         + rule(10, 101, 200) + nlmsg(NLMSG_DONE, struct.pack("<i", 0)))
write("netlink", "rule-dump", struct.pack("<I", SEQ) + rules)


def neigh(family, ifindex, addr, mac, state=0x02):
    ndm = struct.pack("<BBHiHBB", family, 0, 0, ifindex, state, 0, 1)
    return nlmsg(RTM_NEWNEIGH, ndm + rta(1, addr) + rta(2, mac))


neighs = (neigh(2, 3, bytes([192, 168, 1, 10]), bytes.fromhex("f8461c000001"))
          + neigh(10, 3, bytes.fromhex("fe800000000000000000000000000001"), bytes.fromhex("00d9d1000002"), 0x04)
          + nlmsg(NLMSG_DONE, struct.pack("<i", 0)))
write("netlink", "neighbour-dump", struct.pack("<I", SEQ) + neighs)

ifinfo = struct.pack("<BBHiII", 0, 0, 0, 7, 0x1, 0)
write("netlink", "link", struct.pack("<I", SEQ) + nlmsg(RTM_NEWLINK, ifinfo + rta(3, b"meshd0\0"))
      + nlmsg(NLMSG_ERROR, struct.pack("<i", 0) + struct.pack("<IHHII", 32, 18, 5, SEQ, 0)))
request = struct.pack("<IHHII", 28, 24, 0x605, SEQ, 0)
write("netlink", "ack", struct.pack("<I", SEQ) + nlmsg(NLMSG_ERROR, struct.pack("<i", 0) + request, flags=0x100))
write("netlink", "error-extack", struct.pack("<I", SEQ) + nlmsg(
    NLMSG_ERROR, struct.pack("<i", -22) + request + rta(1, b"Invalid prefix for given prefix length\0"), flags=0x300))
write("netlink", "interrupted-and-late", struct.pack("<I", SEQ)
      + nlmsg(RTM_NEWROUTE, b"\2\x18" + b"\0" * 10, seq=SEQ - 1)
      + route(2, v4, 24, 5)[:8] + struct.pack("<H", 0x12) + route(2, v4, 24, 5)[10:]
      + nlmsg(NLMSG_DONE, struct.pack("<i", 0), flags=0x12))


# tun_offload: byte 0 is the scratch size / 16 (100: 1600 bytes), then a
# virtio_net_hdr (native order) and a packet.
def vnet(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def tcp_packet(v6, payload):
    tcp = struct.pack(">HHIIBBHHH", 40000, 5201, 1000, 1, 5 << 4, 0x18, 512, 0, 0) + payload
    if v6:
        ip = struct.pack(">IHBB", 0x60000000, len(tcp), 6, 64) + bytes(15) + b"\1" + bytes(15) + b"\2"
    else:
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 7, 0x4000, 64, 6, 0,
                         bytes([192, 168, 1, 10]), bytes([192, 168, 2, 10]))
    return ip + tcp


write("tun_offload", "tso4", b"\x64" + vnet(1, 1, 40, 1380, 20, 16) + tcp_packet(False, bytes(range(256)) * 16))
write("tun_offload", "tso6", b"\x64" + vnet(1, 4, 60, 1360, 40, 16) + tcp_packet(True, bytes(range(256)) * 12))
write("tun_offload", "tso4-ecn-small-scratch", b"\x04" + vnet(1, 0x81, 40, 100, 20, 16) + tcp_packet(False, bytes(300)))
write("tun_offload", "needs-csum", b"\x00" + vnet(1, 0, 0, 0, 20, 16) + tcp_packet(False, b"hello"))
write("tun_offload", "plain", b"\x00" + vnet(0, 0, 0, 0, 0, 0) + tcp_packet(False, b"hi"))
