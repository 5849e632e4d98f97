//! # mesh-core
//!
//! The sans-IO heart of meshd: everything a mesh router does except touching
//! the operating system. Time comes in as an [`embassy_time::Instant`] made by
//! the caller, randomness as a seed, bytes as slices.
//!
//! ## What holds, exactly
//!
//! - mesh-core's own code is `#![no_std]` and allocation-free: every queue,
//!   table and buffer is a fixed-size array or `heapless` collection sized at
//!   compile time, or a slice the caller gives (below); running out is an
//!   explicit error or a counter, never a
//!   panic. It reads no clock (embassy-time's `Instant::now` is never called)
//!   and draws no randomness of its own (the seed makes TCP sequence numbers,
//!   BFD discriminators, STUN transaction ids and punch tokens).
//! - The one exception is the WireGuard session, [`wg::boring`], compiled
//!   with feature `std`: boringtun's `noise::Tunn` reads the system clock
//!   (`std::time::Instant` for its timers, `SystemTime` for handshake
//!   timestamps), allocates (packets queued during a handshake, the shared
//!   handshake rate limiter in an `Arc`), takes `parking_lot` locks, and draws
//!   OS randomness (`OsRng`: ephemeral keys, the rate limiter's cookie
//!   secret). Nothing above [`wg`] sees boringtun types; with feature `sim`
//!   its clock follows a mock the simulation advances.
//! - smoltcp (the overlay's TCP) is built without `alloc`: its sockets borrow
//!   their buffers from [`overlay::OverlayStorage`].
//! - What grows with the members a node may hold (the member table, the
//!   sessions' sockets and their buffers) is the caller's memory, a
//!   [`node::NodeStorage`] of slices sized at start; the rest of the node is
//!   fixed-size. [`node::NodeMemory`], with feature `std`, allocates that
//!   storage once (`Vec`s, the buffers zeroed so that their pages are mapped
//!   only when a session writes them): a convenience for drivers with a heap,
//!   outside the node.
//!
//! ## The driver contract
//!
//! Every state machine here speaks one vocabulary:
//! - `handle_*(now, ...)` feeds an input (bytes, a timeout, a control call);
//! - `#[must_use] poll_transmit()`, `poll_event()` (and, for the node,
//!   `poll_lan_packet()` and `poll_discovery_packet()`) drain outputs, and **must be drained until they
//!   return `None` after every input**. What they lend (a datagram's bytes)
//!   is valid until the next call;
//! - `poll_timeout()` names the next instant at which `handle_timeout(now)`
//!   must be called if nothing else happens first (the node also says why).
//!
//! [`node::Node`] drains its children ([`bfd::Session`], [`bgp::session::Session`]
//! and the node's own rooms) this way, and a driver drains the node the same
//! way. The daemon's loop is this one with epoll, sockets, a TUN device and
//! a timerfd:
//!
//! ```
//! use core::net::SocketAddr;
//! use mesh_core::node::{Node, Port};
//! use mesh_core::wg::Crypto;
//! use mesh_core::Instant;
//!
//! /// What the platform gives the driver.
//! trait Platform {
//!     fn now(&self) -> Instant;
//!     /// Blocks until a datagram or a LAN packet arrives, or `deadline`.
//!     fn wait(&mut self, deadline: Option<Instant>) -> Input;
//!     fn send(&mut self, to: SocketAddr, bytes: &[u8], from: Port);
//!     fn write_lan(&mut self, packet: &[u8]);
//!     /// A link-layer broadcast or multicast on the LAN (relayed discovery).
//!     fn broadcast_lan(&mut self, packet: &[u8]);
//! }
//!
//! enum Input {
//!     Datagram(SocketAddr, Vec<u8>),
//!     LanPacket(Vec<u8>),
//!     /// A console's discovery broadcast, captured on the LAN.
//!     Discovery(Vec<u8>),
//!     Deadline,
//! }
//!
//! fn drive<C: Crypto>(node: &mut Node<'_, C>, io: &mut impl Platform) -> ! {
//!     loop {
//!         let deadline = node.poll_timeout().map(|(at, _why)| at);
//!         match io.wait(deadline) {
//!             Input::Datagram(from, bytes) => node.handle_udp(io.now(), from, &bytes),
//!             Input::LanPacket(packet) => node.handle_lan_packet(io.now(), &packet),
//!             Input::Discovery(packet) => node.handle_discovery_capture(io.now(), &packet),
//!             Input::Deadline => node.handle_timeout(io.now()),
//!         }
//!         // After every input, everything out, before waiting again.
//!         while let Some(t) = node.poll_transmit() {
//!             io.send(t.to, t.bytes, t.from);
//!         }
//!         while let Some(packet) = node.poll_lan_packet() {
//!             io.write_lan(packet);
//!         }
//!         while let Some(packet) = node.poll_discovery_packet() {
//!             io.broadcast_lan(packet);
//!         }
//!         while let Some(event) = node.poll_event() {
//!             let _ = event; // log it; program a kernel route
//!         }
//!     }
//! }
//! ```
//!
//! Capacities (members, prefixes, sessions, buffers) are fixed at compile time;
//! running out is an explicit error, never a panic.
//!
//! ## Where things live
//!
//! | to add | where |
//! |---|---|
//! | a BGP path attribute | [`bgp::attr`] (held by value) and [`bgp::update`] (codec, RFC 7606 errors); the decision process in [`rib`]; what a member may send in the node's import policy (`node/engine.rs`) |
//! | a kind of packet on the mesh port | [`node::Node::handle_udp`] tells it apart (STUN by its magic cookie); its logic is a child of the node like `node/stun.rs` |
//! | control traffic inside the tunnels | [`node::Control`], handled by the node's root |
//! | a per-member policy | a field of the node's slot (`node/slots.rs`) with its child, like `node/relay.rs` (transit cap) or `node/supervision.rs` (BFD hold-down) |
//! | a ubus method | the daemon's `src/ubus_api.rs`: one entry of `METHODS` holds its name, signature and handler |
//! | a wire code table | [`enum_with_unknown!`] |

#![no_std]
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

#[cfg(test)]
extern crate std;

#[macro_use]
mod macros;

pub mod bfd;
pub mod bgp;
pub mod discovery;
pub mod group;
pub mod hash;
pub mod identity;
pub mod invite;
pub mod ip;
pub mod nat;
pub mod netmap;
pub mod node;
pub mod overlay;
pub mod pex;
pub mod prefix;
pub mod rib;
pub mod stun;
pub mod wg;

pub use embassy_time::{Duration, Instant};
pub use prefix::{Family, Prefix};
