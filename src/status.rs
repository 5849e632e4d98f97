//! What `meshd status` shows: members, tunnels, BGP sessions, routes with their
//! AS path and why the best path won, counters. One JSON document, written
//! field by field as the node is walked (no tree: see [`crate::json`]); the
//! ubus methods answer it or a part of it, and `meshd status` renders its
//! text from the same document, parsed back in the client ([`render`]).

use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr};

use mesh_core::bgp::error::DownReason;
use mesh_core::nat::{Filtering, Mapping};
use mesh_core::node::Node;
use mesh_core::rib::Source;
use mesh_core::wg::Crypto;
use mesh_core::Instant;

use crate::consoles::Console;
use crate::json::{Json, Obj, Show, Sink};

fn secs(d: mesh_core::Duration) -> f64 {
    (d.as_millis() as f64 / 100.0).round() / 10.0
}

/// Milliseconds with microseconds as a fraction.
fn ms(d: mesh_core::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// A value written as its `Debug` name (a state: `Established`, `Up`).
struct Name<T>(T);

impl<T: fmt::Debug> fmt::Display for Name<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Why a session went down, in words.
struct Down(DownReason);

impl fmt::Display for Down {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            DownReason::SentNotification(e) => write!(f, "sent NOTIFICATION: {e}"),
            DownReason::ReceivedNotification(e) => write!(f, "received NOTIFICATION: {e}"),
            DownReason::ConnectionLost => f.write_str("connection lost"),
            DownReason::Stopped => f.write_str("stopped"),
        }
    }
}

fn source_name<'n, C: Crypto>(node: &'n Node<'_, C>, s: Source) -> &'n str {
    match s {
        Source::Local => "local",
        Source::Peer(p) => node.member_name(p).unwrap_or("?"),
    }
}

/// What a console gets from a NAT: RFC 4787 mapping and filtering, and the
/// console makers' names for it (`../shared/design/CONSOLES.md`).
fn nat_behaviour(o: &mut Obj<'_>, mapping: Mapping, filtering: Filtering) {
    let (playstation, xbox, switch) = match (mapping, filtering) {
        (Mapping::NoNat, _) => (Some(1), Some("Open"), Some("A")),
        (Mapping::EndpointIndependent, Filtering::EndpointIndependent) => {
            (Some(2), Some("Open"), Some("A"))
        }
        (Mapping::EndpointIndependent, Filtering::AddressAndPortDependent) => {
            (Some(2), Some("Moderate"), Some("B"))
        }
        (Mapping::EndpointIndependent, Filtering::Unknown) => (Some(2), None, None),
        (Mapping::EndpointDependent, _) => (Some(3), Some("Strict"), Some("D")),
        (Mapping::Unknown, _) => (None, None, None),
    };
    o.f("mapping", mapping.as_str())
        .f("filtering", filtering.as_str())
        .f("playstation", playstation)
        .f("xbox", xbox)
        .f("switch", switch);
}

/// What a console behind this router gets without a game exit: the home's
/// NAT as this router measured it for itself, except that a router with a
/// public address of its own still puts its LAN behind its masquerade
/// (Linux keeps a connection's port, endpoint-independent in practice, and
/// lets in only the addresses and ports the console sent to), which is not
/// what the router's own socket saw: no NAT at all.
fn console_nat(o: &mut Obj<'_>, mapping: Mapping, filtering: Filtering) {
    match mapping {
        Mapping::NoNat => nat_behaviour(
            o,
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        ),
        _ => nat_behaviour(o, mapping, filtering),
    }
}

/// Consoles, the exits the mesh offers, and this router's own exit: the
/// fields of the `exit` part of the status document, and the answer of the
/// ubus method `consoles`.
pub fn write_exit<C: Crypto>(
    o: &mut Obj<'_>,
    node: &Node<'_, C>,
    consoles: &[Console],
    now: Instant,
) {
    let own = node.config().overlay;
    let exit_name = |overlay: Ipv4Addr| -> String {
        if overlay == own {
            return "this router".into();
        }
        node.members()
            .find(|m| m.config.overlay == overlay)
            .map_or_else(|| overlay.to_string(), |m| m.config.name.to_string())
    };
    use mesh_core::node::Offer;
    let offer = match node.exit_offer() {
        Offer::NotConfigured => "not configured (option exit)".to_string(),
        Offer::Offered(a) => format!("offered at {a}"),
        Offer::Waiting => "waiting for the NAT check (members' STUN answers)".to_string(),
        Offer::Unreachable(b) => format!(
            "not offered: behind a {} NAT, the internet cannot reach this router unasked{}",
            b.as_str(),
            if b == mesh_core::nat::Behaviour::Forwarded {
                " (set option exit_ports to the range it forwards)"
            } else {
                ""
            }
        ),
    };
    let home = node.nat_report();
    let chosen = node.console_exits();
    o.f("offered", node.exit_offered().map(Show))
        .f("offer", offer)
        .arr("consoles", |a| {
            for c in consoles {
                let via = chosen.iter().find(|x| x.console == c.ip);
                let public = via.and_then(|x| {
                    node.exits()
                        .find(|e| e.overlay == x.exit)
                        .and_then(|e| e.public)
                });
                a.obj(|o| {
                    o.f("ip", Show(c.ip))
                        .f("mac", c.mac.as_ref().map(crate::consoles::format_mac))
                        .f("vendor", c.vendor.map(|v| v.as_str()))
                        .f("found", c.how.as_str())
                        .f("exit", via.map(|x| exit_name(x.exit)))
                        .f("public", public.map(Show))
                        .f(
                            "exit_since_s",
                            via.map(|x| secs(now.saturating_duration_since(x.since))),
                        )
                        .f("packets", via.map(|x| x.packets))
                        // Through an exit: its NAT (endpoint-independent
                        // mapping and filtering). Otherwise: what this
                        // home's own NAT does.
                        .obj("nat", |o| match via {
                            Some(_) => nat_behaviour(
                                o,
                                Mapping::EndpointIndependent,
                                Filtering::EndpointIndependent,
                            ),
                            None => console_nat(o, home.mapping, home.filtering),
                        });
                });
            }
        })
        .arr("exits", |a| {
            for e in node.exits() {
                a.obj(|o| {
                    o.f("name", exit_name(e.overlay))
                        .f("overlay", Show(e.overlay))
                        .f("public", e.public.map(Show))
                        .f("load", e.load)
                        .f("hops", e.hops)
                        .f("best", e.best)
                        .f("local", e.local);
                });
            }
        })
        // Mappings by home (up to a thousand of them: counted, not listed).
        .obj("mappings", |o| {
            let mut by_home: std::collections::BTreeMap<String, u64> = Default::default();
            for m in node.exit_mappings() {
                *by_home.entry(exit_name(m.internal.home)).or_default() += 1;
            }
            for (home, n) in by_home {
                o.f(&home, n);
            }
        })
        .f("mapped_consoles", node.exit_mapped_consoles());
    let st = node.exit_stats();
    let ns = node.exit_nat_stats();
    o.obj("counters", |o| {
        o.f("to_exit", st.to_exit)
            .f("from_exit", st.from_exit)
            .f("no_exit", st.no_exit)
            .f("too_big", st.too_big)
            .f("nat_out", st.nat_out)
            .f("nat_in", st.nat_in)
            .f("hairpin", st.hairpin)
            .f("to_kernel", st.to_kernel)
            .f("from_kernel", st.from_kernel)
            .f("spoofed", st.spoofed)
            .f("refused", st.refused)
            .f("fragments", st.fragments)
            .f("quota", st.quota)
            .f("full", st.full)
            .f("no_port", st.no_port)
            .f("rate_limited", st.rate_limited)
            .f("switches", st.switches)
            .f("mappings_created", ns.created)
            .f("mappings_expired", ns.expired)
            .f("inbound_unmapped", ns.inbound_unmapped)
            .f("ports_unavailable", ns.ports_unavailable);
    });
}

/// The daemon's packet loop: the longest it was busy at once over the last
/// one to two minutes (a stall this long delays every packet and every BFD
/// answer). Wall clock (what a packet waiting behind it saw, the
/// scheduler's delays included), the loop's own CPU time (its work), and
/// what it was handling then.
pub fn write_loop(o: &mut Obj<'_>, worst: &crate::daemon::LoopWorst) {
    let ms = |d: std::time::Duration| (d.as_micros() as f64 / 10.0).round() / 100.0;
    o.f("worst_ms_last_minute", ms(worst.wall))
        .f("worst_busy_ms_last_minute", ms(worst.busy))
        .f("worst_busy_in", worst.busy_in)
        .f("stalls", worst.stalls)
        .arr("work", |a| {
            for w in &worst.work {
                let mean_us = w.cpu().as_micros() as u64 / w.stretches.max(1);
                a.obj(|o| {
                    o.f("source", w.source)
                        .f("stretches", w.stretches)
                        .f("cpu_ms", ms(w.cpu()))
                        .f("mean_us", mean_us)
                        .f("p99_under_us", w.quantile_us(0.99))
                        .f("p999_under_us", w.quantile_us(0.999))
                        .list("histogram", w.histogram);
                });
            }
        })
        .list(
            "histogram_bounds_us",
            crate::daemon::SourceWork::BOUNDS_US.iter(),
        );
}

/// Relayed LAN discovery: whether it runs, the capture socket, and the
/// relay's counters in total and per port.
pub fn write_discovery(
    o: &mut Obj<'_>,
    stats: &mesh_core::discovery::Stats,
    main: &crate::config::MainConfig,
    lan: &crate::daemon::LanDiscovery,
) {
    let counters = |o: &mut Obj<'_>, c: &mesh_core::discovery::Counters| {
        o.f("captured", c.captured)
            .f("relayed", c.relayed)
            .f("dropped_rate", c.dropped_rate)
            .f("too_big", c.too_big)
            .f("foreign", c.foreign)
            .f("received", c.received)
            .f("emitted", c.emitted)
            .f("dropped_rate_in", c.dropped_rate_in)
            .f("forged", c.forged)
            .f("replayed", c.replayed)
            .f("refused", c.refused)
            .f("malformed", c.malformed);
    };
    let capture = match (&main.discovery, lan.is_open(), &lan.error) {
        (None, _, _) => "off",
        (Some(_), true, _) => "open",
        (Some(_), false, Some(e)) => e.as_str(),
        (Some(_), false, None) => "not open",
    };
    o.f("enabled", main.discovery.is_some())
        .f("interface", main.lan_interface.as_str())
        .f("capture", capture)
        .f("ssdp", main.discovery.as_ref().is_some_and(|p| p.ssdp()))
        .f("mdns", main.discovery.as_ref().is_some_and(|p| p.mdns()))
        .f("send_errors", lan.send_errors)
        .f("kernel_drops", lan.kernel_drops())
        .f("capture_pauses", lan.pauses)
        .obj("total", |o| counters(o, &stats.total))
        .arr("ports", |a| {
            for p in &stats.ports {
                a.obj(|o| {
                    counters(o, &p.counters);
                    o.f("port", p.port);
                });
            }
        });
}

/// What the daemon's status document is made of: the node's, and the
/// daemon's own parts (the LAN's discovery socket, the packet loop).
pub struct Parts<'d, 'n, C: Crypto> {
    pub node: &'d Node<'n, C>,
    pub consoles: &'d [Console],
    pub main: &'d crate::config::MainConfig,
    pub discovery: &'d crate::daemon::LanDiscovery,
    pub loop_worst: crate::daemon::LoopWorst,
    pub join: &'d crate::invites::JoinProgress,
    pub bad_tokens: u64,
    pub members: &'d [crate::config::MemberEntry],
    pub group: &'d crate::group::State,
}

/// What is asked of the document: all of it (`meshd status --json`, ubus
/// `status`) or one part (the other ubus methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    /// `{"members": [...]}`
    Members,
    /// `{"routes": [...]}`
    Routes,
    /// `{"nat": {...}}`
    Nat,
    /// The fields of `exit` themselves (ubus `consoles`).
    Exit,
    /// `{"invites": {...}}`
    Invites,
}

impl<C: Crypto> Parts<'_, '_, C> {
    /// The fields of the document (or of the part asked for) into `o`: the
    /// same for `meshd status` and ubus.
    pub fn write(&self, now: Instant, part: Part, o: &mut Obj<'_>) {
        let node = self.node;
        let invites = || crate::invites::document(node, self.join, self.bad_tokens, now);
        match part {
            Part::Whole => {}
            Part::Members => {
                o.arr("members", |a| write_members(a, node, now));
                return;
            }
            Part::Routes => {
                o.arr("routes", |a| write_routes(a, node));
                return;
            }
            Part::Nat => {
                o.obj("nat", |o| write_nat(o, node));
                return;
            }
            Part::Exit => return write_exit(o, node, self.consoles, now),
            Part::Invites => {
                o.f("invites", invites());
                return;
            }
        }
        write_node(o, node, self.consoles, now, self.main.listen_port);
        o.obj("discovery", |o| {
            write_discovery(o, node.discovery_stats(), self.main, self.discovery)
        })
        .obj("loop", |o| write_loop(o, &self.loop_worst))
        .f("invites", invites())
        .f(
            "group",
            crate::group::document(node, self.members, self.group),
        );
    }

    /// The document (or part) as one object into `sink`.
    pub fn write_to(&self, now: Instant, part: Part, sink: &mut dyn Sink) {
        crate::json::object(sink, |o| self.write(now, part, o));
    }

    /// The document (or part) as compact JSON text, in a buffer of
    /// `capacity` bytes to start with.
    pub fn text(&self, now: Instant, part: Part, capacity: usize) -> String {
        let mut out = String::with_capacity(capacity);
        self.write_to(now, part, &mut crate::json::Text::new(&mut out, false));
        out.push('\n');
        out
    }
}

/// Every member: its tunnel, how it is reached, NAT traversal, BFD, BGP.
fn write_members<C: Crypto>(a: &mut crate::json::Arr<'_>, node: &Node<'_, C>, now: Instant) {
    for m in node.members() {
        let overlay = IpAddr::V4(m.config.overlay);
        // How the member is reached now: its own tunnel, or through whom.
        // A stock member (BIRD, FRR) announces no route to its overlay
        // address: its BGP session, Established over its own tunnel, says
        // it is reached directly.
        let path = node
            .rib()
            .lookup(overlay)
            .and_then(|e| {
                let best = e.best()?;
                let attrs = node.rib().attrs(best.attrs)?;
                Some((
                    source_name(node, best.source),
                    best.source == Source::Peer(m.slot),
                    attrs.as_path.selection_len(),
                ))
            })
            .or_else(|| {
                (m.bgp_state == mesh_core::bgp::session::State::Established).then_some((
                    m.config.name.as_str(),
                    true,
                    1,
                ))
            });
        let traversal = node.traversal(m.slot);
        a.obj(|o| {
            o.f("name", m.config.name.as_str())
                .f("public_key", Show(&m.config.public_key))
                .f("overlay", Show(m.config.overlay))
                .f("asn", m.config.asn)
                .f("exit", m.config.exit)
                .list("prefixes", m.config.prefixes.iter().map(Show))
                .f("endpoint", m.endpoint.map(Show))
                .f("endpoint_confirmed", m.endpoint_confirmed)
                .f("handshake_age_s", m.since_handshake.map(secs))
                .f("rtt_ms", m.rtt.map(|d| d.as_millis()))
                .f("latency_ms", m.latency.map(ms))
                .f(
                    "last_rx_age_s",
                    m.last_rx.map(|t| secs(now.saturating_duration_since(t))),
                )
                .f("rx_datagrams", m.stats.rx_datagrams)
                .f("rx_packets", m.stats.rx_packets)
                .f("rx_bytes", m.stats.rx_bytes)
                .f("tx_packets", m.stats.tx_packets)
                .f("tx_bytes", m.stats.tx_bytes)
                .f("rx_errors", m.stats.rx_errors)
                .f("roams", m.stats.roams)
                .opt_obj("path", path, |o, (via, direct, hops)| {
                    o.f("via", via).f("direct", direct).f("hops", hops);
                })
                .opt_obj("traversal", traversal.as_ref(), |o, t| {
                    o.list("learned", t.learned.iter().map(Show))
                        .f("punching", t.punching)
                        .f("punch_attempts", t.punch_attempts)
                        .f("punch_successes", t.punch_successes)
                        .f("last_punch_ms", t.last_punch.map(|d| d.as_millis()));
                })
                .opt_obj(
                    "nat",
                    traversal.as_ref().and_then(|t| t.nat),
                    |o, (b, ps)| {
                        o.f("behaviour", b.as_str()).f("playstation", ps);
                    },
                )
                .opt_obj("bfd", m.bfd, |o, b| {
                    o.f("state", Show(Name(b.state)))
                        .f("remote_state", Show(Name(b.remote_state)))
                        .f("diagnostic", Show(b.diagnostic))
                        .f("tx_interval_ms", ms(b.tx_interval))
                        .f("detection_ms", ms(b.detection_time))
                        .f("rx_interval_ms", ms(b.rx_interval))
                        .f("jitter_ms", ms(b.jitter))
                        .f(
                            "uptime_s",
                            b.up_since.map(|t| secs(now.saturating_duration_since(t))),
                        )
                        .f("tx_packets", b.stats.tx_packets)
                        .f("rx_packets", b.stats.rx_packets)
                        .f("downs", b.stats.downs)
                        .f("downs_survived", m.bfd_survived)
                        .f("downs_confirmed", m.bfd_confirmed)
                        .f("traffic_moved", m.traffic_moved)
                        .f(
                            "bgp_down_in_ms",
                            m.bgp_down_at
                                .map(|t| t.saturating_duration_since(now).as_millis()),
                        )
                        .f(
                            "traffic_returns_in_ms",
                            m.traffic_returns_at
                                .map(|t| t.saturating_duration_since(now).as_millis()),
                        );
                })
                .f(
                    "bgp_held_for_s",
                    m.bgp_held_until
                        .map(|t| secs(t.saturating_duration_since(now))),
                )
                .obj("bgp", |o| {
                    o.f("state", Show(Name(m.bgp_state)))
                        .f(
                            "uptime_s",
                            m.bgp_established_since
                                .map(|t| secs(now.saturating_duration_since(t))),
                        )
                        .f("last_down", m.bgp_last_down.map(|r| Show(Down(r))))
                        .f("prefixes_received", m.prefixes_received)
                        .f("updates_in", m.bgp_stats.updates_in)
                        .f("updates_out", m.bgp_stats.updates_out)
                        .f("flaps", m.bgp_stats.flaps)
                        .f("treat_as_withdraw", m.bgp_stats.treat_as_withdraw)
                        .f("replaced_connections", m.bgp_stats.replaced_connections)
                        .f("refused_routes", m.import.filtered);
                });
        });
    }
}

/// Every route: the best path and why it won, and every alternative and
/// the step it lost at.
fn write_routes<C: Crypto>(a: &mut crate::json::Arr<'_>, node: &Node<'_, C>) {
    for e in node.routes() {
        let Some(best) = e.best() else { continue };
        let path = |o: &mut Obj<'_>, p: &mesh_core::rib::Path| {
            let attrs = node.rib().attrs(p.attrs);
            o.f("via", source_name(node, p.source))
                .f("as_path", attrs.map(|a| Show(&a.as_path)))
                .f(
                    "next_hop",
                    attrs.and_then(|a| a.next_hop_for(e.prefix.family()).map(Show)),
                );
        };
        a.obj(|o| {
            o.f("prefix", Show(e.prefix))
                .obj("best", |o| {
                    path(o, best);
                    o.f("reason", best.step.describe());
                })
                .f("ecmp", e.ecmp_len())
                .arr("alternatives", |a| {
                    for p in &e.paths()[1..] {
                        a.obj(|o| {
                            path(o, p);
                            o.f("lost", p.step.describe());
                        });
                    }
                });
        });
    }
}

/// This router's NAT as its members' STUN answers show it.
fn write_nat<C: Crypto>(o: &mut Obj<'_>, node: &Node<'_, C>) {
    let n = node.nat_report();
    o.f("behaviour", n.behaviour.as_str())
        .f("mapping", n.mapping.as_str())
        .f("filtering", n.filtering.as_str())
        .f("playstation", n.playstation)
        .f("public", n.public.map(Show))
        .f("observers", n.observers)
        .f("cgnat", n.cgnat)
        // What a console here gets without a game exit, in each maker's
        // words (the same as a console's `nat` in `exit.consoles[]` then).
        .obj("console", |o| console_nat(o, n.mapping, n.filtering));
}

/// The node's part of the status document: its fields into `o`.
pub fn write_node<C: Crypto>(
    o: &mut Obj<'_>,
    node: &Node<'_, C>,
    consoles: &[Console],
    now: Instant,
    listen_port: u16,
) {
    let c = node.config();
    let s = node.stats();
    o.f("version", env!("CARGO_PKG_VERSION"))
        .f("public_key", Show(node.public_key()))
        .f("overlay", Show(c.overlay))
        .f("asn", c.asn)
        .f("listen_port", listen_port)
        .list("announce", c.lan_prefixes.iter().map(Show))
        .arr("lan_map", |a| {
            for m in &c.lan_map {
                a.obj(|o| {
                    o.f("lan", Show(format_args!("{}/{}", m.lan.0, m.lan.1)))
                        .f("alias", Show(format_args!("{}/{}", m.alias.0, m.alias.1)));
                });
            }
        })
        .obj("failover", |o| {
            o.f(
                "bfd",
                c.bfd
                    .map(|b| format!("{} ms x {}", b.desired_min_tx.as_millis(), b.detect_mult)),
            )
            .f("redundancy_max_size", c.redundancy_max_len);
        })
        .obj("nat", |o| write_nat(o, node))
        .obj("exit", |o| write_exit(o, node, consoles, now))
        .arr("members", |a| write_members(a, node, now))
        // Members there is memory for (option max_members, set at start).
        .f("member_room", node.member_capacity())
        .arr("routes", |a| write_routes(a, node))
        .obj("counters", |o| {
            o.f("udp_in", s.udp_in)
                .f("udp_invalid", s.udp_invalid)
                .f("udp_oversized", s.udp_oversized)
                .f("unknown_key", s.unknown_key)
                .f("cookie_replies", s.cookie_replies)
                .f("bad_inner", s.bad_inner)
                .f("spoofed", s.spoofed)
                .f("lan_foreign_source", s.lan_foreign_source)
                .f("forwarded", s.forwarded)
                .f("to_lan", s.to_lan)
                .f("from_lan", s.from_lan)
                .f("no_route", s.no_route)
                .f("ttl_expired", s.ttl_expired)
                .f("icmp_sent", s.icmp_sent)
                .f("no_endpoint", s.no_endpoint)
                .f("queue_full", s.queue_full)
                .f("hijacks_refused", s.hijacks_refused)
                .f("redundant_copies", s.redundant_copies)
                .f("duplicates_dropped", s.duplicates_dropped)
                .f("bfd_discarded", s.bfd_discarded)
                .f("stun_requests", s.stun_requests)
                .f("stun_answered", s.stun_answered)
                .f("stun_invalid", s.stun_invalid)
                .f("stun_unexpected", s.stun_unexpected)
                .f("stun_responses", s.stun_responses)
                .f("stun_rate_limited", s.stun_rate_limited)
                .f("pex_sent", s.pex_sent)
                .f("pex_received", s.pex_received)
                .f("pex_invalid", s.pex_invalid)
                .f("group_sent", s.group_sent)
                .f("group_invalid", s.group_invalid)
                .f("group_limited", s.group_limited)
                .f("punch_packets", s.punch_packets)
                .f("punch_failures", s.punch_failures)
                .f("relay_refused", s.relay_refused)
                .f("relay_rate_limited", s.relay_rate_limited);
        });
}

fn s<'a>(j: &'a Json, k: &str) -> &'a str {
    j.get(k).and_then(Json::as_str).unwrap_or("-")
}

fn opt_num(j: &Json, k: &str, unit: &str) -> String {
    match j.get(k) {
        Some(Json::Int(i)) => format!("{i}{unit}"),
        Some(Json::Float(f)) => format!("{f}{unit}"),
        _ => "-".into(),
    }
}

/// The document as text for a terminal.
pub fn render(doc: &Json) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "meshd {}  AS{}  overlay {}  port {}",
        s(doc, "version"),
        opt_num(doc, "asn", ""),
        s(doc, "overlay"),
        opt_num(doc, "listen_port", "")
    );
    let _ = writeln!(out, "public key {}", s(doc, "public_key"));
    let announce: Vec<&str> = doc
        .get("announce")
        .map(Json::as_array)
        .unwrap_or(&[])
        .iter()
        .filter_map(Json::as_str)
        .collect();
    let _ = writeln!(out, "announces {}", announce.join(", "));
    for m in doc.get("lan_map").map(Json::as_array).unwrap_or(&[]) {
        let _ = writeln!(
            out,
            "  the LAN {} is {} in the mesh (mapped 1:1: consoles are reached at their alias)",
            s(m, "lan"),
            s(m, "alias")
        );
    }
    if let Some(n @ Json::Obj(_)) = doc.get("nat") {
        let _ = writeln!(
            out,
            "nat {} (mapping {}, filtering {}{}), PlayStation type {}, public endpoint {}, from {} members",
            s(n, "behaviour"),
            s(n, "mapping"),
            s(n, "filtering"),
            if n.get("cgnat") == Some(&Json::Bool(true)) {
                ", carrier-grade NAT on the path"
            } else {
                ""
            },
            opt_num(n, "playstation", ""),
            s(n, "public"),
            opt_num(n, "observers", ""),
        );
    }
    if let Some(x @ Json::Obj(_)) = doc.get("exit") {
        render_exit(&mut out, x);
    }
    let _ = writeln!(
        out,
        "\nmembers (room for {}):",
        opt_num(doc, "member_room", "")
    );
    let _ = writeln!(
        out,
        "  {:<10} {:<15} {:<8} {:<22} {:>9} {:>6}  {:<12} {:<10} {:<14} prefixes",
        "name", "overlay", "asn", "endpoint", "handshake", "rtt", "bgp", "bfd", "reached"
    );
    for m in doc.get("members").map(Json::as_array).unwrap_or(&[]) {
        let bgp = m.get("bgp").cloned().unwrap_or(Json::Null);
        let reached = match m.get("path") {
            Some(p @ Json::Obj(_)) => {
                if p.get("direct") == Some(&Json::Bool(true)) {
                    "direct".to_string()
                } else {
                    format!("via {} ({} hops)", s(p, "via"), opt_num(p, "hops", ""))
                }
            }
            _ => "unreachable".into(),
        };
        let mut endpoint = s(m, "endpoint").to_string();
        if m.get("endpoint_confirmed") == Some(&Json::Bool(false)) && endpoint != "-" {
            endpoint.push('?');
        }
        let bfd = match m.get("bfd") {
            // The detection time means something once the peer has told
            // its multiplier, i.e. while Up.
            Some(b @ Json::Obj(_)) => {
                let mut t = if s(b, "state") == "Up" {
                    format!("Up {}ms", opt_num(b, "detection_ms", ""))
                } else {
                    s(b, "state").to_string()
                };
                // Traffic takes another path until the tunnel proves
                // healthy (or BGP confirms the loss).
                if b.get("traffic_moved") == Some(&Json::Bool(true)) {
                    t.push('*');
                }
                t
            }
            _ => "off".into(),
        };
        let _ = writeln!(
            out,
            "  {:<10} {:<15} {:<8} {:<22} {:>9} {:>6}  {:<12} {:<10} {:<14} {}",
            s(m, "name"),
            s(m, "overlay"),
            opt_num(m, "asn", ""),
            endpoint,
            opt_num(m, "handshake_age_s", "s"),
            opt_num(m, "rtt_ms", "ms"),
            s(&bgp, "state"),
            bfd,
            reached,
            opt_num(&bgp, "prefixes_received", ""),
        );
        if let Some(Json::Str(why)) = bgp.get("last_down") {
            let _ = writeln!(out, "  {:<10} last down: {why}", "");
        }
        if let Some(b @ Json::Obj(_)) = m.get("bfd") {
            if b.get("traffic_moved") == Some(&Json::Bool(true)) {
                let until = match (b.get("bgp_down_in_ms"), b.get("traffic_returns_in_ms")) {
                    (Some(Json::Int(ms)), _) => format!("BGP goes in {ms} ms unless BFD returns"),
                    (_, Some(Json::Int(ms))) => format!("returns in {ms} ms"),
                    _ => "until BGP is back".into(),
                };
                let _ = writeln!(out, "  {:<10} * traffic moved to other paths: {until}", "");
            }
        }
    }
    let _ = writeln!(out, "\nroutes:");
    for r in doc.get("routes").map(Json::as_array).unwrap_or(&[]) {
        let best = r.get("best").cloned().unwrap_or(Json::Null);
        let _ = writeln!(
            out,
            "  {:<20} via {:<8} as-path [{}]  ({})",
            s(r, "prefix"),
            s(&best, "via"),
            s(&best, "as_path"),
            s(&best, "reason")
        );
        for alt in r.get("alternatives").map(Json::as_array).unwrap_or(&[]) {
            let _ = writeln!(
                out,
                "  {:<20}   or {:<7} as-path [{}]  lost: {}",
                "",
                s(alt, "via"),
                s(alt, "as_path"),
                s(alt, "lost")
            );
        }
    }
    if let Some(d @ Json::Obj(_)) = doc.get("discovery") {
        render_discovery(&mut out, d);
    }
    if let Some(i @ Json::Obj(_)) = doc.get("invites") {
        render_invites(&mut out, i);
    }
    if let Some(g @ Json::Obj(_)) = doc.get("group") {
        render_group(&mut out, g);
    }
    if let Some(l @ Json::Obj(_)) = doc.get("loop") {
        let _ = writeln!(
            out,
            "\npacket loop: at most {} between two waits, {} of it its own work (last minute)",
            opt_num(l, "worst_ms_last_minute", " ms"),
            opt_num(l, "worst_busy_ms_last_minute", " ms")
        );
        let work: Vec<String> = l
            .get("work")
            .map(Json::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(|w| {
                let p99 = w
                    .get("p99_under_us")
                    .and_then(Json::as_i64)
                    .map_or("-".to_string(), |us| us.to_string());
                Some(format!(
                    "{} {}/{p99}",
                    w.get("source")?.as_str()?,
                    w.get("mean_us")?.as_i64()?,
                ))
            })
            .collect();
        if !work.is_empty() {
            let _ = writeln!(
                out,
                "  its work per stretch, mean/99 % under, µs: {}",
                work.join(", ")
            );
        }
        if let Some(n) = l.get("stalls").and_then(Json::as_i64).filter(|&n| n > 0) {
            let _ = writeln!(
                out,
                "  {n} times behind its clock by more than 2 ms (kept off the CPU, or a long batch)"
            );
        }
    }
    let _ = writeln!(out, "\ncounters:");
    if let Some(Json::Obj(fields)) = doc.get("counters") {
        let line: Vec<String> = fields
            .iter()
            .filter(|(_, v)| v.as_i64() != Some(0))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "  {}",
            if line.is_empty() {
                "all zero".into()
            } else {
                line.join(" ")
            }
        );
    }
    out
}

/// LAN discovery: one line for what runs, one per port with traffic.
/// The group's records: one line each, and what the group removed that
/// this file keeps.
fn render_group(out: &mut String, g: &Json) {
    let records = g.get("records").map(Json::as_array).unwrap_or(&[]);
    if records.is_empty() {
        return;
    }
    let _ = writeln!(out, "\ngroup records:");
    let list = |r: &Json, k: &str| -> String {
        r.get(k)
            .map(Json::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(Json::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for r in records {
        let removed = list(r, "removed");
        let _ = writeln!(
            out,
            "  {:<20} version {}: {}{}",
            s(r, "signer"),
            opt_num(r, "version", ""),
            list(r, "members"),
            if removed.is_empty() {
                String::new()
            } else {
                format!("; removed {removed}")
            }
        );
    }
    let kept = list(g, "kept");
    if !kept.is_empty() {
        let _ = writeln!(
            out,
            "  removed by the group, kept as written by hand here: {kept}"
        );
    }
}

/// Pending invites, what became of join requests, and our own join: one
/// line each, only when there is something to say.
fn render_invites(out: &mut String, i: &Json) {
    let pending: Vec<String> = i
        .get("pending")
        .map(Json::as_array)
        .unwrap_or(&[])
        .iter()
        .map(|p| {
            format!(
                "{} ({})",
                s(p, "name"),
                opt_num(p, "expires_in_s", " s left")
            )
        })
        .collect();
    let n = |k: &str| i.get(k).and_then(Json::as_i64).unwrap_or(0).max(0) as u64;
    let refused = [
        "refused_expired",
        "refused_used",
        "refused_bad_mac",
        "refused_unknown",
    ]
    .iter()
    .map(|k| n(k))
    .sum::<u64>();
    if !pending.is_empty() {
        let _ = writeln!(out, "\ninvites pending: {}", pending.join(", "));
    }
    if n("joined") + refused + n("malformed") + n("rate_limited") + n("bad_tokens") > 0 {
        let _ = writeln!(
            out,
            "invites: {} joined; refused {} expired, {} used, {} bad MAC, {} unknown; {} malformed, {} over the rate; {} damaged tokens given to join",
            n("joined"),
            n("refused_expired"),
            n("refused_used"),
            n("refused_bad_mac"),
            n("refused_unknown"),
            n("malformed"),
            n("rate_limited"),
            n("bad_tokens")
        );
    }
    if let Some(j @ Json::Obj(_)) = i.get("join") {
        if s(j, "state") != "none" {
            let why = j.get("reason").and_then(Json::as_str).unwrap_or("");
            let _ = writeln!(
                out,
                "our join: {} (inviter {}){}{}",
                s(j, "state"),
                s(j, "inviter"),
                if why.is_empty() { "" } else { ": " },
                why
            );
        }
    }
}

fn render_discovery(out: &mut String, d: &Json) {
    let _ = write!(out, "\nLAN discovery: ");
    if d.get("enabled") != Some(&Json::Bool(true)) {
        let _ = writeln!(out, "off");
        return;
    }
    let ports: Vec<String> = d
        .get("ports")
        .map(Json::as_array)
        .unwrap_or(&[])
        .iter()
        .map(|p| opt_num(p, "port", ""))
        .collect();
    let _ = writeln!(
        out,
        "{} ({}), ports {}",
        s(d, "interface"),
        s(d, "capture"),
        ports.join(" ")
    );
    let pauses = d.get("capture_pauses").and_then(Json::as_i64).unwrap_or(0);
    if pauses > 0 {
        let _ = writeln!(
            out,
            "  capture paused {pauses} times (a storm: {} dropped by the kernel)",
            d.get("kernel_drops").and_then(Json::as_i64).unwrap_or(0)
        );
    }
    for p in d.get("ports").map(Json::as_array).unwrap_or(&[]) {
        let n = |k: &str| p.get(k).and_then(Json::as_i64).unwrap_or(0);
        if n("captured") + n("received") == 0 {
            continue;
        }
        let dropped = n("dropped_rate") + n("too_big") + n("foreign");
        let refused =
            n("dropped_rate_in") + n("forged") + n("replayed") + n("refused") + n("malformed");
        let _ = writeln!(
            out,
            "  port {:<5}  from here: {} relayed, {} dropped   from friends: {} emitted, {} dropped",
            n("port"),
            n("relayed"),
            dropped,
            n("emitted"),
            refused
        );
    }
}

/// Consoles first: what each gets, through which exit; then the exits.
fn render_exit(out: &mut String, x: &Json) {
    let consoles = x.get("consoles").map(Json::as_array).unwrap_or(&[]);
    let _ = writeln!(out, "\nconsoles:");
    if consoles.is_empty() {
        let _ = writeln!(out, "  none found on the LAN");
    }
    for c in consoles {
        let nat = c.get("nat").cloned().unwrap_or(Json::Null);
        let _ = writeln!(
            out,
            "  {:<15} {:<17} {:<10} exit {:<12} public {:<15} PlayStation type {}, Xbox {}, Switch {} (mapping {}, filtering {})",
            s(c, "ip"),
            s(c, "mac"),
            s(c, "vendor"),
            s(c, "exit"),
            s(c, "public"),
            opt_num(&nat, "playstation", ""),
            s(&nat, "xbox"),
            s(&nat, "switch"),
            s(&nat, "mapping"),
            s(&nat, "filtering"),
        );
    }
    let exits = x.get("exits").map(Json::as_array).unwrap_or(&[]);
    let offered = match (x.get("offered"), x.get("offer")) {
        (Some(Json::Str(a)), _) => format!(" (this router is one, at {a})"),
        (_, Some(Json::Str(why))) if !why.starts_with("not configured") => {
            format!(" (this router: {why})")
        }
        _ => String::new(),
    };
    let _ = writeln!(out, "game exits{offered}:");
    if exits.is_empty() {
        let _ = writeln!(out, "  none live");
    }
    for e in exits {
        let _ = writeln!(
            out,
            "  {:<12} public {:<15} load {:<4} hops {}{}",
            s(e, "name"),
            s(e, "public"),
            opt_num(e, "load", ""),
            opt_num(e, "hops", ""),
            if e.get("best") == Some(&Json::Bool(true)) {
                "  (new consoles get this one)"
            } else {
                ""
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_behind_a_router_with_a_public_address_is_behind_its_masquerade() {
        let c = crate::json::tree(|o| console_nat(o, Mapping::NoNat, Filtering::Unknown));
        assert_eq!(
            (
                c.get("playstation").and_then(Json::as_i64),
                c.get("xbox").and_then(Json::as_str),
                c.get("switch").and_then(Json::as_str)
            ),
            (Some(2), Some("Moderate"), Some("B"))
        );
        // Behind a NAT the router measured, the console shares it.
        let cgnat = crate::json::tree(|o| {
            console_nat(
                o,
                Mapping::EndpointDependent,
                Filtering::AddressAndPortDependent,
            )
        });
        assert_eq!(cgnat.get("playstation").and_then(Json::as_i64), Some(3));
    }
}
