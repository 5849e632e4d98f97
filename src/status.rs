//! What `meshd status` shows: members, tunnels, BGP sessions, routes with their
//! AS path and why the best path won, counters. One JSON document; the text
//! form is rendered from it, so both always agree.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use mesh_core::bgp::error::DownReason;
use mesh_core::nat::{Filtering, Mapping};
use mesh_core::node::Node;
use mesh_core::rib::Source;
use mesh_core::wg::Crypto;
use mesh_core::{Instant, Prefix};

use crate::consoles::Console;
use crate::json::Json;

fn secs(d: mesh_core::Duration) -> f64 {
    (d.as_millis() as f64 / 100.0).round() / 10.0
}

fn down_reason(r: DownReason) -> String {
    match r {
        DownReason::SentNotification(e) => format!("sent NOTIFICATION: {e}"),
        DownReason::ReceivedNotification(e) => format!("received NOTIFICATION: {e}"),
        DownReason::ConnectionLost => "connection lost".into(),
        DownReason::Stopped => "stopped".into(),
    }
}

fn source_name<C: Crypto>(node: &Node<'_, C>, s: Source) -> String {
    match s {
        Source::Local => "local".into(),
        Source::Peer(p) => node.member_name(p).unwrap_or("?").to_string(),
    }
}

/// What a console gets from a NAT: RFC 4787 mapping and filtering, and the
/// console makers' names for it (`../shared/design/CONSOLES.md`).
fn nat_behaviour(mapping: Mapping, filtering: Filtering) -> Json {
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
    Json::obj()
        .with("mapping", mapping.as_str())
        .with("filtering", filtering.as_str())
        .with("playstation", playstation)
        .with("xbox", xbox)
        .with("switch", switch)
}

/// What a console behind this router gets without a game exit: the home's
/// NAT as this router measured it for itself, except that a router with a
/// public address of its own still puts its LAN behind its masquerade
/// (Linux keeps a connection's port, endpoint-independent in practice, and
/// lets in only the addresses and ports the console sent to), which is not
/// what the router's own socket saw: no NAT at all.
fn console_nat(mapping: Mapping, filtering: Filtering) -> Json {
    match mapping {
        Mapping::NoNat => nat_behaviour(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        ),
        _ => nat_behaviour(mapping, filtering),
    }
}

/// Consoles, the exits the mesh offers, and this router's own exit: the
/// `exit` part of the status document and the ubus method `consoles`.
pub fn exit_document<C: Crypto>(node: &Node<'_, C>, consoles: &[Console], now: Instant) -> Json {
    let own = node.config().overlay;
    let exit_name = |overlay: Ipv4Addr| -> String {
        if overlay == own {
            return "this router".into();
        }
        node.members()
            .find(|m| m.config.overlay == overlay)
            .map_or_else(|| overlay.to_string(), |m| m.config.name.to_string())
    };
    let exits: Vec<Json> = node
        .exits()
        .map(|e| {
            Json::obj()
                .with("name", exit_name(e.overlay))
                .with("overlay", e.overlay.to_string())
                .with("public", e.public.map(|a| a.to_string()))
                .with("load", e.load)
                .with("hops", e.hops)
                .with("best", e.best)
                .with("local", e.local)
        })
        .collect();
    let home = node.nat_report();
    let chosen = node.console_exits();
    let console_docs: Vec<Json> = consoles
        .iter()
        .map(|c| {
            let via = chosen.iter().find(|x| x.console == c.ip);
            let public = via.and_then(|x| {
                node.exits()
                    .find(|e| e.overlay == x.exit)
                    .and_then(|e| e.public)
            });
            // Through an exit: its NAT (endpoint-independent mapping and
            // filtering). Otherwise: what this home's own NAT does.
            let nat = match via {
                Some(_) => {
                    nat_behaviour(Mapping::EndpointIndependent, Filtering::EndpointIndependent)
                }
                None => console_nat(home.mapping, home.filtering),
            };
            Json::obj()
                .with("ip", c.ip.to_string())
                .with("mac", c.mac.as_ref().map(crate::consoles::format_mac))
                .with("vendor", c.vendor.map(|v| v.as_str()))
                .with("found", c.how.as_str())
                .with("exit", via.map(|x| exit_name(x.exit)))
                .with("public", public.map(|a| a.to_string()))
                .with(
                    "exit_since_s",
                    via.map(|x| secs(now.saturating_duration_since(x.since))),
                )
                .with("packets", via.map(|x| x.packets))
                .with("nat", nat)
        })
        .collect();
    let st = node.exit_stats();
    let ns = node.exit_nat_stats();
    // Mappings by home (up to a thousand of them: counted, not listed).
    let mut by_home: std::collections::BTreeMap<String, u64> = Default::default();
    for m in node.exit_mappings() {
        *by_home.entry(exit_name(m.internal.home)).or_default() += 1;
    }
    let mappings = by_home
        .into_iter()
        .fold(Json::obj(), |j, (home, n)| j.with(&home, n));
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
    Json::obj()
        .with("offered", node.exit_offered().map(|a| a.to_string()))
        .with("offer", offer)
        .with("consoles", console_docs)
        .with("exits", exits)
        .with("mappings", mappings)
        .with("mapped_consoles", node.exit_mapped_consoles())
        .with(
            "counters",
            Json::obj()
                .with("to_exit", st.to_exit)
                .with("from_exit", st.from_exit)
                .with("no_exit", st.no_exit)
                .with("too_big", st.too_big)
                .with("nat_out", st.nat_out)
                .with("nat_in", st.nat_in)
                .with("hairpin", st.hairpin)
                .with("to_kernel", st.to_kernel)
                .with("from_kernel", st.from_kernel)
                .with("spoofed", st.spoofed)
                .with("refused", st.refused)
                .with("fragments", st.fragments)
                .with("quota", st.quota)
                .with("full", st.full)
                .with("no_port", st.no_port)
                .with("rate_limited", st.rate_limited)
                .with("switches", st.switches)
                .with("mappings_created", ns.created)
                .with("mappings_expired", ns.expired)
                .with("inbound_unmapped", ns.inbound_unmapped)
                .with("ports_unavailable", ns.ports_unavailable),
        )
}

/// The daemon's packet loop: the longest it was busy at once over the last
/// one to two minutes (a stall this long delays every packet and every BFD
/// answer). Wall clock (what a packet waiting behind it saw, the
/// scheduler's delays included), the loop's own CPU time (its work), and
/// what it was handling then.
pub fn loop_document(worst: &crate::daemon::LoopWorst) -> Json {
    let ms = |d: std::time::Duration| (d.as_micros() as f64 / 10.0).round() / 100.0;
    let work = worst
        .work
        .iter()
        .map(|w| {
            let mean_us = w.cpu().as_micros() as u64 / w.stretches.max(1);
            let bound = |q| {
                w.quantile_us(q)
                    .map_or(Json::Null, |us| Json::Int(us as i64))
            };
            Json::obj()
                .with("source", w.source)
                .with("stretches", w.stretches)
                .with("cpu_ms", ms(w.cpu()))
                .with("mean_us", mean_us)
                .with("p99_under_us", bound(0.99))
                .with("p999_under_us", bound(0.999))
                .with(
                    "histogram",
                    Json::Arr(w.histogram.iter().map(|&n| Json::from(n)).collect()),
                )
        })
        .collect();
    Json::obj()
        .with("worst_ms_last_minute", ms(worst.wall))
        .with("worst_busy_ms_last_minute", ms(worst.busy))
        .with("worst_busy_in", worst.busy_in)
        .with("stalls", worst.stalls)
        .with("work", Json::Arr(work))
        .with(
            "histogram_bounds_us",
            Json::Arr(
                crate::daemon::SourceWork::BOUNDS_US
                    .iter()
                    .map(|&b| Json::from(b))
                    .collect(),
            ),
        )
}

/// Relayed LAN discovery: whether it runs, the capture socket, and the
/// relay's counters in total and per port.
pub fn discovery_document(
    stats: &mesh_core::discovery::Stats,
    main: &crate::config::MainConfig,
    lan: &crate::daemon::LanDiscovery,
) -> Json {
    let counters = |c: &mesh_core::discovery::Counters| {
        Json::obj()
            .with("captured", c.captured)
            .with("relayed", c.relayed)
            .with("dropped_rate", c.dropped_rate)
            .with("too_big", c.too_big)
            .with("foreign", c.foreign)
            .with("received", c.received)
            .with("emitted", c.emitted)
            .with("dropped_rate_in", c.dropped_rate_in)
            .with("forged", c.forged)
            .with("replayed", c.replayed)
            .with("refused", c.refused)
            .with("malformed", c.malformed)
    };
    let capture = match (&main.discovery, lan.is_open(), &lan.error) {
        (None, _, _) => "off".to_string(),
        (Some(_), true, _) => "open".to_string(),
        (Some(_), false, Some(e)) => e.clone(),
        (Some(_), false, None) => "not open".to_string(),
    };
    let ports = stats
        .ports
        .iter()
        .map(|p| counters(&p.counters).with("port", p.port))
        .collect::<Vec<_>>();
    Json::obj()
        .with("enabled", main.discovery.is_some())
        .with("interface", main.lan_interface.as_str())
        .with("capture", capture)
        .with("ssdp", main.discovery.as_ref().is_some_and(|p| p.ssdp()))
        .with("mdns", main.discovery.as_ref().is_some_and(|p| p.mdns()))
        .with("send_errors", lan.send_errors)
        .with("kernel_drops", lan.kernel_drops())
        .with("capture_pauses", lan.pauses)
        .with("total", counters(&stats.total))
        .with("ports", ports)
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

impl<C: Crypto> Parts<'_, '_, C> {
    /// The same document for `meshd status` and ubus `status`.
    pub fn document(&self, now: Instant) -> Json {
        let discovery = discovery_document(self.node.discovery_stats(), self.main, self.discovery);
        document(self.node, self.consoles, now, self.main.listen_port)
            .with("discovery", discovery)
            .with("loop", loop_document(&self.loop_worst))
            .with(
                "invites",
                crate::invites::document(self.node, self.join, self.bad_tokens, now),
            )
            .with(
                "group",
                crate::group::document(self.node, self.members, self.group),
            )
    }
}

/// The node's status document.
pub fn document<C: Crypto>(
    node: &Node<'_, C>,
    consoles: &[Console],
    now: Instant,
    listen_port: u16,
) -> Json {
    let c = node.config();
    let mut members = Vec::new();
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
                Some(
                    Json::obj()
                        .with("via", source_name(node, best.source))
                        .with("direct", best.source == Source::Peer(m.slot))
                        .with("hops", attrs.as_path.selection_len()),
                )
            })
            .or_else(|| {
                (m.bgp_state == mesh_core::bgp::session::State::Established).then(|| {
                    Json::obj()
                        .with("via", m.config.name.as_str())
                        .with("direct", true)
                        .with("hops", 1)
                })
            });
        let traversal = node.traversal(m.slot);
        members.push(
            Json::obj()
                .with("name", m.config.name.as_str())
                .with("public_key", m.config.public_key.to_string())
                .with("overlay", m.config.overlay.to_string())
                .with("asn", m.config.asn)
                .with("exit", m.config.exit)
                .with(
                    "prefixes",
                    m.config
                        .prefixes
                        .iter()
                        .map(|p| Json::from(p.to_string()))
                        .collect::<Vec<_>>(),
                )
                .with("endpoint", m.endpoint.map(|e| e.to_string()))
                .with("endpoint_confirmed", m.endpoint_confirmed)
                .with("handshake_age_s", m.since_handshake.map(secs))
                .with("rtt_ms", m.rtt.map(|d| d.as_millis()))
                .with(
                    "latency_ms",
                    m.latency.map(|d| d.as_micros() as f64 / 1000.0),
                )
                .with(
                    "last_rx_age_s",
                    m.last_rx.map(|t| secs(now.saturating_duration_since(t))),
                )
                .with("rx_datagrams", m.stats.rx_datagrams)
                .with("rx_packets", m.stats.rx_packets)
                .with("rx_bytes", m.stats.rx_bytes)
                .with("tx_packets", m.stats.tx_packets)
                .with("tx_bytes", m.stats.tx_bytes)
                .with("rx_errors", m.stats.rx_errors)
                .with("roams", m.stats.roams)
                .with("path", path)
                .with(
                    "traversal",
                    traversal.as_ref().map(|t| {
                        Json::obj()
                            .with(
                                "learned",
                                t.learned
                                    .iter()
                                    .map(|e| Json::from(e.to_string()))
                                    .collect::<Vec<_>>(),
                            )
                            .with("punching", t.punching)
                            .with("punch_attempts", t.punch_attempts)
                            .with("punch_successes", t.punch_successes)
                            .with("last_punch_ms", t.last_punch.map(|d| d.as_millis()))
                    }),
                )
                .with(
                    "nat",
                    traversal.as_ref().and_then(|t| t.nat).map(|(b, ps)| {
                        Json::obj()
                            .with("behaviour", b.as_str())
                            .with("playstation", ps)
                    }),
                )
                .with(
                    "bfd",
                    m.bfd.map(|b| {
                        Json::obj()
                            .with("state", format!("{:?}", b.state))
                            .with("remote_state", format!("{:?}", b.remote_state))
                            .with("diagnostic", b.diagnostic.to_string())
                            .with("tx_interval_ms", b.tx_interval.as_micros() as f64 / 1000.0)
                            .with("detection_ms", b.detection_time.as_micros() as f64 / 1000.0)
                            .with("rx_interval_ms", b.rx_interval.as_micros() as f64 / 1000.0)
                            .with("jitter_ms", b.jitter.as_micros() as f64 / 1000.0)
                            .with(
                                "uptime_s",
                                b.up_since.map(|t| secs(now.saturating_duration_since(t))),
                            )
                            .with("tx_packets", b.stats.tx_packets)
                            .with("rx_packets", b.stats.rx_packets)
                            .with("downs", b.stats.downs)
                            .with("downs_survived", m.bfd_survived)
                            .with("downs_confirmed", m.bfd_confirmed)
                            .with("traffic_moved", m.traffic_moved)
                            .with(
                                "bgp_down_in_ms",
                                m.bgp_down_at
                                    .map(|t| t.saturating_duration_since(now).as_millis()),
                            )
                            .with(
                                "traffic_returns_in_ms",
                                m.traffic_returns_at
                                    .map(|t| t.saturating_duration_since(now).as_millis()),
                            )
                    }),
                )
                .with(
                    "bgp_held_for_s",
                    m.bgp_held_until
                        .map(|t| secs(t.saturating_duration_since(now))),
                )
                .with(
                    "bgp",
                    Json::obj()
                        .with("state", format!("{:?}", m.bgp_state))
                        .with(
                            "uptime_s",
                            m.bgp_established_since
                                .map(|t| secs(now.saturating_duration_since(t))),
                        )
                        .with("last_down", m.bgp_last_down.map(down_reason))
                        .with("prefixes_received", m.prefixes_received)
                        .with("updates_in", m.bgp_stats.updates_in)
                        .with("updates_out", m.bgp_stats.updates_out)
                        .with("flaps", m.bgp_stats.flaps)
                        .with("treat_as_withdraw", m.bgp_stats.treat_as_withdraw)
                        .with("replaced_connections", m.bgp_stats.replaced_connections)
                        .with("refused_routes", m.import.filtered),
                ),
        );
    }
    let mut routes = Vec::new();
    for e in node.routes() {
        let Some(best) = e.best() else { continue };
        let path_json = |p: &mesh_core::rib::Path| {
            let attrs = node.rib().attrs(p.attrs);
            Json::obj()
                .with("via", source_name(node, p.source))
                .with("as_path", attrs.map(|a| a.as_path.to_string()))
                .with(
                    "next_hop",
                    attrs.and_then(|a| a.next_hop_for(e.prefix.family()).map(|n| n.to_string())),
                )
        };
        let alternatives: Vec<Json> = e.paths()[1..]
            .iter()
            .map(|p| path_json(p).with("lost", p.step.describe()))
            .collect();
        routes.push(
            Json::obj()
                .with("prefix", e.prefix.to_string())
                .with("best", path_json(best).with("reason", best.step.describe()))
                .with("ecmp", e.ecmp_len())
                .with("alternatives", alternatives),
        );
    }
    let s = node.stats();
    let counters = Json::obj()
        .with("udp_in", s.udp_in)
        .with("udp_invalid", s.udp_invalid)
        .with("udp_oversized", s.udp_oversized)
        .with("unknown_key", s.unknown_key)
        .with("cookie_replies", s.cookie_replies)
        .with("bad_inner", s.bad_inner)
        .with("spoofed", s.spoofed)
        .with("lan_foreign_source", s.lan_foreign_source)
        .with("forwarded", s.forwarded)
        .with("to_lan", s.to_lan)
        .with("from_lan", s.from_lan)
        .with("no_route", s.no_route)
        .with("ttl_expired", s.ttl_expired)
        .with("icmp_sent", s.icmp_sent)
        .with("no_endpoint", s.no_endpoint)
        .with("queue_full", s.queue_full)
        .with("hijacks_refused", s.hijacks_refused)
        .with("redundant_copies", s.redundant_copies)
        .with("duplicates_dropped", s.duplicates_dropped)
        .with("bfd_discarded", s.bfd_discarded)
        .with("stun_requests", s.stun_requests)
        .with("stun_answered", s.stun_answered)
        .with("stun_invalid", s.stun_invalid)
        .with("stun_unexpected", s.stun_unexpected)
        .with("stun_responses", s.stun_responses)
        .with("stun_rate_limited", s.stun_rate_limited)
        .with("pex_sent", s.pex_sent)
        .with("pex_received", s.pex_received)
        .with("pex_invalid", s.pex_invalid)
        .with("group_sent", s.group_sent)
        .with("group_invalid", s.group_invalid)
        .with("group_limited", s.group_limited)
        .with("punch_packets", s.punch_packets)
        .with("punch_failures", s.punch_failures)
        .with("relay_refused", s.relay_refused)
        .with("relay_rate_limited", s.relay_rate_limited);
    let n = node.nat_report();
    let nat = Json::obj()
        .with("behaviour", n.behaviour.as_str())
        .with("mapping", n.mapping.as_str())
        .with("filtering", n.filtering.as_str())
        .with("playstation", n.playstation)
        .with("public", n.public.map(|e| e.to_string()))
        .with("observers", n.observers)
        .with("cgnat", n.cgnat)
        // What a console here gets without a game exit, in each maker's
        // words (the same as a console's `nat` in `exit.consoles[]` then).
        .with("console", console_nat(n.mapping, n.filtering));
    Json::obj()
        .with("version", env!("CARGO_PKG_VERSION"))
        .with("public_key", node.public_key().to_string())
        .with("overlay", c.overlay.to_string())
        .with("asn", c.asn)
        .with("listen_port", listen_port)
        .with(
            "announce",
            c.lan_prefixes
                .iter()
                .map(|p| Json::from(p.to_string()))
                .collect::<Vec<_>>(),
        )
        .with(
            "lan_map",
            c.lan_map
                .iter()
                .map(|m| {
                    Json::obj()
                        .with("lan", format!("{}/{}", m.lan.0, m.lan.1))
                        .with("alias", format!("{}/{}", m.alias.0, m.alias.1))
                })
                .collect::<Vec<_>>(),
        )
        .with(
            "failover",
            Json::obj()
                .with(
                    "bfd",
                    c.bfd.map(|b| {
                        format!("{} ms x {}", b.desired_min_tx.as_millis(), b.detect_mult)
                    }),
                )
                .with("redundancy_max_size", c.redundancy_max_len),
        )
        .with("nat", nat)
        .with("exit", exit_document(node, consoles, now))
        .with("members", members)
        // Members there is memory for (option max_members, set at start).
        .with("member_room", node.member_capacity())
        .with("routes", routes)
        .with("counters", counters)
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

/// The member the path to `prefix` leaves through now, if any.
pub fn first_hop<C: Crypto>(node: &Node<'_, C>, prefix: &Prefix) -> Option<String> {
    node.rib()
        .entry(prefix)
        .and_then(|e| e.best())
        .map(|b| source_name(node, b.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_behind_a_router_with_a_public_address_is_behind_its_masquerade() {
        let c = console_nat(Mapping::NoNat, Filtering::Unknown);
        assert_eq!(
            (
                c.get("playstation").and_then(Json::as_i64),
                c.get("xbox").and_then(Json::as_str),
                c.get("switch").and_then(Json::as_str)
            ),
            (Some(2), Some("Moderate"), Some("B"))
        );
        // Behind a NAT the router measured, the console shares it.
        let cgnat = console_nat(
            Mapping::EndpointDependent,
            Filtering::AddressAndPortDependent,
        );
        assert_eq!(cgnat.get("playstation").and_then(Json::as_i64), Some(3));
    }
}
