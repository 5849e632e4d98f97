#!/usr/bin/env python3
"""Writes the seeds of the invite target (its input layout is in the
target's header). Run from this directory: python3 invite_seeds.py.
A token is built here the way mesh_core::invite encodes one (version 1,
postcard, 4 octets of BLAKE2s over "meshd invite checksum" and the rest),
so that the fuzzer starts past the checksum; the exchange seed scripts a
join, an answer taken, a reuse, an expiry and junk."""
import base64
import hashlib
import os


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s):
    return varint(len(s)) + s.encode()


def token(numbers):
    body = bytes([1] * 32) + string("r1")
    body += varint(2)
    body += varint(0) + bytes([198, 51, 100, 1]) + varint(51820)  # V4
    body += varint(1) + bytes([0x20, 0x01, 0x0d, 0xb8] + [0] * 11 + [1]) + varint(51820)  # V6
    body += bytes([7] * 8) + bytes([0x42] * 16) + varint(1_800_000_000) + string("friend")
    if numbers:
        # Some(Numbers): a hand-numbered inviter, 10.0.0.1, AS 65001,
        # announcing 192.168.1.0/24.
        body += bytes([1, 10, 0, 0, 1]) + varint(65001) + varint(1) + bytes([192, 168, 1, 0, 24])
    else:
        body += bytes([0])  # None: numbers from the key
    data = bytes([1]) + body
    return data + hashlib.blake2s(b"meshd invite checksum" + data).digest()[:4]


def write(name, data):
    os.makedirs("invite", exist_ok=True)
    with open(os.path.join("invite", name), "wb") as f:
        f.write(data)


t = token(False)
write("token_bytes", bytes([0]) + t)
write("token_text", bytes([1]) + b"MESHD1" + base64.b32encode(t).rstrip(b"="))
write("token_numbers", bytes([0]) + token(True))
write("exchange",
      bytes([2])
      + bytes([1, 0, 0, 0])        # the joiner's own request for invite 0
      + bytes([3, 0x80])           # the accept, to the joiner
      + bytes([1, 0, 0, 0])        # the same again: answered again
      + bytes([1, 0, 5, 5])        # another joiner: refused as used
      + bytes([3, 0x82])           # that refusal, to the joiner: not its own
      + bytes([2, 60])             # 15 s pass: past the expiry
      + bytes([1, 1, 9, 9])        # invite 1, expired
      + bytes([1, 2, 9, 9])        # invite 2, never made
      + bytes([0, 6, 0x4a, 1, 1, 0, 0, 0]))  # junk
