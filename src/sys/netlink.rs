//! Kernel links, addresses and routes over rtnetlink.
//!
//! A small, synchronous rtnetlink client: one `NETLINK_ROUTE` socket, one
//! request at a time, each with its own sequence number. Requests carry
//! `NLM_F_ACK` and wait for the kernel's `NLMSG_ERROR` answer to that sequence
//! number (error 0 = ack, a negative errno = failure, with the kernel's
//! extended-ack text when it gives one); dumps read multi-part replies until
//! `NLMSG_DONE`. The socket has a receive timeout of [`REPLY_TIMEOUT`], so a
//! lost reply becomes an [`io::ErrorKind::TimedOut`] error instead of a hung
//! daemon. Replies are bounds-checked throughout: a short or malformed reply
//! is an [`io::ErrorKind::InvalidData`] error, never a panic.
//!
//! The socket lives in the network namespace of the thread that opened it.
//!
//! meshd tags every route it installs with [`RTPROT_MESHD`], so that after a
//! crash it can find (and flush) its leftovers with [`Netlink::routes_by_protocol`]
//! and [`Netlink::flush_protocol`] without touching anyone else's routes. Its
//! policy-routing rules carry the same tag (`FRA_PROTOCOL`), found and flushed
//! with [`Netlink::rules_by_protocol`] and [`Netlink::flush_rules`].
//!
//! Besides links, addresses and routes, the client reads the neighbour (ARP /
//! NDP) table with [`Netlink::neighbours`].

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use super::{context, errno, with_detail};

/// The routing protocol number (`rtm_protocol`) of the routes meshd installs.
///
/// The kernel does not interpret it; it only stores it so that daemons can
/// recognise their own routes (`ip route show proto 200`). 200 (0xC8) is in
/// the range that `/etc/iproute2/rt_protos` leaves to routing daemons, above
/// the well-known ones (bird = 12, zebra = 11, babel = 42, ...) and the
/// kernel's own (0-4), and is unused by the common daemons, so meshd can find
/// and flush its routes after a crash without touching anybody else's.
pub const RTPROT_MESHD: u8 = 0xC8;

/// The main routing table (`RT_TABLE_MAIN`).
pub const RT_TABLE_MAIN: u32 = 254;

/// How long to wait for each part of a netlink reply before giving up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Receive buffer: the kernel never sends dump datagrams larger than 32 KiB.
const RECV_BUF: usize = 32 * 1024;

// Netlink framing (linux/netlink.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
// Flags of an NLMSG_ERROR message (extended ack).
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
// Socket options (SOL_NETLINK level).
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
// Attribute type flags (linux/netlink.h).
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);

// rtnetlink message types (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const RTM_GETRULE: u16 = 34;

// struct ifinfomsg and its attributes (linux/if_link.h).
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFF_UP: u32 = 0x1;

// struct ifaddrmsg and its attributes (linux/if_addr.h).
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;

// struct rtmsg and its attributes (linux/rtnetlink.h).
const RTMSG_LEN: usize = 12;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTA_TABLE: u16 = 15;
// Metrics nested in RTA_METRICS (RTAX_*).
const RTAX_MTU: u16 = 2;
const RTN_UNSPEC: u8 = 0;
const RTN_UNICAST: u8 = 1;
const RTN_THROW: u8 = 9;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_NOWHERE: u8 = 255;
const RT_TABLE_UNSPEC: u8 = 0;
const RTM_F_CLONED: u32 = 0x200;

// struct fib_rule_hdr and its attributes (linux/fib_rules.h).
const FIB_RULE_HDR_LEN: usize = 12;
const FRA_SRC: u16 = 2;
const FRA_IIFNAME: u16 = 3;
const FRA_PRIORITY: u16 = 6;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FRA_PROTOCOL: u16 = 21;
const FRA_IP_PROTO: u16 = 22;
const FR_ACT_TO_TBL: u8 = 1;

// struct ndmsg and its attributes (linux/neighbour.h).
const NDMSG_LEN: usize = 12;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_IFINDEX: u16 = 8;
const NUD_INCOMPLETE: u16 = 0x01;
const NUD_FAILED: u16 = 0x20;
const NUD_NOARP: u16 = 0x40;

/// Neighbour state (`ndm_state`, linux/neighbour.h): confirmed recently.
pub const NUD_REACHABLE: u16 = 0x02;
/// Neighbour state: known, not confirmed for a while (still used).
pub const NUD_STALE: u16 = 0x04;
/// Neighbour state: waiting a moment before probing a stale entry.
pub const NUD_DELAY: u16 = 0x08;
/// Neighbour state: being probed (unicast ARP / NS).
pub const NUD_PROBE: u16 = 0x10;
/// Neighbour state: a static entry (`ip neigh add ... nud permanent`).
pub const NUD_PERMANENT: u16 = 0x80;

const AF_UNSPEC: u8 = 0;
/// The IPv4 address family (`AF_INET`), for [`Rule::family`] and
/// [`Netlink::neighbours`].
pub const AF_INET: u8 = 2;
/// The IPv6 address family (`AF_INET6`).
pub const AF_INET6: u8 = 10;

/// A kernel route towards a device, with no gateway (the TUN is a
/// point-to-point device): type unicast, scope link for IPv4; or a throw
/// route (see [`RouteKind::Throw`]).
///
/// Note that the kernel identifies a route by its table, destination, prefix
/// length *and metric*: a [`Netlink::route_replace`] with another metric adds a
/// second route next to the first instead of replacing it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination network address (host bits zero).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Output interface index (0 only when deleting: any device).
    pub oif: u32,
    /// Preferred source address (`RTA_PREFSRC`); must be an address of this
    /// host, of the same family as `dst`.
    pub src: Option<IpAddr>,
    /// Route metric (`RTA_PRIORITY`). `None` lets the kernel choose (0 for
    /// IPv4, 1024 for IPv6, which is what a dump then reports).
    pub metric: Option<u32>,
    /// Routing protocol (`rtm_protocol`), normally [`RTPROT_MESHD`].
    pub protocol: u8,
    /// Routing table, normally [`RT_TABLE_MAIN`].
    pub table: u32,
    /// Route type (`rtm_type`): unicast towards `oif`, or throw.
    pub kind: RouteKind,
    /// Path MTU for the destination (`RTAX_MTU` in `RTA_METRICS`); `None`
    /// leaves it to the device MTU. Ignored when deleting.
    pub mtu: Option<u32>,
}

/// The type of a [`Route`] (`rtm_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `RTN_UNICAST`: packets leave through [`Route::oif`].
    #[default]
    Unicast,
    /// `RTN_THROW`: the lookup in this table fails as if the destination
    /// were not there, and the next policy rule is tried. A throw route has
    /// no output interface (`oif` 0) and no preferred source.
    Throw,
}

impl Route {
    /// A meshd unicast route to `dst/prefix_len` via device `oif` in the main
    /// table, without preferred source, metric or MTU.
    pub fn new(dst: IpAddr, prefix_len: u8, oif: u32) -> Route {
        Route {
            dst,
            prefix_len,
            oif,
            src: None,
            metric: None,
            protocol: RTPROT_MESHD,
            table: RT_TABLE_MAIN,
            kind: RouteKind::Unicast,
            mtu: None,
        }
    }

    /// A meshd throw route for `dst/prefix_len` in `table`.
    pub fn throw(dst: IpAddr, prefix_len: u8, table: u32) -> Route {
        Route {
            table,
            kind: RouteKind::Throw,
            ..Route::new(dst, prefix_len, 0)
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Unicast => write!(f, "{}/{} dev #{}", self.dst, self.prefix_len, self.oif)?,
            RouteKind::Throw => write!(f, "throw {}/{}", self.dst, self.prefix_len)?,
        }
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        if let Some(mtu) = self.mtu {
            write!(f, " mtu {mtu}")?;
        }
        write!(f, " proto {} table {}", self.protocol, self.table)
    }
}

/// A policy-routing rule (`ip rule`) whose action is a table lookup
/// (`FR_ACT_TO_TBL`).
///
/// Only the selectors meshd uses are described; a dumped rule that also has
/// others (destination, fwmark, tos, output interface, ports, `not`) is read
/// without them. The kernel keeps rules in priority order and, within a
/// priority, in the order they were added.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    /// Address family: [`AF_INET`] or [`AF_INET6`].
    pub family: u8,
    /// Priority (`pref`): lower numbers are tried first. Always sent, so 0
    /// means 0 (before the local table), not "let the kernel choose".
    pub priority: u32,
    /// Source prefix (`from`), of the rule's family; `None` = any. A prefix
    /// length of 0 is the same as `None` (and reads back as `None`).
    pub src: Option<(IpAddr, u8)>,
    /// Input interface name (`iif`); the rule matches only packets that came
    /// in through it (locally generated ones come "from" `lo`).
    pub iif: Option<String>,
    /// IP protocol (`ipproto`), e.g. 17 for UDP; `None` = any.
    pub ip_proto: Option<u8>,
    /// The table to look the destination up in (`lookup`); not 0.
    pub table: u32,
    /// `suppress_prefixlength`: ignore a result of the lookup whose prefix
    /// length is this or shorter (0 ignores only default routes), so that
    /// the next rule is tried instead.
    pub suppress_prefixlen: Option<u32>,
    /// The rule's originator (`FRA_PROTOCOL`), normally [`RTPROT_MESHD`].
    pub protocol: u8,
}

impl Rule {
    /// A meshd IPv4 rule at `priority` that looks up `table`, with no
    /// selectors (it matches every packet).
    pub fn new(priority: u32, table: u32) -> Rule {
        Rule {
            family: AF_INET,
            priority,
            src: None,
            iif: None,
            ip_proto: None,
            table,
            suppress_prefixlen: None,
            protocol: RTPROT_MESHD,
        }
    }
}

/// Reads like `ip rule show` (with the protocol as a number).
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: from ", self.priority)?;
        match self.src {
            Some((addr, len)) if len > 0 => write!(f, "{addr}/{len}")?,
            _ => write!(f, "all")?,
        }
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        if let Some(proto) = self.ip_proto {
            write!(f, " ipproto {proto}")?;
        }
        write!(f, " lookup {}", self.table)?;
        if let Some(len) = self.suppress_prefixlen {
            write!(f, " suppress_prefixlength {len}")?;
        }
        write!(f, " proto {}", self.protocol)
    }
}

/// An entry of the kernel's neighbour table (ARP for IPv4, NDP for IPv6).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Neighbour {
    /// The interface the neighbour is on.
    pub ifindex: u32,
    /// Its IP address.
    pub addr: IpAddr,
    /// Its Ethernet address. [`Netlink::neighbours`] only returns entries
    /// that have one; `None` only in what the parser reads from the kernel.
    pub mac: Option<[u8; 6]>,
    /// `ndm_state`: [`NUD_REACHABLE`], [`NUD_STALE`], [`NUD_DELAY`],
    /// [`NUD_PROBE`] or [`NUD_PERMANENT`] for the entries
    /// [`Netlink::neighbours`] returns.
    pub state: u16,
}

/// A `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a rtnetlink socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| context(e.into(), "opening NETLINK_ROUTE socket"))?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| context(e.into(), "binding NETLINK_ROUTE socket"))?;
        let timeout = TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| context(e.into(), "setting the netlink receive timeout"))?;
        // Best effort (kernels since 4.12 / 4.3): error messages in plain
        // words, and errors without a copy of our request.
        set_netlink_flag(&fd, NETLINK_EXT_ACK);
        set_netlink_flag(&fd, NETLINK_CAP_ACK);
        Ok(Netlink {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// The index of the interface called `name`.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let what = || format!("looking up interface {name:?}");
        let seq = self.next_seq();
        let msg = encode_getlink(seq, name).map_err(|e| context(e, what()))?;
        let mut index = None;
        self.transact(&msg, seq, &mut |m| {
            if m.ty == RTM_NEWLINK {
                index = Some(parse_link_index(m.payload)?);
            }
            Ok(())
        })
        .map_err(|e| context(e, what()))?;
        index.ok_or_else(|| context(invalid_data("no RTM_NEWLINK in the reply"), what()))
    }

    /// Sets interface `index` up or down and, if given, its MTU.
    pub fn link_set(&mut self, index: u32, up: bool, mtu: Option<u32>) -> io::Result<()> {
        let what = || {
            let state = if up { "up" } else { "down" };
            match mtu {
                Some(mtu) => format!("setting interface #{index} {state} with mtu {mtu}"),
                None => format!("setting interface #{index} {state}"),
            }
        };
        let seq = self.next_seq();
        let msg = encode_link_set(seq, index, up, mtu).map_err(|e| context(e, what()))?;
        self.request(&msg, seq).map_err(|e| context(e, what()))
    }

    /// Adds `addr/prefix_len` to interface `index` (IPv6 without duplicate
    /// address detection, so it is usable at once). Adding an address that is
    /// already there succeeds.
    pub fn addr_add(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let what = || format!("adding address {addr}/{prefix_len} to interface #{index}");
        let seq = self.next_seq();
        let msg =
            encode_addr(seq, true, index, addr, prefix_len).map_err(|e| context(e, what()))?;
        match self.request(&msg, seq) {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            r => r.map_err(|e| context(e, what())),
        }
    }

    /// Removes `addr/prefix_len` from interface `index`. Removing an address
    /// that is not there (`EADDRNOTAVAIL`) succeeds.
    pub fn addr_del(&mut self, index: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let what = || format!("removing address {addr}/{prefix_len} from interface #{index}");
        let seq = self.next_seq();
        let msg =
            encode_addr(seq, false, index, addr, prefix_len).map_err(|e| context(e, what()))?;
        match self.request(&msg, seq) {
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            r => r.map_err(|e| context(e, what())),
        }
    }

    /// Installs `route`, replacing the route with the same table, destination
    /// and metric if there is one (`NLM_F_CREATE | NLM_F_REPLACE`).
    ///
    /// A route with a *different* metric is a different route to the kernel:
    /// to change the metric, install the new one and delete the old one.
    pub fn route_replace(&mut self, route: &Route) -> io::Result<()> {
        let what = || format!("installing route {route}");
        let seq = self.next_seq();
        let msg = encode_route(seq, RouteCmd::Replace, route).map_err(|e| context(e, what()))?;
        self.request(&msg, seq).map_err(|e| context(e, what()))
    }

    /// Deletes the route to `route.dst/prefix_len` in `route.table` with
    /// protocol `route.protocol`, via `route.oif` (unless 0) and with
    /// `route.metric`; `route.src` is ignored. A metric of `None` (or 0)
    /// matches any metric, and the kernel then deletes the first match, the
    /// one with the lowest metric: pass the metric when there may be several
    /// (IPv6 routes installed without one have 1024). A route that is already
    /// gone (`ESRCH`/`ENOENT`) is not an error.
    pub fn route_delete(&mut self, route: &Route) -> io::Result<()> {
        self.route_delete_counted(route).map(drop)
    }

    /// All unicast and throw routes of the main table (IPv4 and IPv6) whose
    /// protocol is `proto`.
    pub fn routes_by_protocol(&mut self, proto: u8) -> io::Result<Vec<Route>> {
        self.routes_in_table(RT_TABLE_MAIN, proto)
    }

    /// All unicast and throw routes of `table` (IPv4 and IPv6) whose protocol
    /// is `proto`.
    pub fn routes_in_table(&mut self, table: u32, proto: u8) -> io::Result<Vec<Route>> {
        let mut out = Vec::new();
        for family in [AF_INET, AF_INET6] {
            let routes = self.dump_routes(family).map_err(|e| {
                context(
                    e,
                    format!("listing routes of protocol {proto} in table {table}"),
                )
            })?;
            out.extend(
                routes
                    .into_iter()
                    .filter(|r| r.protocol == proto && r.table == table),
            );
        }
        Ok(out)
    }

    /// Deletes every route that [`Netlink::routes_by_protocol`] lists for
    /// `proto` and returns how many were deleted. Keeps going past a failed
    /// delete and then returns the first error.
    pub fn flush_protocol(&mut self, proto: u8) -> io::Result<usize> {
        let mut deleted = 0;
        let mut first_err = None;
        for route in self.routes_by_protocol(proto)? {
            match self.route_delete_counted(&route) {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(deleted), Err)
    }

    /// Like `route_delete`, telling whether there was a route to delete.
    fn route_delete_counted(&mut self, route: &Route) -> io::Result<bool> {
        let what = || format!("deleting route {route}");
        let seq = self.next_seq();
        let msg = encode_route(seq, RouteCmd::Delete, route).map_err(|e| context(e, what()))?;
        match self.request(&msg, seq) {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno(&e), Some(libc::ESRCH | libc::ENOENT)) => Ok(false),
            Err(e) => Err(context(e, what())),
        }
    }

    /// Adds `rule`. Adding a rule that is already there (the same selectors,
    /// priority, table and protocol: `EEXIST`) succeeds without adding a
    /// second copy.
    pub fn rule_add(&mut self, rule: &Rule) -> io::Result<()> {
        let what = || format!("adding rule {rule}");
        let seq = self.next_seq();
        let msg = encode_rule(seq, RuleCmd::Add, rule).map_err(|e| context(e, what()))?;
        match self.request(&msg, seq) {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            r => r.map_err(|e| context(e, what())),
        }
    }

    /// Deletes the first rule (in priority order) at `rule.priority` with
    /// `rule`'s table, protocol and selectors (a selector that is `None`
    /// matches any value). A rule that is not there (`ENOENT`) is not an
    /// error.
    pub fn rule_delete(&mut self, rule: &Rule) -> io::Result<()> {
        self.rule_delete_counted(rule).map(drop)
    }

    /// All table-lookup rules (IPv4 and IPv6) whose protocol is `proto`, in
    /// the kernel's order (by priority).
    pub fn rules_by_protocol(&mut self, proto: u8) -> io::Result<Vec<Rule>> {
        let what = || format!("listing rules of protocol {proto}");
        // AF_UNSPEC: every family with rules, even on a kernel without IPv6
        // (where an AF_INET6 dump would fail); the parser skips the others.
        let rules = self
            .dump(
                "rule",
                |seq| encode_rule_dump(seq, AF_UNSPEC),
                RTM_NEWRULE,
                parse_rule,
            )
            .map_err(|e| context(e, what()))?;
        Ok(rules.into_iter().filter(|r| r.protocol == proto).collect())
    }

    /// Deletes every rule that [`Netlink::rules_by_protocol`] lists for
    /// `proto` and returns how many were deleted. Keeps going past a failed
    /// delete and then returns the first error.
    pub fn flush_rules(&mut self, proto: u8) -> io::Result<usize> {
        let mut deleted = 0;
        let mut first_err = None;
        for rule in self.rules_by_protocol(proto)? {
            match self.rule_delete_counted(&rule) {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(deleted), Err)
    }

    /// Like `rule_delete`, telling whether there was a rule to delete.
    fn rule_delete_counted(&mut self, rule: &Rule) -> io::Result<bool> {
        let what = || format!("deleting rule {rule}");
        let seq = self.next_seq();
        let msg = encode_rule(seq, RuleCmd::Delete, rule).map_err(|e| context(e, what()))?;
        match self.request(&msg, seq) {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(context(e, what())),
        }
    }

    /// The usable entries of the neighbour table of `family` ([`AF_INET`]:
    /// ARP, [`AF_INET6`]: NDP), on interface `ifindex` or on all of them.
    ///
    /// Left out are entries that say nothing about a live host: those still
    /// being resolved (`NUD_INCOMPLETE`), those that failed to resolve
    /// (`NUD_FAILED`), the pseudo-entries of devices without link-layer
    /// resolution (`NUD_NOARP`: point-to-point, multicast, broadcast) and any
    /// other without a 6-byte (Ethernet) link-layer address. Stale entries
    /// are kept: the kernel keeps using them until a probe fails.
    pub fn neighbours(&mut self, family: u8, ifindex: Option<u32>) -> io::Result<Vec<Neighbour>> {
        let what = || match ifindex {
            Some(i) => format!("listing the neighbours of family {family} on interface #{i}"),
            None => format!("listing the neighbours of family {family}"),
        };
        let filter = ifindex
            .map(check_index)
            .transpose()
            .map_err(|e| context(e, what()))?;
        let all = self
            .dump(
                "neighbour",
                |seq| encode_neigh_dump(seq, family, filter),
                RTM_NEWNEIGH,
                parse_neighbour,
            )
            .map_err(|e| context(e, what()))?;
        // The kernel filters by NDA_IFINDEX since 4.20; older ones ignore it.
        Ok(all
            .into_iter()
            .filter(|n| family_of(n.addr) == family && ifindex.is_none_or(|i| n.ifindex == i))
            .filter(usable_neighbour)
            .collect())
    }

    /// Dumps the routes of one family (all tables).
    fn dump_routes(&mut self, family: u8) -> io::Result<Vec<Route>> {
        self.dump(
            "route",
            |seq| encode_route_dump(seq, family),
            RTM_NEWROUTE,
            parse_route,
        )
    }

    /// Runs the dump that `request` encodes, parsing its `ty` messages with
    /// `parse` (which returns `None` for the entries to skip), and retrying a
    /// few times if the kernel says the dump was interrupted by a concurrent
    /// change.
    fn dump<T>(
        &mut self,
        what: &str,
        request: impl Fn(u32) -> Vec<u8>,
        ty: u16,
        parse: impl Fn(&[u8]) -> io::Result<Option<T>>,
    ) -> io::Result<Vec<T>> {
        for _ in 0..3 {
            let seq = self.next_seq();
            let msg = request(seq);
            let mut out = Vec::new();
            let interrupted = self.transact(&msg, seq, &mut |m| {
                if m.ty == ty {
                    out.extend(parse(m.payload)?);
                }
                Ok(())
            })?;
            if !interrupted {
                return Ok(out);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            format!("{what} dump interrupted by concurrent changes three times"),
        ))
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends a request that expects only an ack.
    fn request(&mut self, msg: &[u8], seq: u32) -> io::Result<()> {
        self.transact(msg, seq, &mut |_| Ok(())).map(drop)
    }

    /// Sends `msg` and reads the replies carrying `seq` until the ack, the
    /// error or the end of the dump, handing data messages to `on_data`.
    /// Returns whether the kernel flagged the dump as interrupted.
    fn transact(
        &mut self,
        msg: &[u8],
        seq: u32,
        on_data: &mut dyn FnMut(&Message<'_>) -> io::Result<()>,
    ) -> io::Result<bool> {
        self.drain();
        self.send(msg)?;
        // A bad data message does not end the exchange: read on to the end so
        // the rest of a dump does not linger in the socket.
        let mut data_err = None;
        let mut interrupted = false;
        loop {
            let n = self.recv()?;
            for m in split_messages(&self.buf[..n])? {
                if m.seq == seq && m.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match classify(&m, seq)? {
                    Reply::Skip => {}
                    Reply::Ack | Reply::Done => return data_err.map_or(Ok(interrupted), Err),
                    Reply::Data => {
                        if data_err.is_none() {
                            data_err = on_data(&m).err();
                        }
                    }
                }
            }
        }
    }

    /// Throws away whatever an earlier, abandoned exchange left in the socket
    /// (reading also runs an unfinished dump to its end, which the kernel
    /// requires before it starts another one).
    fn drain(&mut self) {
        for _ in 0..1024 {
            match socket::recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_DONTWAIT) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        let kernel = NetlinkAddr::new(0, 0);
        loop {
            match socket::sendto(self.fd.as_raw_fd(), msg, &kernel, MsgFlags::empty()) {
                Ok(n) if n == msg.len() => return Ok(()),
                Ok(n) => {
                    return Err(io::Error::other(format!(
                        "netlink send: short write ({n} of {} bytes)",
                        msg.len()
                    )))
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(context(e.into(), "netlink send")),
            }
        }
    }

    /// Receives one datagram into `self.buf`, returning its length.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // MSG_TRUNC: return the real length, so truncation is detected.
            match socket::recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(invalid_data(format!(
                        "netlink reply of {n} bytes truncated to {}",
                        self.buf.len()
                    )))
                }
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no netlink reply within {REPLY_TIMEOUT:?}"),
                    ))
                }
                Err(e) => return Err(context(e.into(), "netlink recv")),
            }
        }
    }
}

impl AsFd for Netlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Netlink {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Sets an integer `SOL_NETLINK` option to 1, ignoring failure (old kernels).
fn set_netlink_flag(fd: &OwnedFd, option: libc::c_int) {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket; the option value points to a live
    // `c_int` whose size is passed along, and the kernel only reads it during
    // the call. nix has no wrapper for these netlink options.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_NETLINK,
            option,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn invalid_input(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

// ---------------------------------------------------------------------------
// Encoding

/// A netlink message being built: header, fixed part, attributes.
struct MsgBuf(Vec<u8>);

impl MsgBuf {
    fn new(ty: u16, flags: u16, seq: u32) -> MsgBuf {
        let mut v = Vec::with_capacity(96);
        v.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
        MsgBuf(v)
    }

    fn fixed(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        self.pad();
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).expect("netlink attribute too long");
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
    }

    fn attr_u32(&mut self, ty: u16, value: u32) {
        self.attr(ty, &value.to_ne_bytes());
    }

    fn attr_ip(&mut self, ty: u16, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.attr(ty, &a.octets()),
            IpAddr::V6(a) => self.attr(ty, &a.octets()),
        }
    }

    fn pad(&mut self) {
        self.0.resize(align4(self.0.len()), 0);
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn family_of(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn check_prefix_len(addr: IpAddr, prefix_len: u8) -> io::Result<()> {
    if prefix_len > max_prefix(addr) {
        return Err(invalid_input(format!(
            "prefix length {prefix_len} too long for {addr}"
        )));
    }
    Ok(())
}

/// A valid prefix length with the host bits of `addr` clear.
fn check_prefix(addr: IpAddr, prefix_len: u8) -> io::Result<()> {
    check_prefix_len(addr, prefix_len)?;
    let host_bits = match addr {
        IpAddr::V4(a) => prefix_len < 32 && u32::from(a) << prefix_len != 0,
        IpAddr::V6(a) => prefix_len < 128 && u128::from(a) << prefix_len != 0,
    };
    if host_bits {
        return Err(invalid_input(format!(
            "{addr}/{prefix_len} has host bits set"
        )));
    }
    Ok(())
}

/// An interface name the kernel accepts: 1 to 15 bytes (`IFNAMSIZ` - 1),
/// no NUL.
fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains('\0') {
        return Err(invalid_input(format!("bad interface name {name:?}")));
    }
    Ok(())
}

/// `name` with its terminating NUL, as `IFLA_IFNAME` and `FRA_IIFNAME` carry
/// it.
fn c_name(name: &str) -> Vec<u8> {
    let mut cname = Vec::with_capacity(name.len() + 1);
    cname.extend_from_slice(name.as_bytes());
    cname.push(0);
    cname
}

/// `ifi_index` is a C `int`.
fn check_index(index: u32) -> io::Result<i32> {
    match i32::try_from(index) {
        Ok(i) if i > 0 => Ok(i),
        _ => Err(invalid_input(format!("bad interface index {index}"))),
    }
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[0] = AF_UNSPEC; // ifi_family; m[1] pad; m[2..4] ifi_type
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn encode_getlink(seq: u32, name: &str) -> io::Result<Vec<u8>> {
    check_ifname(name)?;
    let mut m = MsgBuf::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    m.fixed(&ifinfomsg(0, 0, 0));
    m.attr(IFLA_IFNAME, &c_name(name));
    Ok(m.finish())
}

fn encode_link_set(seq: u32, index: u32, up: bool, mtu: Option<u32>) -> io::Result<Vec<u8>> {
    let index = check_index(index)?;
    let mut m = MsgBuf::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    m.fixed(&ifinfomsg(index, if up { IFF_UP } else { 0 }, IFF_UP));
    if let Some(mtu) = mtu {
        m.attr_u32(IFLA_MTU, mtu);
    }
    Ok(m.finish())
}

fn encode_addr(
    seq: u32,
    add: bool,
    index: u32,
    addr: IpAddr,
    prefix_len: u8,
) -> io::Result<Vec<u8>> {
    check_index(index)?;
    check_prefix_len(addr, prefix_len)?;
    let (ty, flags) = if add {
        (
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        (RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK)
    };
    let mut m = MsgBuf::new(ty, flags, seq);
    let mut ifa = [0u8; IFADDRMSG_LEN];
    ifa[0] = family_of(addr);
    ifa[1] = prefix_len;
    ifa[2] = if addr.is_ipv6() { IFA_F_NODAD } else { 0 };
    ifa[3] = RT_SCOPE_UNIVERSE;
    ifa[4..8].copy_from_slice(&index.to_ne_bytes());
    m.fixed(&ifa);
    m.attr_ip(IFA_LOCAL, addr);
    m.attr_ip(IFA_ADDRESS, addr);
    Ok(m.finish())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteCmd {
    Replace,
    Delete,
}

fn encode_route(seq: u32, cmd: RouteCmd, r: &Route) -> io::Result<Vec<u8>> {
    check_prefix(r.dst, r.prefix_len)?;
    if r.src.is_some_and(|s| s.is_ipv4() != r.dst.is_ipv4()) {
        return Err(invalid_input(
            "source and destination of different families",
        ));
    }
    let (ty, flags, scope, rtype) = match cmd {
        RouteCmd::Replace => {
            let (scope, rtype) = route_scope_and_type(r)?;
            let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
            (RTM_NEWROUTE, flags, scope, rtype)
        }
        // Scope "nowhere" and type "unspec" are wildcards for the kernel.
        RouteCmd::Delete => (
            RTM_DELROUTE,
            NLM_F_REQUEST | NLM_F_ACK,
            RT_SCOPE_NOWHERE,
            RTN_UNSPEC,
        ),
    };
    let mut m = MsgBuf::new(ty, flags, seq);
    m.fixed(&[
        family_of(r.dst),
        r.prefix_len,
        0, // rtm_src_len
        0, // rtm_tos
        u8::try_from(r.table).unwrap_or(RT_TABLE_UNSPEC),
        r.protocol,
        scope,
        rtype,
        0, // rtm_flags (u32)
        0,
        0,
        0,
    ]);
    m.attr_u32(RTA_TABLE, r.table);
    m.attr_ip(RTA_DST, r.dst);
    if r.oif != 0 {
        m.attr_u32(RTA_OIF, r.oif);
    }
    if cmd == RouteCmd::Replace {
        if let Some(src) = r.src {
            m.attr_ip(RTA_PREFSRC, src);
        }
    }
    if let Some(metric) = r.metric {
        m.attr_u32(RTA_PRIORITY, metric);
    }
    if let (RouteCmd::Replace, Some(mtu)) = (cmd, r.mtu) {
        // A nested attribute: RTA_METRICS holding the metrics as rtattrs.
        let mut metrics = Vec::with_capacity(8);
        metrics.extend_from_slice(&8u16.to_ne_bytes());
        metrics.extend_from_slice(&RTAX_MTU.to_ne_bytes());
        metrics.extend_from_slice(&mtu.to_ne_bytes());
        m.attr(RTA_METRICS, &metrics);
    }
    Ok(m.finish())
}

/// The scope and type of a route being installed, checking that it has an
/// output interface if and only if it is unicast.
fn route_scope_and_type(r: &Route) -> io::Result<(u8, u8)> {
    match r.kind {
        RouteKind::Unicast => {
            if r.oif == 0 {
                return Err(invalid_input("a route needs an output interface"));
            }
            // Like iproute2: device routes are link scope for IPv4; IPv6
            // routes are always universe scope.
            let scope = if r.dst.is_ipv4() {
                RT_SCOPE_LINK
            } else {
                RT_SCOPE_UNIVERSE
            };
            Ok((scope, RTN_UNICAST))
        }
        RouteKind::Throw => {
            if r.oif != 0 || r.src.is_some() {
                return Err(invalid_input(
                    "a throw route has no output interface or preferred source",
                ));
            }
            Ok((RT_SCOPE_UNIVERSE, RTN_THROW))
        }
    }
}

/// A dump request: `ty` with `NLM_F_DUMP` and the fixed header `fixed`.
fn encode_dump(seq: u32, ty: u16, fixed: &[u8]) -> MsgBuf {
    let mut m = MsgBuf::new(ty, NLM_F_REQUEST | NLM_F_DUMP, seq);
    m.fixed(fixed);
    m
}

fn encode_route_dump(seq: u32, family: u8) -> Vec<u8> {
    let mut rtm = [0u8; RTMSG_LEN];
    rtm[0] = family;
    encode_dump(seq, RTM_GETROUTE, &rtm).finish()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleCmd {
    Add,
    Delete,
}

fn encode_rule(seq: u32, cmd: RuleCmd, r: &Rule) -> io::Result<Vec<u8>> {
    check_rule(r)?;
    let (ty, flags) = match cmd {
        // EXCL: without it the kernel adds a duplicate of an existing rule.
        RuleCmd::Add => (
            RTM_NEWRULE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ),
        RuleCmd::Delete => (RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK),
    };
    let src = r.src.filter(|&(_, len)| len > 0);
    let mut m = MsgBuf::new(ty, flags, seq);
    m.fixed(&[
        r.family,
        0,                             // dst_len
        src.map_or(0, |(_, len)| len), // src_len
        0,                             // tos
        u8::try_from(r.table).unwrap_or(RT_TABLE_UNSPEC),
        0, // res1
        0, // res2
        FR_ACT_TO_TBL,
        0, // flags (u32)
        0,
        0,
        0,
    ]);
    m.attr_u32(FRA_TABLE, r.table);
    m.attr_u32(FRA_PRIORITY, r.priority);
    if let Some((addr, _)) = src {
        m.attr_ip(FRA_SRC, addr);
    }
    if let Some(iif) = &r.iif {
        m.attr(FRA_IIFNAME, &c_name(iif));
    }
    if let Some(proto) = r.ip_proto {
        m.attr(FRA_IP_PROTO, &[proto]);
    }
    if let Some(len) = r.suppress_prefixlen {
        m.attr_u32(FRA_SUPPRESS_PREFIXLEN, len);
    }
    m.attr(FRA_PROTOCOL, &[r.protocol]);
    Ok(m.finish())
}

/// A rule the kernel can take: a known family, a source of that family
/// without host bits, a valid interface name, a table.
fn check_rule(r: &Rule) -> io::Result<()> {
    if r.family != AF_INET && r.family != AF_INET6 {
        return Err(invalid_input(format!("bad rule family {}", r.family)));
    }
    if let Some((addr, len)) = r.src {
        if family_of(addr) != r.family {
            return Err(invalid_input(format!(
                "source {addr} not of the rule's family {}",
                r.family
            )));
        }
        check_prefix(addr, len)?;
    }
    if let Some(iif) = &r.iif {
        check_ifname(iif)?;
    }
    if r.table == 0 {
        return Err(invalid_input("a rule needs a table to look up"));
    }
    // FRA_SUPPRESS_PREFIXLEN is an int to the kernel, -1 meaning unset.
    if r.suppress_prefixlen.is_some_and(|len| len > 128) {
        return Err(invalid_input(format!(
            "bad suppress_prefixlength {:?}",
            r.suppress_prefixlen
        )));
    }
    Ok(())
}

fn encode_rule_dump(seq: u32, family: u8) -> Vec<u8> {
    let mut hdr = [0u8; FIB_RULE_HDR_LEN];
    hdr[0] = family;
    encode_dump(seq, RTM_GETRULE, &hdr).finish()
}

/// A neighbour dump of `family`, asking the kernel to keep to interface
/// `ifindex` if given (`NDA_IFINDEX`; the header's `ndm_ifindex` must stay
/// 0 for strict checking).
fn encode_neigh_dump(seq: u32, family: u8, ifindex: Option<i32>) -> Vec<u8> {
    let mut ndm = [0u8; NDMSG_LEN];
    ndm[0] = family;
    let mut m = encode_dump(seq, RTM_GETNEIGH, &ndm);
    if let Some(index) = ifindex {
        m.attr(NDA_IFINDEX, &index.to_ne_bytes());
    }
    m.finish()
}

// ---------------------------------------------------------------------------
// Parsing

/// One netlink message of a received datagram.
#[derive(Debug, PartialEq, Eq)]
struct Message<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let bytes = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

/// Splits a datagram into its netlink messages.
fn split_messages(buf: &[u8]) -> io::Result<Vec<Message<'_>>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let (Some(len), Some(ty), Some(flags), Some(seq)) = (
            u32_at(rest, 0),
            u16_at(rest, 4),
            u16_at(rest, 6),
            u32_at(rest, 8),
        ) else {
            return Err(invalid_data(format!(
                "truncated netlink header ({} bytes)",
                rest.len()
            )));
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(invalid_data(format!(
                "netlink message length {len} out of bounds ({} bytes left)",
                rest.len()
            )));
        }
        out.push(Message {
            ty,
            flags,
            seq,
            payload: &rest[NLMSG_HDRLEN..len],
        });
        off += align4(len).min(rest.len());
    }
    Ok(out)
}

/// What a received message means for the exchange with sequence `seq`.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Not ours (an earlier request's late reply) or a no-op.
    Skip,
    /// A data message (e.g. `RTM_NEWROUTE` in a dump).
    Data,
    /// `NLMSG_ERROR` with error 0.
    Ack,
    /// `NLMSG_DONE`: end of a dump.
    Done,
}

/// Classifies one message; a kernel error for `seq` becomes `Err`.
fn classify(m: &Message<'_>, seq: u32) -> io::Result<Reply> {
    if m.seq != seq {
        return Ok(Reply::Skip);
    }
    match m.ty {
        NLMSG_NOOP => Ok(Reply::Skip),
        NLMSG_ERROR => {
            let code =
                u32_at(m.payload, 0).ok_or_else(|| invalid_data("truncated NLMSG_ERROR"))? as i32;
            if code == 0 {
                return Ok(Reply::Ack);
            }
            Err(kernel_error(code, extack_message(m.ty, m.flags, m.payload)))
        }
        NLMSG_DONE => match u32_at(m.payload, 0).map(|c| c as i32) {
            Some(code) if code < 0 => {
                Err(kernel_error(code, extack_message(m.ty, m.flags, m.payload)))
            }
            _ => Ok(Reply::Done),
        },
        NLMSG_OVERRUN => Err(invalid_data("netlink overrun")),
        _ => Ok(Reply::Data),
    }
}

/// One message of a reply datagram, as [`read_reply`] saw it.
#[derive(Debug)]
pub enum ReplyMessage {
    /// Not for this exchange, or a no-op.
    Skip,
    Ack,
    Done,
    /// A data message, parsed as its type says (`None`: an entry the dumps
    /// skip); other types are `Other`.
    Route(io::Result<Option<Route>>),
    Rule(io::Result<Option<Rule>>),
    Neighbour(io::Result<Option<Neighbour>>),
    Link(io::Result<u32>),
    Other(u16),
}

/// Reads one reply datagram the way [`Netlink`]'s exchanges read what the
/// kernel sends: split into messages, each classified against `seq` (a
/// kernel error ends the exchange as `Err`, as an ack or the end of a dump
/// ends it with the messages so far), each data message parsed. Without a
/// socket: for the `netlink` fuzz target, which feeds it any bytes.
pub fn read_reply(buf: &[u8], seq: u32) -> io::Result<Vec<ReplyMessage>> {
    let mut out = Vec::new();
    for m in split_messages(buf)? {
        let parsed = match classify(&m, seq)? {
            Reply::Skip => ReplyMessage::Skip,
            Reply::Ack => ReplyMessage::Ack,
            Reply::Done => ReplyMessage::Done,
            Reply::Data => match m.ty {
                RTM_NEWROUTE => ReplyMessage::Route(parse_route(m.payload)),
                RTM_NEWRULE => ReplyMessage::Rule(parse_rule(m.payload)),
                RTM_NEWNEIGH => ReplyMessage::Neighbour(parse_neighbour(m.payload)),
                RTM_NEWLINK => ReplyMessage::Link(parse_link_index(m.payload)),
                ty => ReplyMessage::Other(ty),
            },
        };
        let end = matches!(parsed, ReplyMessage::Ack | ReplyMessage::Done);
        out.push(parsed);
        if end {
            break;
        }
    }
    Ok(out)
}

fn kernel_error(code: i32, detail: Option<String>) -> io::Error {
    if !(-4095..0).contains(&code) {
        return invalid_data(format!("bad netlink error code {code}"));
    }
    let err = io::Error::from_raw_os_error(-code);
    match detail {
        Some(msg) => with_detail(err, "", Some(format!("kernel: {msg}"))),
        None => err,
    }
}

/// The extended-ack text (`NLMSGERR_ATTR_MSG`) of an `NLMSG_ERROR` or
/// `NLMSG_DONE` payload, if there is one.
fn extack_message(ty: u16, flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // The error code; for NLMSG_ERROR then the request's header and, unless
    // capped, the rest of the request; then the attributes.
    let tlv_start = if ty == NLMSG_ERROR {
        let orig_len = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            u32_at(payload, 4)? as usize
        };
        align4(4usize.checked_add(orig_len.max(NLMSG_HDRLEN))?)
    } else {
        4
    };
    let attrs = parse_attrs(payload.get(tlv_start..)?).ok()?;
    let (_, text) = attrs.into_iter().find(|(ty, _)| *ty == NLMSGERR_ATTR_MSG)?;
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(text).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Splits a run of `rtattr`s into (type, value) pairs.
fn parse_attrs(buf: &[u8]) -> io::Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let (Some(len), Some(ty)) = (u16_at(rest, 0), u16_at(rest, 2)) else {
            return Err(invalid_data("truncated netlink attribute header"));
        };
        let len = len as usize;
        if len < 4 || len > rest.len() {
            return Err(invalid_data(format!(
                "netlink attribute length {len} out of bounds ({} bytes left)",
                rest.len()
            )));
        }
        out.push((ty & NLA_TYPE_MASK, &rest[4..len]));
        off += align4(len).min(rest.len());
    }
    Ok(out)
}

fn parse_link_index(payload: &[u8]) -> io::Result<u32> {
    if payload.len() < IFINFOMSG_LEN {
        return Err(invalid_data("truncated ifinfomsg"));
    }
    let index = u32_at(payload, 4).unwrap_or_default() as i32;
    u32::try_from(index)
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| invalid_data(format!("bad interface index {index} in reply")))
}

fn parse_ip(family: u8, data: &[u8]) -> io::Result<IpAddr> {
    match (family, data.len()) {
        (AF_INET, 4) => Ok(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(data).unwrap_or_default(),
        ))),
        (AF_INET6, 16) => Ok(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(data).unwrap_or_default(),
        ))),
        _ => Err(invalid_data(format!(
            "address of {} bytes for family {family}",
            data.len()
        ))),
    }
}

fn parse_u32(what: &str, data: &[u8]) -> io::Result<u32> {
    match <[u8; 4]>::try_from(data) {
        Ok(b) => Ok(u32::from_ne_bytes(b)),
        Err(_) => Err(invalid_data(format!("{what} of {} bytes", data.len()))),
    }
}

fn parse_u8(what: &str, data: &[u8]) -> io::Result<u8> {
    match data {
        [b] => Ok(*b),
        _ => Err(invalid_data(format!("{what} of {} bytes", data.len()))),
    }
}

/// An interface name attribute: up to the first NUL, 1 to 15 bytes of UTF-8.
fn parse_ifname(what: &str, data: &[u8]) -> io::Result<String> {
    let name = data.split(|&b| b == 0).next().unwrap_or_default();
    match std::str::from_utf8(name) {
        Ok(name) if !name.is_empty() && name.len() <= 15 => Ok(name.to_string()),
        _ => Err(invalid_data(format!("bad {what} {data:?}"))),
    }
}

/// The MTU in an `RTA_METRICS` attribute (nested metrics), if it has one.
fn parse_metrics_mtu(data: &[u8]) -> io::Result<Option<u32>> {
    parse_attrs(data)?
        .into_iter()
        .filter(|(ty, _)| *ty == RTAX_MTU)
        .map(|(_, v)| parse_u32("RTAX_MTU", v))
        .next_back()
        .transpose()
}

/// Parses an `RTM_NEWROUTE` payload. Returns `None` for routes that a
/// [`Route`] cannot describe: other families, types other than unicast and
/// throw (local, broadcast, blackhole, ...) and cached clones.
fn parse_route(payload: &[u8]) -> io::Result<Option<Route>> {
    let Some(rtm) = payload.get(..RTMSG_LEN) else {
        return Err(invalid_data(format!(
            "truncated rtmsg ({} bytes)",
            payload.len()
        )));
    };
    let (family, dst_len, table, protocol, rtype) = (rtm[0], rtm[1], rtm[4], rtm[5], rtm[7]);
    let flags = u32_at(rtm, 8).unwrap_or_default();
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let mut route = Route {
        dst: match family {
            AF_INET => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        },
        prefix_len: dst_len,
        oif: 0,
        src: None,
        metric: None,
        protocol,
        table: u32::from(table),
        kind: RouteKind::Unicast,
        mtu: None,
    };
    check_prefix_len(route.dst, dst_len).map_err(|e| invalid_data(e.to_string()))?;
    for (ty, data) in parse_attrs(&payload[RTMSG_LEN..])? {
        match ty {
            RTA_DST => route.dst = parse_ip(family, data)?,
            RTA_OIF => route.oif = parse_u32("RTA_OIF", data)?,
            RTA_PREFSRC => route.src = Some(parse_ip(family, data)?),
            RTA_PRIORITY => route.metric = Some(parse_u32("RTA_PRIORITY", data)?),
            RTA_TABLE => route.table = parse_u32("RTA_TABLE", data)?,
            RTA_METRICS => route.mtu = parse_metrics_mtu(data)?,
            _ => {}
        }
    }
    route.kind = match rtype {
        RTN_UNICAST => RouteKind::Unicast,
        RTN_THROW => RouteKind::Throw,
        _ => return Ok(None),
    };
    if route.kind == RouteKind::Throw {
        // The kernel hangs IPv6 throw routes on `lo` and says so; to a
        // `Route` a throw has no output interface.
        route.oif = 0;
    }
    if flags & RTM_F_CLONED != 0 {
        return Ok(None);
    }
    Ok(Some(route))
}

/// Parses an `RTM_NEWRULE` payload. Returns `None` for rules that a [`Rule`]
/// cannot describe: other families and actions other than a table lookup
/// (goto, nop, blackhole, unreachable, prohibit).
fn parse_rule(payload: &[u8]) -> io::Result<Option<Rule>> {
    let Some(hdr) = payload.get(..FIB_RULE_HDR_LEN) else {
        return Err(invalid_data(format!(
            "truncated fib_rule_hdr ({} bytes)",
            payload.len()
        )));
    };
    let (family, src_len, table, action) = (hdr[0], hdr[2], hdr[4], hdr[7]);
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let mut rule = Rule {
        table: u32::from(table),
        family,
        ..Rule::new(0, 0)
    };
    let mut src = None;
    for (ty, data) in parse_attrs(&payload[FIB_RULE_HDR_LEN..])? {
        match ty {
            FRA_TABLE => rule.table = parse_u32("FRA_TABLE", data)?,
            FRA_PRIORITY => rule.priority = parse_u32("FRA_PRIORITY", data)?,
            FRA_SRC => src = Some(parse_ip(family, data)?),
            FRA_IIFNAME => rule.iif = Some(parse_ifname("FRA_IIFNAME", data)?),
            FRA_IP_PROTO => rule.ip_proto = Some(parse_u8("FRA_IP_PROTO", data)?),
            FRA_SUPPRESS_PREFIXLEN => {
                // An int to the kernel; -1 (unset) is not normally sent.
                let len = parse_u32("FRA_SUPPRESS_PREFIXLEN", data)?;
                rule.suppress_prefixlen = (len != u32::MAX).then_some(len);
            }
            FRA_PROTOCOL => rule.protocol = parse_u8("FRA_PROTOCOL", data)?,
            _ => {}
        }
    }
    rule.src = rule_source(src_len, src)?;
    if action != FR_ACT_TO_TBL {
        return Ok(None);
    }
    Ok(Some(rule))
}

/// The source prefix of a dumped rule: `FRA_SRC` (already checked to be of
/// the rule's family) with the header's `src_len`; the kernel sends
/// `FRA_SRC` only when `src_len` is not 0.
fn rule_source(src_len: u8, src: Option<IpAddr>) -> io::Result<Option<(IpAddr, u8)>> {
    if src_len == 0 {
        return Ok(None);
    }
    let Some(addr) = src else {
        return Err(invalid_data(format!(
            "rule with src_len {src_len} but no FRA_SRC"
        )));
    };
    check_prefix_len(addr, src_len).map_err(|e| invalid_data(e.to_string()))?;
    Ok(Some((addr, src_len)))
}

/// Parses an `RTM_NEWNEIGH` payload. Returns `None` for families other than
/// IPv4 and IPv6 (bridge forwarding entries share the message type). The
/// MAC is `None` unless `NDA_LLADDR` has 6 bytes.
fn parse_neighbour(payload: &[u8]) -> io::Result<Option<Neighbour>> {
    let Some(ndm) = payload.get(..NDMSG_LEN) else {
        return Err(invalid_data(format!(
            "truncated ndmsg ({} bytes)",
            payload.len()
        )));
    };
    let family = ndm[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let index = u32_at(ndm, 4).unwrap_or_default() as i32;
    let ifindex = u32::try_from(index)
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| invalid_data(format!("bad interface index {index} in a neighbour")))?;
    let state = u16_at(ndm, 8).unwrap_or_default();
    let (mut addr, mut mac) = (None, None);
    for (ty, data) in parse_attrs(&payload[NDMSG_LEN..])? {
        match ty {
            NDA_DST => addr = Some(parse_ip(family, data)?),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(data).ok(),
            _ => {}
        }
    }
    let addr = addr.ok_or_else(|| invalid_data("neighbour without NDA_DST"))?;
    Ok(Some(Neighbour {
        ifindex,
        addr,
        mac,
        state,
    }))
}

/// Whether a neighbour entry tells of a live host with an Ethernet address
/// (see [`Netlink::neighbours`]).
fn usable_neighbour(n: &Neighbour) -> bool {
    n.mac.is_some() && n.state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A received message: header plus payload, padded.
    fn msg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = MsgBuf::new(ty, flags, seq);
        m.fixed(payload);
        let mut v = m.finish();
        // finish() counts the padding; the kernel's nlmsg_len does not.
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        v[..4].copy_from_slice(&len.to_ne_bytes());
        v
    }

    fn rtattr(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(align4(v.len()), 0);
        v
    }

    fn error_payload(code: i32) -> Vec<u8> {
        let mut p = code.to_ne_bytes().to_vec();
        // The capped original header.
        p.extend_from_slice(&MsgBuf::new(RTM_NEWROUTE, 0, 7).finish());
        p
    }

    fn route_payload(family: u8, dst_len: u8, proto: u8, rtype: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![
            family,
            dst_len,
            0,
            0,
            254,
            proto,
            RT_SCOPE_LINK,
            rtype,
            0,
            0,
            0,
            0,
        ];
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    fn header(buf: &[u8]) -> (u32, u16, u16, u32, u32) {
        (
            u32_at(buf, 0).unwrap(),
            u16_at(buf, 4).unwrap(),
            u16_at(buf, 6).unwrap(),
            u32_at(buf, 8).unwrap(),
            u32_at(buf, 12).unwrap(),
        )
    }

    #[test]
    fn encodes_getlink() {
        let m = encode_getlink(5, "mesh0").unwrap();
        assert_eq!(m.len(), 16 + 16 + 12);
        assert_eq!(
            header(&m),
            (44, RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, 5, 0)
        );
        assert_eq!(&m[16..32], &[0; 16]);
        assert_eq!(&m[32..], &rtattr(IFLA_IFNAME, b"mesh0\0")[..]);
        assert!(encode_getlink(1, "").is_err());
        assert!(encode_getlink(1, "0123456789abcdef").is_err());
        assert!(encode_getlink(1, "a\0b").is_err());
    }

    #[test]
    fn encodes_link_set() {
        let m = encode_link_set(9, 3, true, Some(1420)).unwrap();
        assert_eq!(
            header(&m),
            (40, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 9, 0)
        );
        assert_eq!(&m[16..32], &ifinfomsg(3, IFF_UP, IFF_UP));
        assert_eq!(u32_at(&m, 20), Some(3));
        assert_eq!(&m[32..], &rtattr(IFLA_MTU, &1420u32.to_ne_bytes())[..]);

        let m = encode_link_set(9, 3, false, None).unwrap();
        assert_eq!(m.len(), 32);
        assert_eq!(u32_at(&m, 24), Some(0)); // ifi_flags
        assert_eq!(u32_at(&m, 28), Some(IFF_UP)); // ifi_change
        assert!(encode_link_set(1, 0, true, None).is_err());
        assert!(encode_link_set(1, u32::MAX, true, None).is_err());
    }

    #[test]
    fn encodes_addresses() {
        let m = encode_addr(2, true, 4, v4("10.0.0.1"), 24).unwrap();
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        assert_eq!(header(&m), (40, RTM_NEWADDR, flags, 2, 0));
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
        assert_eq!(u32_at(&m, 20), Some(4));
        assert_eq!(&m[24..32], &rtattr(IFA_LOCAL, &[10, 0, 0, 1])[..]);
        assert_eq!(&m[32..40], &rtattr(IFA_ADDRESS, &[10, 0, 0, 1])[..]);

        let a6: IpAddr = "fd00::1".parse().unwrap();
        let m = encode_addr(3, false, 4, a6, 64).unwrap();
        assert_eq!(
            header(&m),
            (64, RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, 3, 0)
        );
        assert_eq!(&m[16..20], &[AF_INET6, 64, IFA_F_NODAD, 0]);
        assert_eq!(
            &m[24..44],
            &rtattr(
                IFA_LOCAL,
                &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
            )[..]
        );

        assert!(encode_addr(1, true, 4, v4("10.0.0.1"), 33).is_err());
        assert!(encode_addr(1, true, 4, a6, 129).is_err());
        assert!(encode_addr(1, true, 0, a6, 64).is_err());
    }

    #[test]
    fn encodes_routes() {
        let mut r = Route::new(v4("192.168.4.0"), 24, 7);
        r.src = Some(v4("10.0.0.1"));
        r.metric = Some(50);
        let m = encode_route(11, RouteCmd::Replace, &r).unwrap();
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        assert_eq!(header(&m), (68, RTM_NEWROUTE, flags, 11, 0));
        assert_eq!(
            &m[16..28],
            &[
                AF_INET,
                24,
                0,
                0,
                254,
                RTPROT_MESHD,
                RT_SCOPE_LINK,
                RTN_UNICAST,
                0,
                0,
                0,
                0
            ]
        );
        let attrs = parse_attrs(&m[28..]).unwrap();
        assert_eq!(
            attrs,
            vec![
                (RTA_TABLE, &254u32.to_ne_bytes()[..]),
                (RTA_DST, &[192, 168, 4, 0][..]),
                (RTA_OIF, &7u32.to_ne_bytes()[..]),
                (RTA_PREFSRC, &[10, 0, 0, 1][..]),
                (RTA_PRIORITY, &50u32.to_ne_bytes()[..]),
            ]
        );

        // Delete: wildcard scope and type, no source.
        let m = encode_route(12, RouteCmd::Delete, &r).unwrap();
        assert_eq!(header(&m).1, RTM_DELROUTE);
        assert_eq!(header(&m).2, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(
            &m[16..24],
            &[
                AF_INET,
                24,
                0,
                0,
                254,
                RTPROT_MESHD,
                RT_SCOPE_NOWHERE,
                RTN_UNSPEC
            ]
        );
        let types: Vec<u16> = parse_attrs(&m[28..]).unwrap().iter().map(|a| a.0).collect();
        assert_eq!(types, vec![RTA_TABLE, RTA_DST, RTA_OIF, RTA_PRIORITY]);

        // IPv6: universe scope; a table above 255 only in RTA_TABLE.
        let mut r6 = Route::new("fd00:4::".parse().unwrap(), 48, 7);
        r6.table = 1000;
        let m = encode_route(13, RouteCmd::Replace, &r6).unwrap();
        assert_eq!(
            &m[16..24],
            &[
                AF_INET6,
                48,
                0,
                0,
                RT_TABLE_UNSPEC,
                RTPROT_MESHD,
                RT_SCOPE_UNIVERSE,
                RTN_UNICAST
            ]
        );
        assert_eq!(
            parse_attrs(&m[28..]).unwrap()[0],
            (RTA_TABLE, &1000u32.to_ne_bytes()[..])
        );

        // Round trip through the dump parser.
        let mut reply = m[16..].to_vec();
        reply[7] = RTN_UNICAST;
        assert_eq!(parse_route(&reply).unwrap(), Some(r6.clone()));

        // Invalid routes.
        let bad = |f: &dyn Fn(&mut Route)| {
            let mut r = Route::new(v4("192.168.4.0"), 24, 7);
            f(&mut r);
            encode_route(1, RouteCmd::Replace, &r).unwrap_err().kind()
        };
        assert_eq!(bad(&|r| r.prefix_len = 33), io::ErrorKind::InvalidInput);
        assert_eq!(bad(&|r| r.prefix_len = 16), io::ErrorKind::InvalidInput); // host bits
        assert_eq!(bad(&|r| r.oif = 0), io::ErrorKind::InvalidInput);
        assert_eq!(
            bad(&|r| r.src = Some("fd00::1".parse().unwrap())),
            io::ErrorKind::InvalidInput
        );
        let any = Route::new(v4("0.0.0.0"), 0, 0);
        assert!(encode_route(1, RouteCmd::Delete, &any).is_ok());
        let host = Route::new("fd00:4::1".parse().unwrap(), 128, 1);
        assert!(encode_route(1, RouteCmd::Replace, &host).is_ok());
    }

    #[test]
    fn encodes_throw_and_mtu_routes() {
        // Throw: universe scope, RTN_THROW, no RTA_OIF.
        let t = Route::throw(v4("10.0.0.0"), 8, 1000);
        assert_eq!(
            (t.oif, t.kind, t.protocol),
            (0, RouteKind::Throw, RTPROT_MESHD)
        );
        assert_eq!(t.to_string(), "throw 10.0.0.0/8 proto 200 table 1000");
        let m = encode_route(3, RouteCmd::Replace, &t).unwrap();
        assert_eq!(
            &m[16..24],
            &[
                AF_INET,
                8,
                0,
                0,
                RT_TABLE_UNSPEC,
                RTPROT_MESHD,
                RT_SCOPE_UNIVERSE,
                RTN_THROW
            ]
        );
        let types: Vec<u16> = parse_attrs(&m[28..]).unwrap().iter().map(|a| a.0).collect();
        assert_eq!(types, vec![RTA_TABLE, RTA_DST]);
        let mut reply = m[16..].to_vec();
        reply[4] = 0;
        assert_eq!(parse_route(&reply).unwrap(), Some(t.clone()));
        // IPv6 ones come back on `lo`, which is not part of a throw route.
        reply[0] = AF_INET6;
        reply.truncate(RTMSG_LEN);
        reply.extend(rtattr(RTA_TABLE, &1000u32.to_ne_bytes()));
        reply.extend(rtattr(RTA_DST, &v6_bytes("fd00::")));
        reply.extend(rtattr(RTA_OIF, &1u32.to_ne_bytes()));
        let t6 = Route::throw("fd00::".parse().unwrap(), 8, 1000);
        assert_eq!(parse_route(&reply).unwrap(), Some(t6));
        // Deleting: the same wildcards as for unicast.
        let m = encode_route(4, RouteCmd::Delete, &t).unwrap();
        assert_eq!(&m[22..24], &[RT_SCOPE_NOWHERE, RTN_UNSPEC]);
        // A throw route goes nowhere.
        let bad = Route {
            oif: 7,
            ..t.clone()
        };
        assert_eq!(
            encode_route(1, RouteCmd::Replace, &bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let bad = Route {
            src: Some(v4("10.0.0.1")),
            ..t.clone()
        };
        assert!(encode_route(1, RouteCmd::Replace, &bad).is_err());

        // MTU: RTA_METRICS holding one nested RTAX_MTU, last.
        let mut r = Route::new(v4("0.0.0.0"), 0, 7);
        r.table = 28005;
        r.mtu = Some(1380);
        assert_eq!(
            r.to_string(),
            "0.0.0.0/0 dev #7 mtu 1380 proto 200 table 28005"
        );
        let m = encode_route(5, RouteCmd::Replace, &r).unwrap();
        let attrs = parse_attrs(&m[28..]).unwrap();
        let mut nested = rtattr(RTAX_MTU, &1380u32.to_ne_bytes());
        assert_eq!(attrs.last(), Some(&(RTA_METRICS, &nested[..])));
        assert_eq!(m[23], RTN_UNICAST);
        // ... read back from a dump, among other metrics.
        let mut reply = m[16..28].to_vec();
        reply.extend(rtattr(RTA_TABLE, &28005u32.to_ne_bytes()));
        reply.extend(rtattr(RTA_OIF, &7u32.to_ne_bytes()));
        nested.extend(rtattr(8 /* RTAX_HOPLIMIT */, &64u32.to_ne_bytes()));
        reply.extend(rtattr(RTA_METRICS, &nested));
        assert_eq!(parse_route(&reply).unwrap(), Some(r.clone()));
        // Not sent when deleting.
        let m = encode_route(6, RouteCmd::Delete, &r).unwrap();
        assert!(!parse_attrs(&m[28..])
            .unwrap()
            .iter()
            .any(|a| a.0 == RTA_METRICS));
        // Broken metrics are an error, never a panic.
        let mut bad = m[16..28].to_vec();
        bad.extend(rtattr(RTA_METRICS, &rtattr(RTAX_MTU, &[1, 2])));
        assert_eq!(
            parse_route(&bad).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut bad = m[16..28].to_vec();
        bad.extend(rtattr(RTA_METRICS, &[9, 0]));
        assert_eq!(
            parse_route(&bad).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    /// The console rule: every selector and the suppressing main lookup.
    fn console_rule() -> Rule {
        Rule {
            src: Some((v4("192.168.1.50"), 32)),
            iif: Some("br-lan".into()),
            ip_proto: Some(17),
            suppress_prefixlen: Some(0),
            ..Rule::new(32001, 28005)
        }
    }

    #[test]
    fn encodes_rules() {
        let r = console_rule();
        assert_eq!(
            r.to_string(),
            "32001: from 192.168.1.50/32 iif br-lan ipproto 17 lookup 28005 \
             suppress_prefixlength 0 proto 200"
        );
        let m = encode_rule(7, RuleCmd::Add, &r).unwrap();
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        assert_eq!(header(&m), (88, RTM_NEWRULE, flags, 7, 0));
        // family, dst_len, src_len, tos, table (too big: in FRA_TABLE),
        // res1, res2, action, flags.
        assert_eq!(
            &m[16..28],
            &[
                AF_INET,
                0,
                32,
                0,
                RT_TABLE_UNSPEC,
                0,
                0,
                FR_ACT_TO_TBL,
                0,
                0,
                0,
                0
            ]
        );
        assert_eq!(
            parse_attrs(&m[28..]).unwrap(),
            vec![
                (FRA_TABLE, &28005u32.to_ne_bytes()[..]),
                (FRA_PRIORITY, &32001u32.to_ne_bytes()[..]),
                (FRA_SRC, &[192, 168, 1, 50][..]),
                (FRA_IIFNAME, &b"br-lan\0"[..]),
                (FRA_IP_PROTO, &[17][..]),
                (FRA_SUPPRESS_PREFIXLEN, &0u32.to_ne_bytes()[..]),
                (FRA_PROTOCOL, &[RTPROT_MESHD][..]),
            ]
        );
        // The attribute numbers themselves (linux/fib_rules.h).
        assert_eq!(&m[28 + 2..28 + 4], &15u16.to_ne_bytes()); // FRA_TABLE
        let ip_proto_at = m.len() - 8 - 8 - 8;
        assert_eq!(&m[ip_proto_at..ip_proto_at + 5], &[5, 0, 22, 0, 17]);
        assert_eq!(&m[m.len() - 8..m.len() - 3], &[5, 0, 21, 0, RTPROT_MESHD]);

        // Delete: the same message, no create flags.
        let d = encode_rule(8, RuleCmd::Delete, &r).unwrap();
        assert_eq!(
            header(&d),
            (88, RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, 8, 0)
        );
        assert_eq!(d[16..], m[16..]);

        // A small table in the header too; only the attributes set are sent;
        // a /0 source is no source.
        let plain = Rule {
            src: Some((v4("0.0.0.0"), 0)),
            ..Rule::new(100, RT_TABLE_MAIN)
        };
        let m = encode_rule(9, RuleCmd::Add, &plain).unwrap();
        assert_eq!(&m[16..24], &[AF_INET, 0, 0, 0, 254, 0, 0, FR_ACT_TO_TBL]);
        let types: Vec<u16> = parse_attrs(&m[28..]).unwrap().iter().map(|a| a.0).collect();
        assert_eq!(types, vec![FRA_TABLE, FRA_PRIORITY, FRA_PROTOCOL]);

        // IPv6.
        let r6 = Rule {
            family: AF_INET6,
            src: Some(("fd00:1::".parse().unwrap(), 64)),
            ..Rule::new(5, 1000)
        };
        let m = encode_rule(9, RuleCmd::Add, &r6).unwrap();
        assert_eq!(&m[16..19], &[AF_INET6, 0, 64]);

        // Invalid rules.
        let bad = |f: &dyn Fn(&mut Rule)| {
            let mut r = console_rule();
            f(&mut r);
            encode_rule(1, RuleCmd::Add, &r).unwrap_err().kind()
        };
        assert_eq!(bad(&|r| r.family = 7), io::ErrorKind::InvalidInput);
        assert_eq!(bad(&|r| r.family = AF_INET6), io::ErrorKind::InvalidInput);
        assert_eq!(
            bad(&|r| r.src = Some((v4("192.168.1.50"), 24))),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            bad(&|r| r.src = Some((v4("192.168.1.0"), 33))),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            bad(&|r| r.iif = Some(String::new())),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            bad(&|r| r.iif = Some("0123456789abcdef".into())),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(bad(&|r| r.table = 0), io::ErrorKind::InvalidInput);
        assert_eq!(
            bad(&|r| r.suppress_prefixlen = Some(129)),
            io::ErrorKind::InvalidInput
        );
    }

    /// A dumped rule: the header, then the attributes.
    fn rule_payload(family: u8, src_len: u8, table: u8, action: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![family, 0, src_len, 0, table, 0, 0, action, 0, 0, 0, 0];
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    #[test]
    fn parses_rules() {
        // Round trip of the encoder's own message.
        let r = console_rule();
        let m = encode_rule(1, RuleCmd::Add, &r).unwrap();
        assert_eq!(parse_rule(&m[16..]).unwrap(), Some(r.clone()));

        // As the kernel sends it: table in the header, extra attributes
        // (FRA_UID_RANGE, FRA_PAD) ignored, no FRA_PRIORITY for priority 0.
        let p = rule_payload(
            AF_INET,
            0,
            254,
            FR_ACT_TO_TBL,
            &[
                rtattr(FRA_TABLE, &254u32.to_ne_bytes()),
                rtattr(FRA_SUPPRESS_PREFIXLEN, &u32::MAX.to_ne_bytes()),
                rtattr(FRA_PROTOCOL, &[2]),
                rtattr(20, &[0; 8]),
                rtattr(18, &[]),
            ],
        );
        assert_eq!(
            parse_rule(&p).unwrap(),
            Some(Rule {
                protocol: 2,
                ..Rule::new(0, 254)
            })
        );

        // Skipped: other actions (goto, unreachable, ...), other families.
        assert_eq!(
            parse_rule(&rule_payload(AF_INET, 0, 0, 7, &[])).unwrap(),
            None
        );
        assert_eq!(
            parse_rule(&rule_payload(128, 0, 0, FR_ACT_TO_TBL, &[])).unwrap(),
            None
        );

        // Malformed.
        let bad = [
            rule_payload(AF_INET, 0, 0, FR_ACT_TO_TBL, &[])[..11].to_vec(),
            rule_payload(AF_INET, 24, 1, FR_ACT_TO_TBL, &[]), // no FRA_SRC
            rule_payload(
                AF_INET,
                33,
                1,
                FR_ACT_TO_TBL,
                &[rtattr(FRA_SRC, &[1, 2, 3, 4])],
            ),
            rule_payload(AF_INET, 8, 1, FR_ACT_TO_TBL, &[rtattr(FRA_SRC, &[0; 16])]),
            rule_payload(
                AF_INET,
                0,
                1,
                FR_ACT_TO_TBL,
                &[rtattr(FRA_PRIORITY, &[1, 2])],
            ),
            rule_payload(
                AF_INET,
                0,
                1,
                FR_ACT_TO_TBL,
                &[rtattr(FRA_PROTOCOL, &[1, 2])],
            ),
            rule_payload(AF_INET, 0, 1, FR_ACT_TO_TBL, &[rtattr(FRA_IP_PROTO, &[])]),
            rule_payload(AF_INET, 0, 1, FR_ACT_TO_TBL, &[rtattr(FRA_IIFNAME, b"\0")]),
            rule_payload(
                AF_INET,
                0,
                1,
                FR_ACT_TO_TBL,
                &[rtattr(FRA_IIFNAME, &[0xff, 0])],
            ),
            rule_payload(
                AF_INET,
                0,
                1,
                FR_ACT_TO_TBL,
                &[rtattr(FRA_IIFNAME, &[b'a'; 16])],
            ),
            rule_payload(AF_INET, 0, 1, FR_ACT_TO_TBL, &[vec![3, 0, 1, 0]]),
        ];
        for p in bad {
            assert_eq!(
                parse_rule(&p).unwrap_err().kind(),
                io::ErrorKind::InvalidData,
                "{p:?}"
            );
        }
        // Truncations anywhere never panic.
        let full = &m[16..];
        for cut in 0..full.len() {
            let _ = parse_rule(&full[..cut]);
        }
    }

    #[test]
    fn encodes_dump() {
        let m = encode_route_dump(4, AF_INET6);
        assert_eq!(
            header(&m),
            (28, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 4, 0)
        );
        assert_eq!(m[16], AF_INET6);
        assert!(m[17..].iter().all(|&b| b == 0));
    }

    #[test]
    fn splits_messages() {
        let mut buf = msg(RTM_NEWROUTE, 2, 1, &[1, 2, 3, 4, 5]);
        buf.extend(msg(NLMSG_DONE, 2, 1, &0i32.to_ne_bytes()));
        let ms = split_messages(&buf).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(
            ms[0],
            Message {
                ty: RTM_NEWROUTE,
                flags: 2,
                seq: 1,
                payload: &[1, 2, 3, 4, 5]
            }
        );
        assert_eq!(ms[1].ty, NLMSG_DONE);
        // The last message may lack its padding.
        let one = msg(RTM_NEWROUTE, 0, 1, &[1, 2, 3]);
        assert_eq!(split_messages(&one[..19]).unwrap()[0].payload, &[1, 2, 3]);
        assert!(split_messages(&[]).unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage_datagrams() {
        let good = msg(RTM_NEWROUTE, 0, 1, &[0; 12]);
        // Every truncation of a valid message is an error, never a panic.
        for cut in 1..good.len() {
            assert!(split_messages(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Length field below the header size, or beyond the datagram.
        for len in [0u32, 15, 29, u32::MAX] {
            let mut bad = good.clone();
            bad[..4].copy_from_slice(&len.to_ne_bytes());
            assert!(split_messages(&bad).is_err(), "len {len}");
        }
        // Trailing bytes too few for a header.
        let mut bad = good.clone();
        bad.extend_from_slice(&[1, 2, 3]);
        assert!(split_messages(&bad).is_err());
        // Pseudo-random garbage never panics.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let n = (x % 97) as usize;
            let mut g = Vec::with_capacity(n);
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                g.push(x as u8);
            }
            if let Ok(ms) = split_messages(&g) {
                for m in ms {
                    let _ = classify(&m, m.seq);
                    let _ = parse_route(m.payload);
                    let _ = parse_rule(m.payload);
                    let _ = parse_neighbour(m.payload);
                    let _ = parse_link_index(m.payload);
                    let _ = extack_message(m.ty, m.flags, m.payload);
                }
            }
            let _ = parse_attrs(&g);
            let _ = parse_route(&g);
            let _ = parse_rule(&g);
            let _ = parse_neighbour(&g);
        }
    }

    #[test]
    fn classifies_replies() {
        let ack = msg(NLMSG_ERROR, NLM_F_CAPPED, 5, &error_payload(0));
        let m = &split_messages(&ack).unwrap()[0];
        assert_eq!(classify(m, 5).unwrap(), Reply::Ack);
        assert_eq!(classify(m, 6).unwrap(), Reply::Skip); // someone else's

        let err = msg(NLMSG_ERROR, NLM_F_CAPPED, 5, &error_payload(-libc::EEXIST));
        let e = classify(&split_messages(&err).unwrap()[0], 5).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);

        let done = msg(NLMSG_DONE, 2, 5, &0i32.to_ne_bytes());
        assert_eq!(
            classify(&split_messages(&done).unwrap()[0], 5).unwrap(),
            Reply::Done
        );
        let done = msg(NLMSG_DONE, 2, 5, &[]);
        assert_eq!(
            classify(&split_messages(&done).unwrap()[0], 5).unwrap(),
            Reply::Done
        );
        let done = msg(NLMSG_DONE, 2, 5, &(-libc::EINTR).to_ne_bytes());
        let e = classify(&split_messages(&done).unwrap()[0], 5).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINTR));

        let data = msg(RTM_NEWROUTE, 2, 5, &[0; 12]);
        assert_eq!(
            classify(&split_messages(&data).unwrap()[0], 5).unwrap(),
            Reply::Data
        );
        let noop = msg(NLMSG_NOOP, 0, 5, &[]);
        assert_eq!(
            classify(&split_messages(&noop).unwrap()[0], 5).unwrap(),
            Reply::Skip
        );
        let overrun = msg(NLMSG_OVERRUN, 0, 5, &[]);
        assert!(classify(&split_messages(&overrun).unwrap()[0], 5).is_err());

        // Truncated error message, and error codes that are not errnos.
        for payload in [
            &[][..],
            &[1, 2, 3][..],
            &1i32.to_ne_bytes()[..],
            &(-5000i32).to_ne_bytes()[..],
        ] {
            let bad = msg(NLMSG_ERROR, 0, 5, payload);
            let e = classify(&split_messages(&bad).unwrap()[0], 5).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{payload:?}");
        }
    }

    #[test]
    fn reads_extended_ack() {
        // Capped: code, original header, then the TLVs.
        let mut p = error_payload(-libc::ENETDOWN);
        p.extend(rtattr(NLMSGERR_ATTR_MSG, b"Nexthop device is not up\0"));
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        let buf = msg(NLMSG_ERROR, flags, 5, &p);
        let e = classify(&split_messages(&buf).unwrap()[0], 5).unwrap_err();
        assert_eq!(super::super::errno(&e), Some(libc::ENETDOWN));
        assert!(
            e.to_string().contains("kernel: Nexthop device is not up"),
            "{e}"
        );

        // Not capped: the whole original request (header + 8 bytes) is echoed.
        let mut p = (-libc::EINVAL).to_ne_bytes().to_vec();
        let mut orig = MsgBuf::new(RTM_NEWADDR, 0, 5);
        orig.fixed(&[9; 8]);
        p.extend(orig.finish());
        p.extend(rtattr(NLMSGERR_ATTR_MSG, b"bad thing\0"));
        assert_eq!(
            extack_message(NLMSG_ERROR, NLM_F_ACK_TLVS, &p).as_deref(),
            Some("bad thing")
        );
        assert_eq!(extack_message(NLMSG_ERROR, 0, &p), None);

        // Broken TLVs or lengths give no text but no panic either.
        let mut q = p.clone();
        q[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(extack_message(NLMSG_ERROR, NLM_F_ACK_TLVS, &q), None);
        let n = p.len();
        assert_eq!(
            extack_message(NLMSG_ERROR, NLM_F_ACK_TLVS, &p[..n - 3]),
            None
        );
        assert_eq!(extack_message(NLMSG_ERROR, NLM_F_ACK_TLVS, &p[..6]), None);
    }

    #[test]
    fn parses_routes() {
        let p = route_payload(
            AF_INET,
            24,
            RTPROT_MESHD,
            RTN_UNICAST,
            &[
                rtattr(RTA_TABLE, &254u32.to_ne_bytes()),
                rtattr(RTA_DST, &[192, 168, 4, 0]),
                rtattr(RTA_PREFSRC, &[10, 0, 0, 1]),
                rtattr(RTA_OIF, &3u32.to_ne_bytes()),
                rtattr(RTA_PRIORITY, &7u32.to_ne_bytes()),
                rtattr(99, &[1, 2, 3]), // unknown: ignored
            ],
        );
        let r = parse_route(&p).unwrap().unwrap();
        assert_eq!(
            r,
            Route {
                dst: v4("192.168.4.0"),
                prefix_len: 24,
                oif: 3,
                src: Some(v4("10.0.0.1")),
                metric: Some(7),
                protocol: RTPROT_MESHD,
                table: 254,
                kind: RouteKind::Unicast,
                mtu: None,
            }
        );
        assert_eq!(
            r.to_string(),
            "192.168.4.0/24 dev #3 src 10.0.0.1 metric 7 proto 200 table 254"
        );

        // Default route: no RTA_DST; table from rtm_table.
        let p6 = route_payload(
            AF_INET6,
            0,
            3,
            RTN_UNICAST,
            &[rtattr(RTA_OIF, &1u32.to_ne_bytes())],
        );
        let r = parse_route(&p6).unwrap().unwrap();
        assert_eq!(
            (r.dst, r.prefix_len, r.table, r.protocol),
            ("::".parse().unwrap(), 0, 254, 3)
        );

        // Skipped: other types, other families, clones.
        assert_eq!(
            parse_route(&route_payload(AF_INET, 32, 2, 2 /* local */, &[])).unwrap(),
            None
        );
        assert_eq!(
            parse_route(&route_payload(7, 0, 2, RTN_UNICAST, &[])).unwrap(),
            None
        );
        let mut cloned = route_payload(AF_INET6, 0, 2, RTN_UNICAST, &[]);
        cloned[8..12].copy_from_slice(&RTM_F_CLONED.to_ne_bytes());
        assert_eq!(parse_route(&cloned).unwrap(), None);

        // Malformed: every prefix of a valid payload that cuts an attribute.
        for cut in 0..p.len() {
            let r = parse_route(&p[..cut]);
            // (Cutting only the padding of the last attribute is fine.)
            if cut < RTMSG_LEN || ((cut - RTMSG_LEN) % 8 != 0 && cut != p.len() - 1) {
                assert!(r.is_err(), "cut at {cut}: {r:?}");
            }
        }
        let bad = [
            route_payload(AF_INET, 33, 0, RTN_UNICAST, &[]),
            route_payload(AF_INET, 24, 0, RTN_UNICAST, &[rtattr(RTA_DST, &[1, 2, 3])]),
            route_payload(
                AF_INET6,
                24,
                0,
                RTN_UNICAST,
                &[rtattr(RTA_DST, &[1, 2, 3, 4])],
            ),
            route_payload(AF_INET, 24, 0, RTN_UNICAST, &[rtattr(RTA_OIF, &[1, 2])]),
            route_payload(AF_INET, 24, 0, RTN_UNICAST, &[rtattr(RTA_TABLE, &[1; 8])]),
            route_payload(AF_INET, 24, 0, RTN_UNICAST, &[vec![2, 0, 1, 0]]), // rta_len < 4
        ];
        for p in bad {
            assert_eq!(
                parse_route(&p).unwrap_err().kind(),
                io::ErrorKind::InvalidData,
                "{p:?}"
            );
        }
    }

    /// Unprivileged: a lookup in the current namespace, and a lost reply
    /// becoming a timeout rather than a hang.
    #[test]
    fn talks_to_the_kernel() {
        let mut nl = Netlink::open().unwrap();
        assert_eq!(nl.link_index("lo").unwrap(), 1);
        let start = std::time::Instant::now();
        let e = nl.recv().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(start.elapsed() < REPLY_TIMEOUT * 3);
        // The socket still works afterwards.
        assert_eq!(nl.link_index("lo").unwrap(), 1);
    }

    #[test]
    fn encodes_dumps_of_rules_and_neighbours() {
        let m = encode_rule_dump(3, AF_UNSPEC);
        assert_eq!(
            header(&m),
            (28, RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, 3, 0)
        );
        assert!(m[16..].iter().all(|&b| b == 0));

        let m = encode_neigh_dump(4, AF_INET, None);
        assert_eq!(
            header(&m),
            (28, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, 4, 0)
        );
        assert_eq!(m[16], AF_INET);
        assert!(m[17..].iter().all(|&b| b == 0));
        let m = encode_neigh_dump(5, AF_INET, Some(6));
        assert_eq!(header(&m).0, 36);
        assert!(m[17..28].iter().all(|&b| b == 0), "ndm_ifindex stays 0");
        assert_eq!(&m[28..], &rtattr(NDA_IFINDEX, &6i32.to_ne_bytes())[..]);
    }

    /// A dumped neighbour: ndmsg, then the attributes.
    fn neigh_payload(family: u8, ifindex: i32, state: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![family, 0, 0, 0];
        p.extend_from_slice(&ifindex.to_ne_bytes());
        p.extend_from_slice(&state.to_ne_bytes());
        p.extend_from_slice(&[0, 1]); // flags, type
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    #[test]
    fn parses_neighbours() {
        let mac = [0x00, 0x04, 0x1f, 0x12, 0x34, 0x56];
        let p = neigh_payload(
            AF_INET,
            3,
            NUD_REACHABLE,
            &[
                rtattr(NDA_DST, &[192, 168, 1, 50]),
                rtattr(NDA_LLADDR, &mac),
                rtattr(3 /* NDA_CACHEINFO */, &[0; 16]),
                rtattr(4 /* NDA_PROBES */, &1u32.to_ne_bytes()),
            ],
        );
        let n = parse_neighbour(&p).unwrap().unwrap();
        assert_eq!(
            n,
            Neighbour {
                ifindex: 3,
                addr: v4("192.168.1.50"),
                mac: Some(mac),
                state: NUD_REACHABLE,
            }
        );
        assert!(usable_neighbour(&n));
        for state in [NUD_STALE, NUD_DELAY, NUD_PROBE, NUD_PERMANENT] {
            assert!(
                usable_neighbour(&Neighbour { state, ..n.clone() }),
                "{state:#x}"
            );
        }
        for state in [
            NUD_INCOMPLETE,
            NUD_FAILED,
            NUD_NOARP,
            NUD_NOARP | NUD_PERMANENT,
        ] {
            assert!(
                !usable_neighbour(&Neighbour { state, ..n.clone() }),
                "{state:#x}"
            );
        }

        // No link-layer address, or not an Ethernet one: no MAC, unusable.
        let p = neigh_payload(
            AF_INET,
            3,
            NUD_FAILED,
            &[rtattr(NDA_DST, &[192, 168, 1, 9])],
        );
        let n = parse_neighbour(&p).unwrap().unwrap();
        assert_eq!(n.mac, None);
        assert!(!usable_neighbour(&Neighbour {
            state: NUD_STALE,
            ..n
        }));
        let p = neigh_payload(
            AF_INET,
            3,
            NUD_NOARP,
            &[
                rtattr(NDA_DST, &[10, 0, 0, 1]),
                rtattr(NDA_LLADDR, &[10, 0, 0, 2]),
            ],
        );
        assert_eq!(parse_neighbour(&p).unwrap().unwrap().mac, None);

        // IPv6.
        let p = neigh_payload(
            AF_INET6,
            4,
            NUD_STALE,
            &[
                rtattr(NDA_DST, &v6_bytes("fe80::1")),
                rtattr(NDA_LLADDR, &mac),
            ],
        );
        assert_eq!(parse_neighbour(&p).unwrap().unwrap().addr, v4("fe80::1"));

        // Skipped: bridge FDB entries (AF_BRIDGE).
        assert_eq!(parse_neighbour(&neigh_payload(7, 3, 2, &[])).unwrap(), None);

        // Malformed.
        let bad = [
            neigh_payload(AF_INET, 3, 2, &[])[..11].to_vec(),
            neigh_payload(AF_INET, 3, 2, &[]), // no NDA_DST
            neigh_payload(AF_INET, 0, 2, &[rtattr(NDA_DST, &[1, 2, 3, 4])]),
            neigh_payload(AF_INET, -1, 2, &[rtattr(NDA_DST, &[1, 2, 3, 4])]),
            neigh_payload(AF_INET, 3, 2, &[rtattr(NDA_DST, &[1, 2, 3])]),
            neigh_payload(AF_INET6, 3, 2, &[rtattr(NDA_DST, &[1, 2, 3, 4])]),
            neigh_payload(AF_INET, 3, 2, &[vec![8, 0, 1, 0]]),
        ];
        for p in bad {
            assert_eq!(
                parse_neighbour(&p).unwrap_err().kind(),
                io::ErrorKind::InvalidData,
                "{p:?}"
            );
        }
    }

    fn v6_bytes(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn parses_link_index() {
        assert_eq!(parse_link_index(&ifinfomsg(12, 0, 0)).unwrap(), 12);
        assert!(parse_link_index(&ifinfomsg(12, 0, 0)[..15]).is_err());
        assert!(parse_link_index(&ifinfomsg(0, 0, 0)).is_err());
        assert!(parse_link_index(&ifinfomsg(-3, 0, 0)).is_err());
    }
}
