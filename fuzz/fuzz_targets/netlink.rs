//! Netlink replies: what the kernel (or anything that can send on the
//! route socket) answers meshd's requests and dumps with.
//!
//! Input layout: bytes 0..4 are the sequence number of the exchange
//! (native order, as netlink's); the rest is one reply datagram.
//! `netlink::read_reply` reads it as `Netlink`'s exchanges do: split into
//! messages, each classified (skip, ack, end of dump, a kernel error, data),
//! each data message parsed as a route, a rule, a neighbour or a link.
//!
//! Checked: no panic; a kernel error is an `Err` that displays; nothing
//! comes after an ack or the end of a dump; a route, rule or neighbour that
//! parses displays (routes and rules), and its addresses are of its family
//! with a prefix length the family allows (a rule's source prefix is never
//! /0: that reads as no source).
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use meshd::sys::netlink::{read_reply, ReplyMessage, AF_INET};

fn max_len(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((seq, reply)) = data.split_first_chunk::<4>() else {
        return;
    };
    let seq = u32::from_ne_bytes(*seq);
    let messages = match read_reply(reply, seq) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for (k, m) in messages.iter().enumerate() {
        match m {
            ReplyMessage::Ack | ReplyMessage::Done => {
                assert_eq!(
                    k + 1,
                    messages.len(),
                    "messages after the end of the exchange"
                )
            }
            ReplyMessage::Route(Ok(Some(r))) => {
                assert!(r.prefix_len <= max_len(r.dst), "{r:?}");
                if let Some(src) = r.src {
                    assert_eq!(src.is_ipv4(), r.dst.is_ipv4(), "{r:?}");
                }
                let _ = r.to_string();
            }
            ReplyMessage::Rule(Ok(Some(r))) => {
                if let Some((a, len)) = r.src {
                    assert!(len > 0 && len <= max_len(a), "{r:?}");
                    assert_eq!(a.is_ipv4(), r.family == AF_INET, "{r:?}");
                }
                let _ = r.to_string();
            }
            ReplyMessage::Neighbour(Ok(Some(n))) => {
                let _ = format!("{n:?}");
            }
            ReplyMessage::Route(Err(e))
            | ReplyMessage::Rule(Err(e))
            | ReplyMessage::Neighbour(Err(e))
            | ReplyMessage::Link(Err(e)) => {
                let _ = e.to_string();
            }
            _ => {}
        }
    }
});
