//! # mesh-core
//!
//! The sans-IO heart of meshd: everything a mesh router does except touching
//! the operating system. `#![no_std]`, no allocation, no clock reads, no
//! randomness of its own: time comes in as an [`embassy_time::Instant`] made by
//! the caller, randomness as a seed, bytes as slices.
//!
//! ## The driver contract
//!
//! Every state machine here speaks one vocabulary:
//! - `handle_*(now, ...)` feeds an input (bytes, a timeout, a control call);
//! - `poll_transmit()`, `poll_event()` (and friends) drain outputs, and **must be
//!   drained until they return `None` after every input**;
//! - `poll_timeout()` names the next instant at which `handle_timeout(now)` must
//!   be called, if nothing else happens first.
//!
//! A driver loop therefore looks like this (pseudo-code, the daemon's real loop
//! adds sockets and epoll):
//!
//! ```text
//! loop {
//!     wait for input or until machine.poll_timeout();
//!     match input {
//!         Bytes(b)  => machine.handle_bytes(now, b),
//!         Timeout   => machine.handle_timeout(now),
//!     }
//!     while let Some(out) = machine.poll_transmit() { send(out) }
//!     while let Some(ev)  = machine.poll_event()    { log(ev) }
//! }
//! ```
//!
//! Capacities (members, prefixes, sessions, buffers) are fixed at compile time;
//! running out is an explicit error, never a panic.

#![no_std]
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

#[cfg(test)]
extern crate std;

#[macro_use]
mod macros;

pub mod bfd;
pub mod bgp;
pub mod hash;
pub mod ip;
pub mod nat;
pub mod node;
pub mod overlay;
pub mod pex;
pub mod prefix;
pub mod rib;
pub mod stun;
pub mod wg;

pub use embassy_time::{Duration, Instant};
pub use prefix::{Family, Prefix};
