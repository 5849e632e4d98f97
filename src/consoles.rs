//! Game consoles on the home LAN, and the policy routing of the "game exit":
//! a console's internet-bound UDP goes into meshd's TUN (and on to a friend's
//! home), while the rest of the LAN keeps the usual route.
//!
//! Which hosts are consoles is decided by [`detect`] from what the caller
//! passes in: the configured list, the neighbour (ARP) table and the LAN
//! prefixes; with auto-detection on, a host counts when its MAC address
//! belongs to a console maker ([`vendor_of`], from the IEEE registry in
//! [`crate::console_oui`]).
//!
//! [`PolicyRouting`] turns the consoles into two rules each, in front of the
//! main table's rule (32766):
//!
//! ```text
//! 32000: from 192.168.1.50 lookup main suppress_prefixlength 0
//! 32001: from 192.168.1.50 iif br-lan ipproto udp lookup 28005
//! ```
//!
//! The first lets everything more specific than a default route in the main
//! table win (the LAN, guest networks, the mesh's routes to friends' homes);
//! only what would take the default route falls through to the second, which
//! sends the console's UDP to the table holding `default dev <tun>`. Its TCP
//! and everybody else's traffic go on to the main table as before. The only
//! calls into the kernel are those of [`PolicyRouting::apply`],
//! [`PolicyRouting::install_routes`] and [`PolicyRouting::clear`], through the
//! [`Netlink`] passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use mesh_core::Prefix;

use crate::console_oui::CONSOLE_OUIS;
use crate::sys::netlink::{Netlink, Route, Rule, RTPROT_MESHD, RT_TABLE_MAIN};

/// The routing table of the game exit (28005, "me" in ASCII).
///
/// Linux table ids are 32 bits wide. OpenWrt's own tables are 253 (default),
/// 254 (main) and 255 (local); the tables users and packages add stay below
/// them: `/etc/iproute2/rt_tables` names 1-252, netifd's `ip4table` /
/// `ip6table` options take such a number or name, and mwan3 numbers its
/// tables after its interfaces, 1 to 250. A five-digit id is clear of all of
/// them (and of wg-quick's 51820).
pub const CONSOLE_TABLE: u32 = 0x6d65;

/// The priority of the first of each console's two rules; the second one has
/// the next number.
///
/// The kernel's rules are at 0 (local), 32766 (main) and 32767 (default); the
/// console rules must come before main's to matter. OpenWrt's own users of
/// rules come earlier: netifd puts its `ip4table` source rules at 10000 and
/// 20000, mwan3 uses 1000-3999, and `config rule` sections usually give
/// small numbers, so those (and any override a user adds) win over the game
/// exit. 32000 leaves 32002-32765 free, and a rule added without a priority
/// lands in front of ours (the kernel gives it the first priority minus 1).
pub const CONSOLE_RULE_PRIORITY: u32 = 32000;

// Both rules of a console in front of the main table's, and the table clear
// of the 8-bit ids.
const _: () = assert!(CONSOLE_RULE_PRIORITY + 1 < 32766 && CONSOLE_TABLE > 255);

/// The IP protocol number of UDP, for [`Rule::ip_proto`].
pub const IPPROTO_UDP: u8 = 17;

/// A game console maker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    /// Sony Interactive Entertainment (formerly Sony Computer Entertainment).
    PlayStation,
    /// Microsoft: every Microsoft OUI, as there is no separate Xbox one.
    Xbox,
    /// Nintendo.
    Nintendo,
}

impl Vendor {
    /// The maker's name in lower case, for configuration and status:
    /// "sony", "microsoft", "nintendo".
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::PlayStation => "sony",
            Vendor::Xbox => "microsoft",
            Vendor::Nintendo => "nintendo",
        }
    }

    /// The console family's name, for people: "PlayStation", "Xbox",
    /// "Nintendo".
    pub fn display_name(self) -> &'static str {
        match self {
            Vendor::PlayStation => "PlayStation",
            Vendor::Xbox => "Xbox",
            Vendor::Nintendo => "Nintendo",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// The console maker that the IEEE assigned `mac`'s first three bytes (its
/// OUI) to, if any. Randomised ("private") addresses have the locally
/// administered bit set and so never match.
pub fn vendor_of(mac: &[u8; 6]) -> Option<Vendor> {
    let oui = [mac[0], mac[1], mac[2]];
    let i = CONSOLE_OUIS.binary_search_by_key(&oui, |e| e.0).ok()?;
    CONSOLE_OUIS.get(i).map(|e| e.1)
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// A console as the user lists it: by MAC address or by IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsoleSpec {
    /// Found through the neighbour table, at whatever address it has.
    Mac([u8; 6]),
    /// That address, whatever device has it.
    Ip(Ipv4Addr),
}

impl fmt::Display for ConsoleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleSpec::Mac(mac) => f.write_str(&format_mac(mac)),
            ConsoleSpec::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (either case), or a unicast
/// IPv4 address.
impl FromStr for ConsoleSpec {
    /// Why not, in words for a configuration error.
    type Err = String;

    fn from_str(s: &str) -> Result<ConsoleSpec, String> {
        let s = s.trim();
        if s.contains([':', '-']) {
            return parse_mac(s).map(ConsoleSpec::Mac);
        }
        match Ipv4Addr::from_str(s) {
            Ok(ip) if is_unicast(ip) => Ok(ConsoleSpec::Ip(ip)),
            Ok(_) => Err(format!(
                "'{s}' is not a console's address (not a unicast IPv4 address)"
            )),
            Err(_) => Err(format!(
                "'{s}' is not a console: give its MAC address (aa:bb:cc:dd:ee:ff) \
                 or its IPv4 address"
            )),
        }
    }
}

fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

/// Six pairs of hex digits, all separated by `:` or all by `-`; not a
/// multicast (group) address or all zeros, which no device has.
fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let syntax =
        || format!("'{s}' is not a MAC address (six pairs of hex digits: aa:bb:cc:dd:ee:ff)");
    let sep = if s.contains(':') { ':' } else { '-' };
    let mut mac = [0u8; 6];
    let mut parts = s.split(sep);
    for byte in &mut mac {
        let part = parts.next().ok_or_else(syntax)?;
        if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(syntax());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| syntax())?;
    }
    if parts.next().is_some() {
        return Err(syntax());
    }
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(format!(
            "'{s}' is not a device's MAC address (multicast or all zeros)"
        ));
    }
    Ok(mac)
}

/// How a console came to be one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum How {
    /// Listed by the user (by IP address, or by a MAC address found in the
    /// neighbour table).
    Configured,
    /// Found by its MAC address's maker.
    Auto,
}

impl How {
    /// As status shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            How::Configured => "listed",
            How::Auto => "auto",
        }
    }
}

/// A console on the LAN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Console {
    /// Its IPv4 address: what the policy rules match.
    pub ip: Ipv4Addr,
    /// Its MAC address, if the neighbour table knows it.
    pub mac: Option<[u8; 6]>,
    /// Its maker, if the MAC address tells.
    pub vendor: Option<Vendor>,
    /// Listed or detected.
    pub how: How,
}

/// "192.168.1.50 (PlayStation, 00:04:1f:12:34:56, auto)".
impl fmt::Display for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.ip)?;
        if let Some(vendor) = self.vendor {
            write!(f, "{vendor}, ")?;
        }
        if let Some(mac) = &self.mac {
            write!(f, "{}, ", format_mac(mac))?;
        }
        match self.how {
            How::Configured => write!(f, "configured)"),
            How::Auto => write!(f, "auto)"),
        }
    }
}

/// The consoles on the LAN, sorted by IP address, one per address.
///
/// - A listed IP address always counts, inside the `lan` prefixes or not: it
///   is the user's word, and a console on a subnet routed behind another LAN
///   router is reached through no neighbour entry of ours. Its MAC address
///   and maker come from the neighbour table when it has the address.
/// - A listed MAC address counts at every address the neighbour table has
///   for it (none while the console is off or silent).
/// - With `auto`, every neighbour whose MAC address belongs to a console
///   maker counts.
///
/// Neighbour entries count only with an IPv4 address inside one of the `lan`
/// prefixes: the router's upstream gateway or a host on another interface
/// is no console of this LAN. Where an address is both listed and detected,
/// it is [`How::Configured`].
pub fn detect(
    auto: bool,
    listed: &[ConsoleSpec],
    neighbours: &[(Ipv4Addr, [u8; 6])],
    lan: &[Prefix],
) -> Vec<Console> {
    let in_lan = |ip: Ipv4Addr| lan.iter().any(|p| p.contains(IpAddr::V4(ip)));
    let on_lan = || neighbours.iter().filter(|(ip, _)| in_lan(*ip));
    let mut found = BTreeMap::new();
    for spec in listed {
        match *spec {
            ConsoleSpec::Ip(ip) => {
                let mac = neighbours.iter().find(|(n, _)| *n == ip).map(|n| n.1);
                add(&mut found, ip, mac, How::Configured);
            }
            ConsoleSpec::Mac(mac) => {
                for &(ip, _) in on_lan().filter(|(_, m)| *m == mac) {
                    add(&mut found, ip, Some(mac), How::Configured);
                }
            }
        }
    }
    if auto {
        for &(ip, mac) in on_lan().filter(|(_, m)| vendor_of(m).is_some()) {
            add(&mut found, ip, Some(mac), How::Auto);
        }
    }
    found.into_values().collect()
}

/// Records a console at `ip`, merging with what is known of it: configured
/// wins over auto, and a known MAC address is kept.
fn add(found: &mut BTreeMap<Ipv4Addr, Console>, ip: Ipv4Addr, mac: Option<[u8; 6]>, how: How) {
    let console = found.entry(ip).or_insert(Console {
        ip,
        mac,
        vendor: None,
        how,
    });
    console.how = console.how.min(how);
    console.mac = console.mac.or(mac);
    console.vendor = console.mac.as_ref().and_then(vendor_of);
}

/// The policy rules and the table of the game exit, and what of them is in
/// the kernel.
///
/// This value remembers the rules it added; after a crash, the daemon finds
/// its leftovers with [`Netlink::flush_rules`]`(`[`RTPROT_MESHD`]`)` and
/// [`PolicyRouting::clear`] of a new value (which also empties the table).
#[derive(Debug)]
pub struct PolicyRouting {
    table: u32,
    base_priority: u32,
    lan_if: String,
    all_traffic: bool,
    /// The rules [`PolicyRouting::apply`] added and has not deleted since.
    installed: BTreeSet<Rule>,
}

impl PolicyRouting {
    /// The game exit for consoles behind interface `lan_if` (the LAN bridge,
    /// e.g. `br-lan`), in [`CONSOLE_TABLE`] at [`CONSOLE_RULE_PRIORITY`]. Only
    /// their UDP takes it unless `all_traffic`.
    pub fn new(lan_if: &str, all_traffic: bool) -> PolicyRouting {
        PolicyRouting {
            table: CONSOLE_TABLE,
            base_priority: CONSOLE_RULE_PRIORITY,
            lan_if: lan_if.to_string(),
            all_traffic,
            installed: BTreeSet::new(),
        }
    }

    /// The same with another table and rule priority (the second rule of each
    /// console gets `base_priority + 1`).
    pub fn with_table(self, table: u32, base_priority: u32) -> PolicyRouting {
        PolicyRouting {
            table,
            base_priority,
            ..self
        }
    }

    /// The routing table of the exit.
    pub fn table(&self) -> u32 {
        self.table
    }

    /// The consoles whose rules are (at least partly) in the kernel.
    pub fn installed(&self) -> BTreeSet<Ipv4Addr> {
        self.installed
            .iter()
            .filter_map(|r| match r.src {
                Some((IpAddr::V4(ip), 32)) => Some(ip),
                _ => None,
            })
            .collect()
    }

    /// The two rules of each console, in the order of `consoles`:
    ///
    /// - priority P: `from <ip>/32 lookup main suppress_prefixlength 0`, so
    ///   that whatever the main table has more specific than a default route
    ///   (the LAN, guest networks, the mesh's routes) still wins;
    /// - priority P+1:
    ///   `from <ip>/32 iif <lan_if> [ipproto udp] lookup <table>`
    ///   (UDP only unless `all_traffic`), for the rest.
    pub fn desired_rules(&self, consoles: &[Console]) -> Vec<Rule> {
        let p = self.base_priority;
        let mut rules = Vec::with_capacity(2 * consoles.len());
        for console in consoles {
            let src = Some((IpAddr::V4(console.ip), 32));
            rules.push(Rule {
                src,
                suppress_prefixlen: Some(0),
                ..Rule::new(p, RT_TABLE_MAIN)
            });
            rules.push(Rule {
                src,
                iif: Some(self.lan_if.clone()),
                ip_proto: (!self.all_traffic).then_some(IPPROTO_UDP),
                ..Rule::new(p.saturating_add(1), self.table)
            });
        }
        rules
    }

    /// The routes of the exit's table: `default dev <tun> mtu <mtu>`.
    pub fn table_routes(&self, tun_ifindex: u32, mtu: u32) -> Vec<Route> {
        let mut default = Route::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, tun_ifindex);
        default.table = self.table;
        default.mtu = Some(mtu);
        vec![default]
    }

    /// Installs (or replaces) the [`PolicyRouting::table_routes`].
    pub fn install_routes(&self, nl: &mut Netlink, tun_ifindex: u32, mtu: u32) -> io::Result<()> {
        for route in self.table_routes(tun_ifindex, mtu) {
            nl.route_replace(&route)?;
        }
        Ok(())
    }

    /// Brings the kernel's rules in line with `consoles`: adds the missing
    /// [`PolicyRouting::desired_rules`] and deletes those of consoles that
    /// are gone, touching nothing when nothing changed. Returns how many
    /// rules were added and deleted.
    ///
    /// Deletions come first, each console's exit rule before its main-table
    /// rule, and additions add the main-table rule first: at no moment does a
    /// console's LAN- or mesh-bound UDP meet the exit rule alone. A failed
    /// change does not stop the others; the first error is returned, and the
    /// next call tries again what failed.
    pub fn apply(&mut self, nl: &mut Netlink, consoles: &[Console]) -> io::Result<(usize, usize)> {
        let desired: BTreeSet<Rule> = self.desired_rules(consoles).into_iter().collect();
        let stale: Vec<Rule> = self.installed.difference(&desired).cloned().collect();
        let missing: Vec<Rule> = desired.difference(&self.installed).cloned().collect();
        let (mut added, mut removed, mut first_err) = (0, 0, None);
        // Rules sort by priority: P+1 last, so deleted first when reversed.
        for rule in stale.into_iter().rev() {
            match nl.rule_delete(&rule) {
                Ok(()) => {
                    self.installed.remove(&rule);
                    removed += 1;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for rule in missing {
            match nl.rule_add(&rule) {
                Ok(()) => {
                    self.installed.insert(rule);
                    added += 1;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok((added, removed)), Err)
    }

    /// Removes the rules this value installed and every meshd route
    /// ([`RTPROT_MESHD`]) of its table. Returns how many rules and routes
    /// were removed; keeps going past a failure and returns the first error.
    pub fn clear(&mut self, nl: &mut Netlink) -> io::Result<usize> {
        let (mut removed, mut first_err) = match self.apply(nl, &[]) {
            Ok((_, removed)) => (removed, None),
            Err(e) => (0, Some(e)),
        };
        match nl.routes_in_table(self.table, RTPROT_MESHD) {
            Ok(routes) => {
                for route in routes {
                    match nl.route_delete(&route) {
                        Ok(()) => removed += 1,
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(removed), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn mac(s: &str) -> [u8; 6] {
        match s.parse().unwrap() {
            ConsoleSpec::Mac(m) => m,
            other => panic!("{other:?}"),
        }
    }

    // From the generated table (IEEE, via Debian's ieee-data).
    const SONY: &str = "00:04:1f:12:34:56"; // Sony Interactive Entertainment
    const NINTENDO: &str = "98:b6:e9:00:00:01"; // Nintendo Co.,Ltd
    const MICROSOFT: &str = "7c:ed:8d:aa:bb:cc"; // Microsoft (Xbox)
    const OTHER: &str = "52:54:00:12:34:56"; // QEMU, locally administered

    fn lan() -> Vec<Prefix> {
        vec![Prefix::v4(192, 168, 1, 0, 24).unwrap()]
    }

    #[test]
    fn oui_table_is_sorted_and_has_every_maker() {
        assert!(CONSOLE_OUIS.windows(2).all(|w| w[0].0 < w[1].0));
        for v in [Vendor::PlayStation, Vendor::Xbox, Vendor::Nintendo] {
            assert!(CONSOLE_OUIS.iter().filter(|e| e.1 == v).count() > 20, "{v}");
        }
    }

    #[test]
    fn looks_up_vendors() {
        assert_eq!(vendor_of(&mac(SONY)), Some(Vendor::PlayStation));
        assert_eq!(vendor_of(&mac(NINTENDO)), Some(Vendor::Nintendo));
        assert_eq!(vendor_of(&mac(MICROSOFT)), Some(Vendor::Xbox));
        assert_eq!(vendor_of(&mac("00:50:f2:00:00:01")), Some(Vendor::Xbox)); // MICROSOFT CORP.
        assert_eq!(
            vendor_of(&mac("00:22:a6:00:00:01")),
            Some(Vendor::PlayStation)
        ); // SCE America
        assert_eq!(vendor_of(&mac(OTHER)), None);
        assert_eq!(vendor_of(&mac("00:1a:80:00:00:01")), None); // Sony Corporation
        assert_eq!(vendor_of(&mac("38:f2:3e:00:00:01")), None); // Microsoft Mobile Oy
                                                                // The first and last entries, and just around them.
        let (first, last) = (CONSOLE_OUIS[0].0, CONSOLE_OUIS[CONSOLE_OUIS.len() - 1].0);
        let with = |o: [u8; 3]| [o[0], o[1], o[2], 0, 0, 0];
        assert!(vendor_of(&with(first)).is_some());
        assert!(vendor_of(&with(last)).is_some());
        assert_eq!(vendor_of(&[0; 6]), None);
        assert_eq!(vendor_of(&[0xff; 6]), None);

        assert_eq!(
            [Vendor::PlayStation, Vendor::Xbox, Vendor::Nintendo].map(Vendor::as_str),
            ["sony", "microsoft", "nintendo"]
        );
        assert_eq!(Vendor::Xbox.to_string(), "Xbox");
        assert_eq!(Vendor::PlayStation.display_name(), "PlayStation");
    }

    #[test]
    fn parses_console_specs() {
        let want = ConsoleSpec::Mac([0x00, 0x04, 0x1f, 0xab, 0xcd, 0xef]);
        for s in [
            "00:04:1f:ab:cd:ef",
            "00:04:1F:AB:CD:EF",
            "00-04-1f-ab-cd-ef",
            "00-04-1F-Ab-cD-eF",
            " 00:04:1f:ab:cd:ef ",
        ] {
            assert_eq!(s.parse::<ConsoleSpec>(), Ok(want), "{s}");
        }
        assert_eq!(want.to_string(), "00:04:1f:ab:cd:ef");
        let spec = "192.168.1.50".parse::<ConsoleSpec>();
        assert_eq!(spec, Ok(ConsoleSpec::Ip(ip("192.168.1.50"))));
        assert_eq!(spec.unwrap().to_string(), "192.168.1.50");

        for bad in [
            "",
            "playstation",
            "00:04:1f:ab:cd",
            "00:04:1f:ab:cd:ef:01",
            "00:04:1f:ab:cd:eg",
            "0:4:1f:ab:cd:ef",
            "000:4:1f:ab:cd:ef",
            "00:04-1f:ab:cd:ef",
            "00:04:1f:ab:cd:ef:",
            "+0:04:1f:ab:cd:ef",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "192.168.1.256",
            "192.168.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "127.0.0.1",
            "fd00::1",
        ] {
            let e = bad.parse::<ConsoleSpec>().expect_err(bad);
            assert!(e.contains(&format!("'{}'", bad.trim())), "{bad}: {e}");
        }
        let e = "00:04:1f:ab:cd".parse::<ConsoleSpec>().unwrap_err();
        assert!(e.contains("not a MAC address"), "{e}");
        let e = "01:00:5e:00:00:01".parse::<ConsoleSpec>().unwrap_err();
        assert!(e.contains("multicast"), "{e}");
        let e = "playstation".parse::<ConsoleSpec>().unwrap_err();
        assert!(e.contains("MAC address") && e.contains("IPv4"), "{e}");
    }

    fn neighbours() -> Vec<(Ipv4Addr, [u8; 6])> {
        vec![
            (ip("192.168.1.30"), mac(NINTENDO)),
            (ip("192.168.1.10"), mac(SONY)),
            (ip("192.168.1.20"), mac(OTHER)),
            (ip("192.168.1.40"), mac(MICROSOFT)),
            (ip("10.0.0.1"), mac("00:04:1f:00:00:02")), // a Sony, outside the LAN
        ]
    }

    fn console(s: &str, m: Option<&str>, how: How) -> Console {
        let mac = m.map(mac);
        Console {
            ip: ip(s),
            mac,
            vendor: mac.as_ref().and_then(vendor_of),
            how,
        }
    }

    #[test]
    fn detects_consoles() {
        let n = neighbours();
        // Auto: the three console makers' hosts in the LAN, sorted by IP.
        assert_eq!(
            detect(true, &[], &n, &lan()),
            vec![
                console("192.168.1.10", Some(SONY), How::Auto),
                console("192.168.1.30", Some(NINTENDO), How::Auto),
                console("192.168.1.40", Some(MICROSOFT), How::Auto),
            ]
        );
        assert_eq!(detect(false, &[], &n, &lan()), vec![]);
        // No LAN prefix: no neighbour counts.
        assert_eq!(detect(true, &[], &n, &[]), vec![]);

        // Listed: a MAC through the neighbour table, an IP with or without a
        // neighbour entry, in the LAN or not.
        let listed = [
            ConsoleSpec::Mac(mac(OTHER)),
            ConsoleSpec::Ip(ip("192.168.1.99")),
            ConsoleSpec::Ip(ip("192.168.1.40")),
            ConsoleSpec::Ip(ip("10.0.0.1")),
            ConsoleSpec::Mac(mac("00:11:22:33:44:55")), // not in the table
        ];
        let got = detect(false, &listed, &n, &lan());
        assert_eq!(
            got,
            vec![
                console("10.0.0.1", Some("00:04:1f:00:00:02"), How::Configured),
                console("192.168.1.20", Some(OTHER), How::Configured),
                console("192.168.1.40", Some(MICROSOFT), How::Configured),
                console("192.168.1.99", None, How::Configured),
            ]
        );
        assert_eq!(got[1].vendor, None);
        assert_eq!(got[2].vendor, Some(Vendor::Xbox));
        assert_eq!(
            got[2].to_string(),
            "192.168.1.40 (Xbox, 7c:ed:8d:aa:bb:cc, configured)"
        );
        assert_eq!(got[3].to_string(), "192.168.1.99 (configured)");

        // Both: one entry per address, configured winning over auto.
        let got = detect(true, &listed, &n, &lan());
        let hows: Vec<(Ipv4Addr, How)> = got.iter().map(|c| (c.ip, c.how)).collect();
        assert_eq!(
            hows,
            vec![
                (ip("10.0.0.1"), How::Configured),
                (ip("192.168.1.10"), How::Auto),
                (ip("192.168.1.20"), How::Configured),
                (ip("192.168.1.30"), How::Auto),
                (ip("192.168.1.40"), How::Configured),
                (ip("192.168.1.99"), How::Configured),
            ]
        );
        // Listed twice (by IP and by MAC), and a MAC at two addresses.
        let mut n2 = n.clone();
        n2.push((ip("192.168.1.11"), mac(SONY)));
        let twice = [
            ConsoleSpec::Ip(ip("192.168.1.10")),
            ConsoleSpec::Mac(mac(SONY)),
        ];
        assert_eq!(
            detect(true, &twice, &n2, &lan())
                .iter()
                .map(|c| (c.ip, c.how))
                .take(2)
                .collect::<Vec<_>>(),
            vec![
                (ip("192.168.1.10"), How::Configured),
                (ip("192.168.1.11"), How::Configured)
            ]
        );
    }

    #[test]
    fn builds_rules_and_routes() {
        let consoles = detect(true, &[], &neighbours(), &lan());
        let pr = PolicyRouting::new("br-lan", false);
        assert_eq!(pr.table(), CONSOLE_TABLE);
        let rules = pr.desired_rules(&consoles[..1]);
        let text: Vec<String> = rules.iter().map(Rule::to_string).collect();
        assert_eq!(
            text,
            vec![
                "32000: from 192.168.1.10/32 lookup 254 suppress_prefixlength 0 proto 200",
                "32001: from 192.168.1.10/32 iif br-lan ipproto 17 lookup 28005 proto 200",
            ]
        );
        assert_eq!(pr.desired_rules(&consoles).len(), 6);
        assert_eq!(pr.desired_rules(&[]), vec![]);

        // All traffic: no ipproto; another table and priority.
        let all = PolicyRouting::new("br-lan", true).with_table(100, 500);
        let rules = all.desired_rules(&consoles[..1]);
        assert_eq!(
            rules[1].to_string(),
            "501: from 192.168.1.10/32 iif br-lan lookup 100 proto 200"
        );
        assert_eq!(rules[0].table, RT_TABLE_MAIN);
        assert_eq!(rules[0].priority, 500);

        let routes = pr.table_routes(7, 1380);
        assert_eq!(routes.len(), 1);
        assert_eq!(
            routes[0].to_string(),
            "0.0.0.0/0 dev #7 mtu 1380 proto 200 table 28005"
        );
    }
}
