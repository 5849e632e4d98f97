//! The typed meshd configuration, read from a UCI file (`/etc/config/meshd`
//! by default; see [`crate::uci`] for the syntax).
//!
//! ```text
//! config meshd 'main'
//!     option enabled '1'             # bool (1/0, yes/no, on/off, true/false,
//!                                    #   enabled/disabled); default 1; 0: meshd exits at start
//!     option private_key_file '/etc/meshd/private.key'
//!                                    # absolute path; default as shown; created if missing
//!     option listen_port '51820'     # UDP port of the mesh, 1..65535; default 51820
//!                                    #   (and listen_port + 1, if free, for STUN answers)
//!     option overlay '10.0.0.1'      # unicast IPv4; by default derived from this
//!                                    #   router's key (a host of 198.18.0.0/15)
//!     option overlay6 'fd00::1'      # unicast IPv6; by default derived from the key
//!                                    #   (fd6d:6573:6864::/48) if overlay is, else none
//!     option asn '65001'             # 1..4294967294, not 23456 (AS_TRANS); by default
//!                                    #   derived from the key (a private AS)
//!     list announce '192.168.1.0/24' # prefixes this home announces: at most 8, no
//!                                    #   default route; default none
//!     option lan_alias 'auto'        # auto|on|off|a.b.c.d/len: the mesh knows this home's
//!                                    #   first IPv4 LAN (/24 or longer) by an alias of the
//!                                    #   same length (a /24 of 10.64.0.0/10 derived from
//!                                    #   the key, or the prefix given), mapped 1:1 both
//!                                    #   ways, so homes on the same LAN prefix reach each
//!                                    #   other; auto: on when overlay is left to the key;
//!                                    #   default auto
//!     option hold_time '9'           # BGP hold time, s: 0 or 3..65535; default 9
//!     option connect_retry '2'       # BGP connect retry, s: 1..3600; default 2
//!     option keepalive '25'          # WireGuard persistent keepalive, s: 0..65535,
//!                                    #   0 = off; default 25
//!     option max_paths '1'           # ECMP limit, 1..32; default 1
//!     option max_members '16'        # members this router has room for, 1..64; default
//!                                    #   16 (more if more are configured). Memory is
//!                                    #   set aside for them at start: a member costs its
//!                                    #   slot (13 KiB) once added, and what its session
//!                                    #   writes of 40 KiB of buffers once it runs (a few
//!                                    #   pages); a change, or more members than there is
//!                                    #   room for, restarts meshd on reload
//!     option tun 'meshd0'            # TUN interface, 1..15 of [A-Za-z0-9_.-] (not . or ..);
//!                                    #   default meshd0
//!     option control_socket '/var/run/meshd.sock'
//!                                    # absolute path, at most 107 bytes; default as shown
//!     option log_level 'info'        # error|warn|info|debug|trace; default info
//!     option bfd '1'                 # bool: BFD on every tunnel; default 1
//!     option bfd_interval '10'       # BFD transmit and receive interval, ms: 1..10000;
//!                                    #   default 10 (checked even with bfd 0)
//!     option bfd_multiplier '4'      # BFD detection multiplier, packets: 2..255;
//!                                    #   default 4 (checked even with bfd 0)
//!     option bfd_max_detection '200' # ms, 0..60000; default 200: on a jittery path BFD
//!                                    #   raises its receive interval (a poll sequence the
//!                                    #   peer follows) until the detection time covers the
//!                                    #   jitter, up to this; at or below interval ×
//!                                    #   multiplier the timers stay fixed. Members too
//!     option bfd_confirm '2000'      # ms, 0..60000; default 2000: BFD down moves traffic
//!                                    #   to other paths at once; the BGP session and its
//!                                    #   routes go only if BFD stays down this much longer
//!                                    #   (0: at once). Traffic returns after BFD has been
//!                                    #   Up 1 s (doubled per further blip, up to 30 s)
//!     option bfd_hold_down '2'       # s, 0..600; default 2: after BFD took a session down,
//!                                    #   BGP waits this long with BFD Up before it restarts
//!     option redundancy '1'          # bool: LAN UDP packets up to redundancy_max_size go
//!                                    #   over the two best first hops; default 1
//!     option redundancy_max_size '300'   # bytes, 28..1420; default 300 (checked even
//!                                    #   with redundancy 0)
//!     option relay_rate '20000'      # transit one member may send through us, kbit/s:
//!                                    #   0..10000000, 0 = no cap; default 20000 (consoles'
//!                                    #   traffic through us as their game exit counts too)
//!     option exit '0'                # bool: offer this router as a game exit (announced
//!                                    #   only while its NAT type is open, or forwarded with
//!                                    #   exit_ports set); default 0
//!     option exit_ports '1024-65535' # the exit's public UDP ports, lo-hi in 1024..65535;
//!                                    #   set it when a NAT in front forwards this range to
//!                                    #   the router; default 1024-65535
//!     option exit_mappings '256'     # exit NAT mappings one member may hold: 1..1024;
//!                                    #   default 256
//!     option exit_timeout '300'      # s an idle exit mapping lives: 120..3600; default 300
//!     option consoles 'auto'         # auto: consoles are found by MAC vendor (Sony,
//!                                    #   Microsoft, Nintendo) in the LAN's neighbour table;
//!                                    #   off: only those listed; default auto
//!     list console 'aa:bb:cc:dd:ee:ff'   # a console by MAC or IPv4 address: at most 32;
//!                                    #   default none
//!     option exit_all '0'            # bool: consoles send everything through the exit, not
//!                                    #   only UDP; default 0
//!     option lan_interface 'br-lan'  # the LAN device consoles are on; default br-lan
//!     option discovery '1'           # bool: relay the consoles' LAN discovery (broadcast
//!                                    #   and multicast) between homes; default 1
//!     list discovery_port '9302'     # UDP ports whose broadcasts are relayed: at most 8;
//!                                    #   default 987 (PS4), 9302 (PS5), 30000 (Switch)
//!     option discovery_ssdp '1'      # bool: relay SSDP (239.255.255.250:1900); default 1
//!     option discovery_mdns '0'      # bool: relay mDNS (224.0.0.251:5353); default 0
//!
//! config member 'r2'                 # the section name is the member's name
//!     option name 'r2'               # 1..32 of [A-Za-z0-9_]; required in an anonymous
//!                                    #   section, else (if given) the section name
//!     option enabled '1'             # bool; default 1; a disabled member is checked, not used
//!     option public_key '...'        # required, WireGuard key (44 characters of base64)
//!     option overlay '10.0.0.2'      # unicast IPv4; by default derived from public_key
//!                                    #   (a host of 198.18.0.0/15, mesh_core::identity)
//!     option overlay6 'fd00::2'      # unicast IPv6; by default derived from public_key
//!                                    #   (fd6d:6573:6864::/48) if overlay is, else none
//!     option asn '65002'             # 1..4294967294, not 23456; by default derived from
//!                                    #   public_key (a private AS, 4200000000..4294967294)
//!     list prefix '192.168.2.0/24'   # what it may originate, its LAN: at most 8, no
//!                                    #   default route; default none
//!     list endpoint '198.51.100.2:51820'   # a.b.c.d:port, [v6]:port or host:port, port
//!                                    #   1..65535: at most 8; default none
//!     option keepalive '25'          # s, 0..65535; default main's (0 = off for this member)
//!     option hold_time '3'           # s, 0 or 3..65535; default main's
//!     option bfd '1'                 # bool; 0: no BFD on this tunnel; default main's
//!     option bfd_interval '10'       # ms, 1..10000; default main's bfd_interval
//!     option bfd_multiplier '4'      # packets, 2..255; default main's bfd_multiplier
//!     option exit '0'                # bool: the member is a game exit: its default route
//!                                    #   is accepted; default 0
//!     option inviter '1'             # bool: the member's group records count here (whom
//!                                    #   it invites or removes); default 1
//!     option vouch '0'               # bool: we brought it in (invited it, or it invited
//!                                    #   us): our signed group record lists it; default 0
//!                                    #   (the invite flows write 1)
//!     option via 'r2'                # the member whose group record brought it in (meshd
//!                                    #   writes it); default none: written by hand or invite
//!     option removed '0'             # bool: removed from the group (`meshd remove`): not
//!                                    #   used, and our record lists it removed; default 0
//!                                    # Unless its bfd is 0, a member that sets any of these
//!                                    #   three runs BFD even if main's bfd is 0; a timer it
//!                                    #   does not set is then main's if main's bfd is 1,
//!                                    #   else the default (10 ms, 4).
//! ```
//!
//! - An anonymous `config member` takes its name from `option name`. Names are
//!   what a uci section name may be (`[A-Za-z0-9_]`), at most 32 bytes.
//! - List options (`announce`, `prefix`, `endpoint`) may also be given as one
//!   `option` holding items separated by spaces, as OpenWrt scripts allow.
//!   Every other option takes one value: written as a `list`, it is an error.
//! - Exactly one `meshd` section. Member names, and among enabled members
//!   public keys, AS numbers and overlay addresses, are unique; no member uses
//!   the node's own AS number or overlay addresses.
//! - Numbers left to the key (issue 17: nothing to coordinate between homes):
//!   a member's `overlay`, `overlay6` and `asn` are derived from its
//!   `public_key`, this router's from its own key once it is read
//!   ([`Config::derive_identity`]). A derived number that another member
//!   also has (a hash collision) is an error like any duplicate: set it by
//!   hand on one of the two. Explicit values always win.
//! - Unknown options and section types are warnings ([`Config::warnings`]);
//!   everything else wrong is an error, and all errors are reported at once.

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use mesh_core::node::exitnat::{ExitNatConfig, DEFAULT_QUOTA, EXIT_MAPPINGS};
use mesh_core::node::{self, NodeConfig, MAX_LAN_PREFIXES};
use mesh_core::wg::{
    BfdSetting, Key, MemberConfig, MAX_ENDPOINTS, MAX_MEMBERS, MAX_MEMBER_PREFIXES,
};
use mesh_core::{identity, Duration, Prefix};

use crate::consoles::ConsoleSpec;
use crate::uci::{self, Package, Section, Value};

pub const DEFAULT_PATH: &str = "/etc/config/meshd";
pub const DEFAULT_PRIVATE_KEY_FILE: &str = "/etc/meshd/private.key";
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_TUN: &str = "meshd0";
pub const DEFAULT_CONTROL_SOCKET: &str = "/var/run/meshd.sock";
// The node's defaults are mesh-core's (`mesh_core::node::DEFAULT_*`, where
// each is explained), in the units this file is written in.
pub const DEFAULT_HOLD_TIME: u16 = node::DEFAULT_HOLD_TIME;
pub const DEFAULT_CONNECT_RETRY_SECS: u64 = node::DEFAULT_CONNECT_RETRY.as_secs();
pub const DEFAULT_KEEPALIVE: u16 = node::DEFAULT_KEEPALIVE;
pub const DEFAULT_MAX_PATHS: u8 = node::DEFAULT_MAX_PATHS;
/// Room for this many members unless told otherwise: a group of friends, and
/// what a 64 MB router spares easily (the node's memory grows with it).
pub const DEFAULT_MAX_MEMBERS: usize = 16;
pub const DEFAULT_BFD_INTERVAL_MS: u32 = node::DEFAULT_BFD.desired_min_tx.as_millis() as u32;
pub const DEFAULT_BFD_MULTIPLIER: u8 = node::DEFAULT_BFD.detect_mult;
pub const DEFAULT_BFD_HOLD_DOWN_SECS: u64 = node::DEFAULT_BFD_HOLD_DOWN.as_secs();
pub const DEFAULT_BFD_CONFIRM_MS: u64 = node::DEFAULT_BFD_CONFIRM.as_millis();
pub const DEFAULT_REDUNDANCY_MAX_SIZE: u16 = node::DEFAULT_REDUNDANCY_MAX_LEN;
pub const DEFAULT_RELAY_RATE_KBIT: u32 = node::DEFAULT_RELAY_RATE_KBIT;
pub const DEFAULT_EXIT_TIMEOUT: Duration = mesh_core::node::exitnat::DEFAULT_TIMEOUT;
pub const DEFAULT_LAN_INTERFACE: &str = "br-lan";
/// Consoles listed by hand.
pub const MAX_CONSOLES: usize = 32;
/// Member names become `heapless::String<32>` in mesh-core.
pub const MAX_MEMBER_NAME: usize = 32;
/// RFC 6793: the 2-octet stand-in for a 4-octet AS number, never a real AS.
const AS_TRANS: u32 = 23456;
/// `sun_path` holds 108 bytes with the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

const MAIN_OPTIONS: &[&str] = &[
    "enabled",
    "private_key_file",
    "listen_port",
    "overlay",
    "overlay6",
    "asn",
    "announce",
    "lan_alias",
    "hold_time",
    "connect_retry",
    "keepalive",
    "max_paths",
    "max_members",
    "tun",
    "control_socket",
    "log_level",
    "bfd",
    "bfd_interval",
    "bfd_multiplier",
    "bfd_max_detection",
    "bfd_confirm",
    "bfd_hold_down",
    "redundancy",
    "redundancy_max_size",
    "relay_rate",
    "exit",
    "exit_ports",
    "exit_mappings",
    "exit_timeout",
    "consoles",
    "console",
    "exit_all",
    "lan_interface",
    "discovery",
    "discovery_port",
    "discovery_ssdp",
    "discovery_mdns",
];

const MEMBER_OPTIONS: &[&str] = &[
    "enabled",
    "name",
    "public_key",
    "overlay",
    "overlay6",
    "asn",
    "prefix",
    "endpoint",
    "keepalive",
    "hold_time",
    "bfd",
    "bfd_interval",
    "bfd_multiplier",
    "exit",
    "inviter",
    "vouch",
    "via",
    "removed",
];

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub main: MainConfig,
    /// All member sections in file order, disabled ones included.
    pub members: Vec<MemberEntry>,
    /// Unknown options and section types, host bits set in prefixes: worth
    /// logging, not worth refusing the file.
    pub warnings: Vec<ConfigError>,
}

/// The `config meshd` section: this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MainConfig {
    pub enabled: bool,
    pub private_key_file: PathBuf,
    pub listen_port: u16,
    /// This router's overlay address: unspecified (0.0.0.0) until
    /// [`Config::derive_identity`] when the file leaves it to the key.
    pub overlay: Ipv4Addr,
    pub overlay6: Option<Ipv6Addr>,
    /// This router's AS number: 0 until [`Config::derive_identity`] when
    /// the file leaves it to the key.
    pub asn: u32,
    /// Which of those the file leaves to the key.
    pub from_key: FromKey,
    /// Whether (and to what) this home's LAN is mapped in the mesh.
    pub lan_alias: LanAlias,
    /// The mapping in force: set by [`Config::derive_identity`].
    pub lan_map: Option<mesh_core::netmap::Map>,
    /// The line of the `config meshd` section (for errors about derived
    /// numbers).
    pub line: usize,
    pub announce: Vec<Prefix>,
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// `None` when set to 0 (off).
    pub keepalive: Option<u16>,
    pub max_paths: u8,
    /// Members to have room for (the configured ones may be more:
    /// [`Config::member_capacity`]).
    pub max_members: usize,
    pub tun: String,
    pub control_socket: PathBuf,
    pub log_level: log::LevelFilter,
    /// BFD on every tunnel (`None`: off).
    pub bfd: Option<BfdTimers>,
    /// Kept apart from `bfd` so that members inherit it with BFD off in main.
    pub bfd_max_detection_ms: u32,
    /// How long BGP waits, with BFD Up again, after BFD took it down.
    pub bfd_hold_down: Duration,
    pub bfd_confirm: Duration,
    /// Redundant sending for UDP packets up to this size (`None`: off).
    pub redundancy_max_size: Option<u16>,
    /// Transit traffic one member may send through us, kbit/s (`None`: no
    /// cap).
    pub relay_rate_kbit: Option<u32>,
    /// Offer this router as a game exit.
    pub exit: bool,
    /// The exit's public ports, when the user named them (a NAT in front
    /// forwards them).
    pub exit_ports: Option<(u16, u16)>,
    /// Exit NAT mappings one member may hold.
    pub exit_mappings: u16,
    pub exit_timeout: Duration,
    /// Find consoles by MAC vendor.
    pub consoles_auto: bool,
    /// Consoles listed by MAC or address.
    pub consoles: Vec<ConsoleSpec>,
    /// Consoles send everything through the exit, not only UDP.
    pub exit_all: bool,
    pub lan_interface: String,
    /// Relay LAN discovery between homes (`None`: off): what is relayed.
    pub discovery: Option<mesh_core::discovery::Policy>,
}

/// Which of this router's mesh numbers the file leaves to its key (issue
/// 17); [`Config::derive_identity`] fills them in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FromKey {
    pub overlay: bool,
    pub overlay6: bool,
    pub asn: bool,
}

impl FromKey {
    pub fn any(self) -> bool {
        self.overlay || self.overlay6 || self.asn
    }
}

/// `option lan_alias`: how the mesh knows this home's LAN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LanAlias {
    /// Mapped to the alias derived from the key when the overlay address
    /// is too (a config with no numbers), else announced as itself.
    #[default]
    Auto,
    On,
    Off,
    /// Mapped to this prefix.
    To(Ipv4Addr, u8),
}

fn parse_lan_alias(s: &str) -> Result<LanAlias, String> {
    match s {
        "auto" => return Ok(LanAlias::Auto),
        "on" | "1" => return Ok(LanAlias::On),
        "off" | "0" => return Ok(LanAlias::Off),
        _ => {}
    }
    match parse_prefix(s) {
        Ok((p, _)) => match p.addr() {
            IpAddr::V4(a) => Ok(LanAlias::To(a, p.prefix_len())),
            IpAddr::V6(_) => Err(format!("'{s}' is not an IPv4 prefix")),
        },
        Err(_) => Err(format!(
            "'{s}' is neither auto, on, off nor an IPv4 prefix a.b.c.d/len"
        )),
    }
}

/// BFD timers as configured: interval in milliseconds and multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdTimers {
    pub interval_ms: u32,
    pub multiplier: u8,
    /// The bound of the detection time on a jittery path (main's
    /// `bfd_max_detection`).
    pub max_detection_ms: u32,
}

impl BfdTimers {
    pub fn to_bfd(self) -> mesh_core::bfd::Config {
        let interval = Duration::from_millis(self.interval_ms as u64);
        mesh_core::bfd::Config {
            desired_min_tx: interval,
            required_min_rx: interval,
            detect_mult: self.multiplier,
            max_detection: Duration::from_millis(self.max_detection_ms as u64),
        }
    }
}

/// A `config member` section: a friend's router. Holds no line numbers, so
/// that comparing the old and new entry on reload says whether the member
/// itself changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEntry {
    pub name: String,
    pub enabled: bool,
    pub public_key: Key,
    pub overlay: Ipv4Addr,
    pub overlay6: Option<Ipv6Addr>,
    pub asn: u32,
    pub prefixes: Vec<Prefix>,
    pub endpoints: Vec<Endpoint>,
    /// Overrides the node's keepalive; `Some(0)` turns it off for this member.
    pub keepalive: Option<u16>,
    /// Overrides the node's hold time.
    pub hold_time: Option<u16>,
    /// `Some(false)`: no BFD on this tunnel.
    pub bfd: Option<bool>,
    /// The member is a game exit: its default route is accepted.
    pub exit: bool,
    /// The member's group records count here (`option inviter`, default 1).
    pub inviter: bool,
    /// We brought it into the group (`option vouch`): our record lists it.
    pub vouch: bool,
    /// The member whose group record brought it in (`option via`): meshd
    /// wrote the section, and removes it when the group removes the member.
    pub via: Option<String>,
    /// Removed from the group (`option removed`): not used, and listed
    /// removed in our record.
    pub removed: bool,
    pub bfd_interval_ms: Option<u32>,
    pub bfd_multiplier: Option<u8>,
}

/// Where a member may be reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Addr(SocketAddr),
    /// A host name, resolved by the daemon (and again later: home addresses change).
    Name(String, u16),
}

/// Something wrong (or, in [`Config::warnings`], odd) in the file, with
/// where it is. Displays as
/// `/etc/config/meshd:12: member 'r2': option 'asn': '65x02' is not an AS number (1..4294967294)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 0 when it is about the file as a whole.
    pub line: usize,
    /// `member 'r2'`, `member @member[1]` (anonymous), or empty.
    pub section: String,
    pub option: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        f.write_str(": ")?;
        if !self.section.is_empty() {
            write!(f, "{}: ", self.section)?;
        }
        if let Some(option) = &self.option {
            write!(f, "option '{option}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// How many members the node has room for: `max_members`, or the
    /// enabled members if more are configured (at most
    /// [`MAX_MEMBERS`], which the parser enforces).
    pub fn member_capacity(&self) -> usize {
        let enabled = self.enabled_members().count();
        self.main.max_members.max(enabled).min(MAX_MEMBERS)
    }

    /// Whether this configuration, replacing `running` on a node that has
    /// room for `room` members, needs a restart to set aside another room:
    /// `max_members` changed, or more members are enabled than there is
    /// room for. Fewer members keep the room they had.
    pub fn needs_new_room(&self, running: &Config, room: usize) -> bool {
        self.main.max_members != running.main.max_members || self.member_capacity() > room
    }

    /// Reads and checks the file; on failure, every error found.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let file_error = |line: usize, message: String| ConfigError {
            file: path.to_path_buf(),
            line,
            section: String::new(),
            option: None,
            message,
        };
        let bytes = fs::read(path).map_err(|e| vec![file_error(0, e.to_string())])?;
        match String::from_utf8(bytes) {
            Ok(text) => Config::parse(&text, path),
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
                Err(vec![file_error(line, "not UTF-8 text".to_string())])
            }
        }
    }

    /// Checks `text` as if read from `file` (which only names it in errors).
    pub fn parse(text: &str, file: &Path) -> Result<Config, Vec<ConfigError>> {
        match Package::parse(text) {
            Ok(package) => Config::from_uci(&package, file),
            Err(e) => Err(vec![ConfigError {
                file: file.to_path_buf(),
                line: e.line,
                section: String::new(),
                option: None,
                message: e.message,
            }]),
        }
    }

    /// Checks a parsed UCI package (for the daemon, after editing one).
    pub fn from_uci(package: &Package, file: &Path) -> Result<Config, Vec<ConfigError>> {
        let mut report = Report {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let mut main: Option<MainConfig> = None;
        let mut main_line: Option<usize> = None;
        let mut members: Vec<(MemberEntry, MemberLines)> = Vec::new();

        for (index, section) in package.sections.iter().enumerate() {
            let label = section_label(package, index);
            match section.stype.as_str() {
                "meshd" => {
                    if let Some(first) = main_line {
                        report.error(
                            section.line,
                            &label,
                            None,
                            format!(
                                "a second 'config meshd' section (the first is on line {first})"
                            ),
                        );
                        continue;
                    }
                    main_line = Some(section.line);
                    main = read_main(&mut SectionReader::new(&mut report, section, label));
                }
                "member" => {
                    let mut reader = SectionReader::new(&mut report, section, label.clone());
                    if let Some(member) = read_member(&mut reader) {
                        members.push((member, MemberLines::of(section, label)));
                    }
                }
                other => report.warn(
                    section.line,
                    &label,
                    None,
                    format!("unknown section type '{other}', ignored"),
                ),
            }
        }
        if main_line.is_none() {
            report.error(0, "", None, "no 'config meshd' section".to_string());
        }
        check_members(&mut report, main.as_ref(), &members);

        // Report in file order; file-wide errors (line 0) first.
        report.errors.sort_by_key(|e| e.line);
        report.warnings.sort_by_key(|e| e.line);
        match main {
            Some(main) if report.errors.is_empty() => Ok(Config {
                main,
                members: members.into_iter().map(|(m, _)| m).collect(),
                warnings: report.warnings,
            }),
            _ => Err(report.errors),
        }
    }

    /// Fills in this router's numbers the file leaves to its key (issue
    /// 17), from its public key, and checks them against the enabled
    /// members' (a hash collision is an error at the `config meshd`
    /// section: set the number by hand there). `file` names the file in
    /// errors. Explicit numbers are left as they are.
    pub fn derive_identity(&mut self, public: &Key, file: &Path) -> Result<(), Vec<ConfigError>> {
        let main = &mut self.main;
        if main.from_key.overlay {
            main.overlay = identity::overlay_v4(public);
        }
        if main.from_key.overlay6 {
            main.overlay6 = Some(identity::overlay_v6(public));
        }
        if main.from_key.asn {
            main.asn = identity::asn(public);
        }
        let mut errors = Vec::new();
        match self.main.resolve_lan_map(public) {
            Ok(map) => self.main.lan_map = map,
            Err(message) => errors.push(ConfigError {
                file: file.to_path_buf(),
                line: self.main.line,
                section: "meshd 'main'".to_string(),
                option: Some("lan_alias".to_string()),
                message,
            }),
        }
        let main = &self.main;
        if let Some(map) = main.lan_map {
            let alias = IpAddr::V4(map.alias.0);
            for m in self.enabled_members() {
                if m.prefixes.iter().any(|p| p.contains(alias)) {
                    errors.push(ConfigError {
                        file: file.to_path_buf(),
                        line: main.line,
                        section: "meshd 'main'".to_string(),
                        option: Some("lan_alias".to_string()),
                        message: format!(
                            "this home's LAN alias {}/{} lies in member '{}''s prefixes: \
                             set option lan_alias to another prefix",
                            map.alias.0, map.alias.1, m.name
                        ),
                    });
                }
            }
        }
        let mut collide = |option: &str, what: String, member: &str| {
            errors.push(ConfigError {
                file: file.to_path_buf(),
                line: main.line,
                section: "meshd 'main'".to_string(),
                option: Some(option.to_string()),
                message: format!(
                    "{what}, derived from this router's key, is member '{member}''s too: \
                     set option {option} here by hand"
                ),
            });
        };
        for m in self.enabled_members() {
            if main.from_key.overlay && m.overlay == main.overlay {
                collide("overlay", main.overlay.to_string(), &m.name);
            }
            if main.from_key.overlay6 && m.overlay6.is_some() && m.overlay6 == main.overlay6 {
                let a = main.overlay6.map(|a| a.to_string()).unwrap_or_default();
                collide("overlay6", a, &m.name);
            }
            if main.from_key.asn && m.asn == main.asn {
                collide("asn", format!("AS {}", main.asn), &m.name);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn member(&self, name: &str) -> Option<&MemberEntry> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The members that run: enabled and not removed from the group.
    pub fn enabled_members(&self) -> impl Iterator<Item = &MemberEntry> {
        self.members.iter().filter(|m| m.enabled && !m.removed)
    }
}

impl MainConfig {
    /// How this home's LAN is known in the mesh, as `lan_alias` says: the
    /// first IPv4 `announce` prefix of /24 or longer, mapped to an alias of
    /// its length (derived from `public`, or given).
    fn resolve_lan_map(&self, public: &Key) -> Result<Option<mesh_core::netmap::Map>, String> {
        let on = match self.lan_alias {
            LanAlias::Off => return Ok(None),
            LanAlias::Auto => self.from_key.overlay,
            LanAlias::On | LanAlias::To(..) => true,
        };
        if !on {
            return Ok(None);
        }
        let lan = self.announce.iter().find_map(|p| match p.addr() {
            IpAddr::V4(a) if p.prefix_len() >= identity::LAN_ALIAS_LEN => Some((a, p.prefix_len())),
            _ => None,
        });
        let alias = |len| match self.lan_alias {
            LanAlias::To(a, l) => (a, l),
            _ => (identity::lan_alias(public), len),
        };
        match lan {
            Some((a, len)) => mesh_core::netmap::Map::new((a, len), alias(len))
                .map(Some)
                .ok_or_else(|| {
                    let (b, l) = alias(len);
                    format!("the alias {b}/{l} is not as long as the LAN {a}/{len}")
                }),
            None if self.lan_alias == LanAlias::Auto => Ok(None),
            None => Err("no IPv4 prefix of /24 or longer in announce to map".to_string()),
        }
    }

    /// The node's settings for mesh-core.
    pub fn node_config(&self, private_key: Key, seed: u64) -> NodeConfig {
        let mut config = NodeConfig::new(private_key, self.overlay, self.asn);
        config.overlay_v6 = self.overlay6;
        for prefix in &self.announce {
            // A mapped LAN is announced as its alias.
            let mapped = self
                .lan_map
                .filter(|m| IpAddr::V4(m.lan.0) == prefix.addr() && m.lan.1 == prefix.prefix_len());
            let announced = match mapped {
                Some(m) => Prefix::new(IpAddr::V4(m.alias.0), m.alias.1).unwrap_or(*prefix),
                None => *prefix,
            };
            // At most MAX_LAN_PREFIXES: checked when the file was read.
            let _ = config.lan_prefixes.push(announced);
        }
        if let Some(m) = self.lan_map {
            let _ = config.lan_map.push(m);
        }
        config.hold_time = self.hold_time;
        config.connect_retry = self.connect_retry;
        config.max_paths = self.max_paths;
        config.keepalive = self.keepalive;
        config.seed = seed;
        config.bfd = self.bfd.map(BfdTimers::to_bfd);
        config.bfd_hold_down = self.bfd_hold_down;
        config.bfd_confirm = self.bfd_confirm;
        config.redundancy_max_len = self.redundancy_max_size;
        config.relay_rate_kbit = self.relay_rate_kbit;
        config.discovery = self.discovery.clone();
        config.exit = self.exit.then(|| {
            let (first_port, last_port) = self.exit_ports.unwrap_or((1024, 65535));
            node::ExitConfig {
                nat: ExitNatConfig {
                    first_port,
                    last_port,
                    timeout: self.exit_timeout,
                    quota: self.exit_mappings,
                },
                ports_forwarded: self.exit_ports.is_some(),
            }
        });
        config
    }
}

impl MemberEntry {
    /// The member for mesh-core. Its endpoints are the literal addresses of
    /// [`MemberEntry::endpoints`] followed by `resolved` (what the host names
    /// resolved to; passing the literal ones again does no harm), without
    /// duplicates and at most [`MAX_ENDPOINTS`].
    pub fn member_config(&self, main: &MainConfig, resolved: &[SocketAddr]) -> MemberConfig {
        let mut name = heapless::String::new();
        for c in self.name.chars() {
            // At most 32 bytes: checked when the file was read.
            if name.push(c).is_err() {
                break;
            }
        }
        let mut prefixes = heapless::Vec::new();
        for prefix in &self.prefixes {
            let _ = prefixes.push(*prefix);
        }
        let literal = self.endpoints.iter().filter_map(|e| match e {
            Endpoint::Addr(a) => Some(*a),
            Endpoint::Name(..) => None,
        });
        let mut endpoints: heapless::Vec<SocketAddr, MAX_ENDPOINTS> = heapless::Vec::new();
        for addr in literal.chain(resolved.iter().copied()) {
            if !endpoints.contains(&addr) && endpoints.push(addr).is_err() {
                break;
            }
        }
        MemberConfig {
            name,
            public_key: self.public_key,
            overlay: self.overlay,
            overlay_v6: self.overlay6,
            asn: self.asn,
            prefixes,
            endpoints,
            keepalive: self.keepalive,
            hold_time: self.hold_time,
            bfd: self.bfd_setting(main),
            exit: self.exit,
            inviter: self.inviter,
        }
    }

    /// This member's BFD: off if it says so; its own timers (falling back to
    /// main's) if it sets any; otherwise as main says.
    pub fn bfd_setting(&self, main: &MainConfig) -> BfdSetting {
        if self.bfd == Some(false) {
            return BfdSetting::Off;
        }
        if self.bfd_interval_ms.is_none() && self.bfd_multiplier.is_none() && self.bfd.is_none() {
            return BfdSetting::Inherit;
        }
        let base = main.bfd.unwrap_or(BfdTimers {
            interval_ms: DEFAULT_BFD_INTERVAL_MS,
            multiplier: DEFAULT_BFD_MULTIPLIER,
            max_detection_ms: main.bfd_max_detection_ms,
        });
        BfdSetting::On(
            BfdTimers {
                interval_ms: self.bfd_interval_ms.unwrap_or(base.interval_ms),
                multiplier: self.bfd_multiplier.unwrap_or(base.multiplier),
                max_detection_ms: base.max_detection_ms,
            }
            .to_bfd(),
        )
    }

    /// The endpoints given as host names, to resolve.
    pub fn endpoint_names(&self) -> impl Iterator<Item = (&str, u16)> {
        self.endpoints.iter().filter_map(|e| match e {
            Endpoint::Name(host, port) => Some((host.as_str(), *port)),
            Endpoint::Addr(_) => None,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Name(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for Endpoint {
    /// Why not, in words for a [`ConfigError`].
    type Err = String;

    fn from_str(s: &str) -> Result<Endpoint, String> {
        if let Ok(addr) = SocketAddr::from_str(s) {
            if addr.port() == 0 {
                return Err(format!("'{s}' has port 0"));
            }
            return Ok(Endpoint::Addr(addr));
        }
        if s.starts_with('[') {
            return Err(format!("'{s}' is not an endpoint ([IPv6 address]:port)"));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!(
                "'{s}' is not an endpoint: the port is missing (host:port)"
            ));
        };
        if host.contains(':') {
            return Err(format!(
                "'{s}' is not an endpoint: write IPv6 as [address]:port"
            ));
        }
        let port = match parse_uint(port) {
            Some(p @ 1..=65535) => p as u16,
            _ => {
                return Err(format!(
                    "'{s}' is not an endpoint: '{port}' is not a port (1..65535)"
                ))
            }
        };
        if !is_host_name(host) {
            return Err(format!(
                "'{s}' is not an endpoint: '{host}' is neither an IPv4 address nor a host name"
            ));
        }
        Ok(Endpoint::Name(host.to_string(), port))
    }
}

/// Where the checks of a file report to.
struct Report<'f> {
    file: &'f Path,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Report<'_> {
    fn entry(
        &self,
        line: usize,
        section: &str,
        option: Option<&str>,
        message: String,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            section: section.to_string(),
            option: option.map(str::to_string),
            message,
        }
    }

    fn error(&mut self, line: usize, section: &str, option: Option<&str>, message: String) {
        let e = self.entry(line, section, option, message);
        self.errors.push(e);
    }

    fn warn(&mut self, line: usize, section: &str, option: Option<&str>, message: String) {
        let w = self.entry(line, section, option, message);
        self.warnings.push(w);
    }
}

/// `member 'r2'`, or `member @member[1]` for an anonymous section.
fn section_label(package: &Package, index: usize) -> String {
    let section = &package.sections[index];
    match &section.name {
        Some(name) => format!("{} '{name}'", section.stype),
        None => format!("{} {}", section.stype, package.section_ref(index)),
    }
}

/// Reads the options of one section, reporting what is wrong with them.
struct SectionReader<'r, 'f, 's> {
    report: &'r mut Report<'f>,
    section: &'s Section,
    label: String,
}

impl<'r, 'f, 's> SectionReader<'r, 'f, 's> {
    fn new(report: &'r mut Report<'f>, section: &'s Section, label: String) -> Self {
        SectionReader {
            report,
            section,
            label,
        }
    }

    fn error(&mut self, line: usize, option: Option<&str>, message: String) {
        self.report.error(line, &self.label, option, message);
    }

    fn warn(&mut self, line: usize, option: Option<&str>, message: String) {
        self.report.warn(line, &self.label, option, message);
    }

    /// The value of `option` and its line; `None` if absent or a list.
    fn single(&mut self, option: &str) -> Option<(&'s str, usize)> {
        let o = self.section.option(option)?;
        match &o.value {
            Value::Single(v) => Some((v.as_str(), o.line)),
            Value::List(_) => {
                let message = "takes one value: write `option`, not `list`".to_string();
                self.error(o.line, Some(option), message);
                None
            }
        }
    }

    /// `option` parsed; `None` if absent or wrong (then reported).
    fn value<T>(
        &mut self,
        option: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (text, line) = self.single(option)?;
        match parse(text) {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(line, Some(option), message);
                None
            }
        }
    }

    /// Like [`Self::value`], and a missing option is an error of the section.
    fn required<T>(
        &mut self,
        option: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if self.section.option(option).is_none() {
            let line = self.section.line;
            self.error(line, None, format!("missing required option '{option}'"));
            return None;
        }
        self.value(option, parse)
    }

    /// The items of a list option (or of an option, split at spaces), each
    /// parsed, at most `max`.
    fn list<T>(
        &mut self,
        option: &str,
        what: &str,
        max: usize,
        mut parse: impl FnMut(&mut Self, &str, usize) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(o) = self.section.option(option) else {
            return Vec::new();
        };
        let line = o.line;
        let items: Vec<&'s str> = match &o.value {
            Value::Single(v) => v.split_whitespace().collect(),
            Value::List(items) => items.iter().map(String::as_str).collect(),
        };
        let mut out = Vec::new();
        for item in &items {
            match parse(self, item, line) {
                Ok(v) => out.push(v),
                Err(message) => self.error(line, Some(option), message),
            }
        }
        if items.len() > max {
            let message = format!("too many {what} ({}, at most {max})", items.len());
            self.error(line, Some(option), message);
        }
        out
    }

    fn prefixes(&mut self, option: &str, max: usize) -> Vec<Prefix> {
        self.list(option, "prefixes", max, |reader, text, line| {
            let (prefix, address) = parse_prefix(text)?;
            if prefix.addr() != address {
                let message = format!("'{text}' has host bits set; meshd uses {prefix}");
                reader.warn(line, Some(option), message);
            }
            Ok(prefix)
        })
    }

    fn warn_unknown_options(&mut self, known: &[&str]) {
        for o in &self.section.options {
            if !known.contains(&o.name.as_str()) {
                self.warn(o.line, Some(&o.name), "unknown option, ignored".to_string());
            }
        }
    }
}

fn read_main(r: &mut SectionReader) -> Option<MainConfig> {
    let enabled = r.value("enabled", parse_bool).unwrap_or(true);
    let private_key_file = r
        .value("private_key_file", parse_absolute_path)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PRIVATE_KEY_FILE));
    let listen_port = r
        .value("listen_port", parse_port)
        .unwrap_or(DEFAULT_LISTEN_PORT);
    let overlay_given = r.section.option("overlay").is_some();
    let overlay = r.value("overlay", parse_ipv4);
    let overlay6_given = r.section.option("overlay6").is_some();
    let overlay6 = r.value("overlay6", parse_ipv6);
    let asn_given = r.section.option("asn").is_some();
    let asn = r.value("asn", parse_asn);
    let from_key = FromKey {
        overlay: !overlay_given,
        overlay6: !overlay_given && !overlay6_given,
        asn: !asn_given,
    };
    let announce = r.prefixes("announce", MAX_LAN_PREFIXES);
    let lan_alias = r.value("lan_alias", parse_lan_alias).unwrap_or_default();
    let hold_time = r
        .value("hold_time", parse_hold_time)
        .unwrap_or(DEFAULT_HOLD_TIME);
    let connect_retry = r
        .value("connect_retry", |s| parse_range(s, 1, 3600, "seconds"))
        .unwrap_or(DEFAULT_CONNECT_RETRY_SECS);
    let keepalive = r
        .value("keepalive", parse_keepalive)
        .unwrap_or(DEFAULT_KEEPALIVE);
    let max_paths = r
        .value("max_paths", |s| parse_range(s, 1, 32, "paths"))
        .unwrap_or(DEFAULT_MAX_PATHS as u64);
    let max_members = r
        .value("max_members", |s| {
            parse_range(s, 1, MAX_MEMBERS as u64, "members")
        })
        .unwrap_or(DEFAULT_MAX_MEMBERS as u64);
    let tun = r
        .value("tun", parse_interface_name)
        .unwrap_or_else(|| DEFAULT_TUN.to_string());
    let control_socket = r
        .value("control_socket", parse_socket_path)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
    let log_level = r
        .value("log_level", parse_log_level)
        .unwrap_or(log::LevelFilter::Info);
    let bfd_on = r.value("bfd", parse_bool).unwrap_or(true);
    let bfd_interval = r
        .value("bfd_interval", |s| {
            parse_range(s, 1, 10_000, "milliseconds")
        })
        .unwrap_or(DEFAULT_BFD_INTERVAL_MS as u64);
    let bfd_multiplier = r
        .value("bfd_multiplier", |s| parse_range(s, 2, 255, "packets"))
        .unwrap_or(DEFAULT_BFD_MULTIPLIER as u64);
    let bfd_hold_down = r
        .value("bfd_hold_down", |s| parse_range(s, 0, 600, "seconds"))
        .unwrap_or(DEFAULT_BFD_HOLD_DOWN_SECS);
    let bfd_max_detection = r
        .value("bfd_max_detection", |s| {
            parse_range(s, 0, 60_000, "milliseconds")
        })
        .unwrap_or(mesh_core::bfd::DEFAULT_MAX_DETECTION_MS);
    let bfd_confirm = r
        .value("bfd_confirm", |s| parse_range(s, 0, 60_000, "milliseconds"))
        .unwrap_or(DEFAULT_BFD_CONFIRM_MS);
    let redundancy = r.value("redundancy", parse_bool).unwrap_or(true);
    let redundancy_max_size = r
        .value("redundancy_max_size", |s| parse_range(s, 28, 1420, "bytes"))
        .unwrap_or(DEFAULT_REDUNDANCY_MAX_SIZE as u64);
    let relay_rate = r
        .value("relay_rate", |s| {
            parse_range(s, 0, 10_000_000, "kbit/s, 0 = no cap")
        })
        .unwrap_or(DEFAULT_RELAY_RATE_KBIT as u64);
    let exit = r.value("exit", parse_bool).unwrap_or(false);
    let exit_ports = r.value("exit_ports", parse_port_range);
    let exit_mappings = r
        .value("exit_mappings", |s| {
            parse_range(s, 1, EXIT_MAPPINGS as u64, "mappings")
        })
        .unwrap_or(DEFAULT_QUOTA as u64);
    let exit_timeout = r
        .value("exit_timeout", |s| parse_range(s, 120, 3600, "seconds"))
        .unwrap_or(DEFAULT_EXIT_TIMEOUT.as_secs());
    let consoles_auto = r
        .value("consoles", |s| match s {
            "auto" => Ok(true),
            "off" => Ok(false),
            _ => Err(format!("'{s}' is neither 'auto' nor 'off'")),
        })
        .unwrap_or(true);
    let consoles = r.list("console", "consoles", MAX_CONSOLES, |_, text, _| {
        ConsoleSpec::from_str(text)
    });
    let exit_all = r.value("exit_all", parse_bool).unwrap_or(false);
    let lan_interface = r
        .value("lan_interface", parse_interface_name)
        .unwrap_or_else(|| DEFAULT_LAN_INTERFACE.to_string());
    let discovery = read_discovery(r);
    r.warn_unknown_options(MAIN_OPTIONS);

    Some(MainConfig {
        enabled,
        private_key_file,
        listen_port,
        overlay: if overlay_given {
            overlay?
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        overlay6,
        asn: if asn_given { asn? } else { 0 },
        from_key,
        lan_alias,
        lan_map: None,
        line: r.section.line,
        announce,
        hold_time,
        connect_retry: Duration::from_secs(connect_retry),
        keepalive: (keepalive != 0).then_some(keepalive),
        max_paths: max_paths as u8,
        max_members: max_members as usize,
        tun,
        control_socket,
        log_level,
        bfd: bfd_on.then_some(BfdTimers {
            interval_ms: bfd_interval as u32,
            multiplier: bfd_multiplier as u8,
            max_detection_ms: bfd_max_detection as u32,
        }),
        bfd_max_detection_ms: bfd_max_detection as u32,
        bfd_hold_down: Duration::from_secs(bfd_hold_down),
        bfd_confirm: Duration::from_millis(bfd_confirm),
        redundancy_max_size: redundancy.then_some(redundancy_max_size as u16),
        relay_rate_kbit: (relay_rate != 0).then_some(relay_rate as u32),
        exit,
        exit_ports,
        exit_mappings: exit_mappings as u16,
        exit_timeout: Duration::from_secs(exit_timeout),
        consoles_auto,
        consoles,
        exit_all,
        lan_interface,
        discovery,
    })
}

/// The discovery options: on or off, the broadcast ports, the two groups.
fn read_discovery(r: &mut SectionReader) -> Option<mesh_core::discovery::Policy> {
    use mesh_core::discovery::{Policy, DEFAULT_PORTS, MAX_PORTS};
    let on = r.value("discovery", parse_bool).unwrap_or(true);
    let given = r.section.option("discovery_port").is_some();
    let mut ports = r.list("discovery_port", "ports", MAX_PORTS, |_, text, _| {
        parse_port(text)
    });
    if !given {
        ports = DEFAULT_PORTS.to_vec();
    }
    let ssdp = r.value("discovery_ssdp", parse_bool).unwrap_or(true);
    let mdns = r.value("discovery_mdns", parse_bool).unwrap_or(false);
    // Too many ports was reported by `list`; the first ones are kept so the
    // other checks go on (the file is refused anyway).
    ports.truncate(MAX_PORTS);
    let policy = Policy::new(&ports, ssdp, mdns).unwrap_or_default();
    on.then_some(policy)
}

/// `lo-hi`: a range of unprivileged UDP ports.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("'{s}' is not a port range lo-hi (1024..65535, lo <= hi)");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    match (parse_uint(lo.trim()), parse_uint(hi.trim())) {
        (Some(lo), Some(hi)) if 1024 <= lo && lo <= hi && hi <= 65535 => Ok((lo as u16, hi as u16)),
        _ => Err(bad()),
    }
}

fn read_member(r: &mut SectionReader) -> Option<MemberEntry> {
    let name = match &r.section.name {
        Some(section_name) => {
            if section_name.len() > MAX_MEMBER_NAME {
                let message =
                    format!("member name '{section_name}' is longer than {MAX_MEMBER_NAME} bytes");
                r.error(r.section.line, None, message);
            }
            if let Some((other, line)) = r.single("name") {
                if other != section_name {
                    let message =
                        format!("'{other}' differs from the section name '{section_name}'");
                    r.error(line, Some("name"), message);
                }
            }
            Some(section_name.clone())
        }
        None if r.section.option("name").is_none() => {
            let line = r.section.line;
            r.error(
                line,
                None,
                "an anonymous member section needs option 'name'".to_string(),
            );
            None
        }
        None => r.value("name", parse_member_name),
    };
    let enabled = r.value("enabled", parse_bool).unwrap_or(true);
    let public_key = r.required("public_key", parse_key);
    // Left out, a number is derived from the member's key (issue 17).
    let overlay_given = r.section.option("overlay").is_some();
    let overlay6_given = r.section.option("overlay6").is_some();
    let asn_given = r.section.option("asn").is_some();
    let overlay = match overlay_given {
        true => r.value("overlay", parse_ipv4),
        false => public_key.as_ref().map(identity::overlay_v4),
    };
    let overlay6 = match (overlay6_given, overlay_given) {
        (true, _) => r.value("overlay6", parse_ipv6),
        (false, false) => public_key.as_ref().map(identity::overlay_v6),
        (false, true) => None,
    };
    let asn = match asn_given {
        true => r.value("asn", parse_asn),
        false => public_key.as_ref().map(identity::asn),
    };
    let mut prefixes = r.prefixes("prefix", MAX_MEMBER_PREFIXES);
    // A member whose numbers come from its key may map its LAN to the alias
    // its key derives (its `lan_alias` auto): it may announce that.
    if let (false, Some(k)) = (overlay_given, public_key.as_ref()) {
        let alias = Prefix::new(IpAddr::V4(identity::lan_alias(k)), identity::LAN_ALIAS_LEN);
        if let Ok(alias) = alias {
            if !prefixes.contains(&alias) && prefixes.len() < MAX_MEMBER_PREFIXES {
                prefixes.push(alias);
            }
        }
    }
    let endpoints = r.list("endpoint", "endpoints", MAX_ENDPOINTS, |_, text, _| {
        Endpoint::from_str(text)
    });
    let keepalive = r.value("keepalive", parse_keepalive);
    let hold_time = r.value("hold_time", parse_hold_time);
    let bfd = r.value("bfd", parse_bool);
    let bfd_interval_ms = r
        .value("bfd_interval", |s| {
            parse_range(s, 1, 10_000, "milliseconds")
        })
        .map(|v| v as u32);
    let bfd_multiplier = r
        .value("bfd_multiplier", |s| parse_range(s, 2, 255, "packets"))
        .map(|v| v as u8);
    let exit = r.value("exit", parse_bool).unwrap_or(false);
    let inviter = r.value("inviter", parse_bool).unwrap_or(true);
    let vouch = r.value("vouch", parse_bool).unwrap_or(false);
    let via = r.value("via", parse_member_name);
    let removed = r.value("removed", parse_bool).unwrap_or(false);
    r.warn_unknown_options(MEMBER_OPTIONS);

    Some(MemberEntry {
        name: name?,
        enabled,
        public_key: public_key?,
        overlay: overlay?,
        overlay6,
        asn: asn?,
        prefixes,
        endpoints,
        keepalive,
        hold_time,
        bfd,
        bfd_interval_ms,
        bfd_multiplier,
        exit,
        inviter,
        vouch,
        via,
        removed,
    })
}

/// Where a member's identifying options are, for cross-section errors.
struct MemberLines {
    label: String,
    section: usize,
    name: usize,
    public_key: usize,
    overlay: usize,
    overlay6: usize,
    asn: usize,
}

impl MemberLines {
    fn of(section: &Section, label: String) -> MemberLines {
        let line = |option: &str| section.option(option).map_or(section.line, |o| o.line);
        MemberLines {
            section: section.line,
            name: if section.name.is_some() {
                section.line
            } else {
                line("name")
            },
            public_key: line("public_key"),
            overlay: line("overlay"),
            overlay6: line("overlay6"),
            asn: line("asn"),
            label,
        }
    }
}

/// Checks across sections: unique members, none of them us.
fn check_members(
    report: &mut Report,
    main: Option<&MainConfig>,
    members: &[(MemberEntry, MemberLines)],
) {
    let mut enabled = 0;
    for (i, (m, lines)) in members.iter().enumerate() {
        let label = &lines.label;
        // This router's numbers left to its key are checked once derived
        // (`Config::derive_identity`).
        if let Some(main) = main {
            if !main.from_key.asn && m.asn == main.asn {
                let message = format!("{} is this node's own AS number", m.asn);
                report.error(lines.asn, label, Some("asn"), message);
            }
            if !main.from_key.overlay && m.overlay == main.overlay {
                let message = format!("{} is this node's own overlay address", m.overlay);
                report.error(lines.overlay, label, Some("overlay"), message);
            }
            if let Some(a) = m.overlay6.filter(|&a| main.overlay6 == Some(a)) {
                let message = format!("{a} is this node's own overlay address");
                report.error(lines.overlay6, label, Some("overlay6"), message);
            }
        }

        let earlier = &members[..i];
        if let Some((_, first)) = earlier.iter().find(|(e, _)| e.name == m.name) {
            let message = format!(
                "member name '{}' is used already (line {})",
                m.name, first.name
            );
            report.error(lines.name, label, None, message);
        }
        if !m.enabled {
            continue;
        }
        enabled += 1;
        if enabled == MAX_MEMBERS + 1 {
            let message = format!("more than {MAX_MEMBERS} enabled members");
            report.error(lines.section, label, None, message);
        }
        let earlier_enabled = || earlier.iter().filter(|(e, _)| e.enabled);
        if let Some((e, first)) = earlier_enabled().find(|(e, _)| e.public_key == m.public_key) {
            let message = format!(
                "same public key as member '{}' (line {})",
                e.name, first.public_key
            );
            report.error(lines.public_key, label, Some("public_key"), message);
        }
        if let Some((e, first)) = earlier_enabled().find(|(e, _)| e.asn == m.asn) {
            let message = format!(
                "{} is the AS number of member '{}' (line {})",
                m.asn, e.name, first.asn
            );
            report.error(lines.asn, label, Some("asn"), message);
        }
        // Two members whose keys derive the same LAN alias (a collision of
        // the hash, issue 17): both may announce it.
        let alias = |e: &MemberEntry| {
            let a = Prefix::new(
                IpAddr::V4(identity::lan_alias(&e.public_key)),
                identity::LAN_ALIAS_LEN,
            );
            a.ok().filter(|a| e.prefixes.contains(a))
        };
        if let Some(a) = alias(m) {
            if let Some((e, _)) = earlier_enabled().find(|(e, _)| alias(e) == Some(a)) {
                let message = format!(
                    "its LAN alias {a}, derived from its key, is member '{}''s too: \
                     one of them must set option lan_alias on its router, listed here as a prefix",
                    e.name
                );
                report.error(lines.public_key, label, Some("public_key"), message);
            }
        }
        if let Some((e, first)) = earlier_enabled().find(|(e, _)| e.overlay == m.overlay) {
            let message = format!(
                "{} is the overlay address of member '{}' (line {})",
                m.overlay, e.name, first.overlay
            );
            report.error(lines.overlay, label, Some("overlay"), message);
        }
        if let Some(a) = m.overlay6 {
            if let Some((e, first)) = earlier_enabled().find(|(e, _)| e.overlay6 == Some(a)) {
                let message = format!(
                    "{a} is the overlay address of member '{}' (line {})",
                    e.name, first.overlay6
                );
                report.error(lines.overlay6, label, Some("overlay6"), message);
            }
        }
    }
}

// ---- values ----

/// A decimal number, digits only (no sign, no spaces).
fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_range(s: &str, min: u64, max: u64, unit: &str) -> Result<u64, String> {
    match parse_uint(s) {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is out of range ({min}..{max} {unit})")),
    }
}

/// uci's bool (as in OpenWrt's `validate_data bool`).
fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "on" | "true" | "yes" | "enabled" => Ok(true),
        "0" | "off" | "false" | "no" | "disabled" => Ok(false),
        _ => Err(format!(
            "'{s}' is not a boolean (1/0, yes/no, on/off, true/false)"
        )),
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match parse_uint(s) {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("'{s}' is not a port (1..65535)")),
    }
}

fn parse_asn(s: &str) -> Result<u32, String> {
    match parse_uint(s) {
        Some(n) if n == AS_TRANS as u64 => Err(format!(
            "'{s}' is AS_TRANS (RFC 6793), which is not a usable AS number"
        )),
        Some(n @ 1..=4_294_967_294) => Ok(n as u32),
        _ => Err(format!("'{s}' is not an AS number (1..4294967294)")),
    }
}

fn parse_hold_time(s: &str) -> Result<u16, String> {
    match parse_uint(s) {
        Some(n @ (0 | 3..=65535)) => Ok(n as u16),
        _ => Err(format!(
            "'{s}' is not a BGP hold time (0 or 3..65535 seconds)"
        )),
    }
}

fn parse_keepalive(s: &str) -> Result<u16, String> {
    match parse_uint(s) {
        Some(n @ 0..=65535) => Ok(n as u16),
        _ => Err(format!(
            "'{s}' is not a keepalive interval (0..65535 seconds, 0 = off)"
        )),
    }
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    match Ipv4Addr::from_str(s) {
        Ok(a) if !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()) => Ok(a),
        _ => Err(format!("'{s}' is not a unicast IPv4 address")),
    }
}

fn parse_ipv6(s: &str) -> Result<Ipv6Addr, String> {
    match Ipv6Addr::from_str(s) {
        Ok(a) if !(a.is_unspecified() || a.is_multicast()) => Ok(a),
        _ => Err(format!("'{s}' is not a unicast IPv6 address")),
    }
}

/// `address/length`, with the address as written (to spot host bits).
fn parse_prefix(s: &str) -> Result<(Prefix, IpAddr), String> {
    let syntax = || format!("'{s}' is not an IP prefix (address/length)");
    let (address, _) = s.split_once('/').ok_or_else(syntax)?;
    let address = IpAddr::from_str(address).map_err(|_| syntax())?;
    let prefix = Prefix::from_str(s).map_err(|_| syntax())?;
    if prefix.is_default() {
        // It would let a member originate every other home's LAN.
        return Err(format!(
            "'{s}' is a default route; meshd carries home networks only"
        ));
    }
    Ok((prefix, address))
}

/// A WireGuard key as `wg` prints it. Checked here before mesh-core's parser
/// sees it, which wants exactly 43 base64 characters and a `=`.
fn parse_key(s: &str) -> Result<Key, String> {
    let text = s.trim();
    let error = || format!("'{s}' is not a WireGuard key (44 characters of base64)");
    let shape_ok = text.len() == 44
        && text.ends_with('=')
        && text.as_bytes()[..43]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/');
    if !shape_ok {
        return Err(error());
    }
    Key::from_str(text).map_err(|_| error())
}

fn parse_member_name(s: &str) -> Result<String, String> {
    if !uci::is_valid_name(s) || s.len() > MAX_MEMBER_NAME {
        return Err(format!(
            "'{s}' is not a member name (1..{MAX_MEMBER_NAME} of A-Z a-z 0-9 _)"
        ));
    }
    Ok(s.to_string())
}

/// A Linux interface name (IFNAMSIZ 16 with the NUL).
fn parse_interface_name(s: &str) -> Result<String, String> {
    let ok = (1..=15).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        && s != "."
        && s != "..";
    if !ok {
        return Err(format!(
            "'{s}' is not an interface name (1..15 of A-Z a-z 0-9 _ . -)"
        ));
    }
    Ok(s.to_string())
}

fn parse_absolute_path(s: &str) -> Result<PathBuf, String> {
    if !s.starts_with('/') {
        return Err(format!("'{s}' is not an absolute path"));
    }
    Ok(PathBuf::from(s))
}

fn parse_socket_path(s: &str) -> Result<PathBuf, String> {
    let path = parse_absolute_path(s)?;
    if s.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "'{s}' is too long for a unix socket (at most {MAX_SOCKET_PATH} bytes)"
        ));
    }
    Ok(path)
}

fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    match s {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err(format!(
            "'{s}' is not a log level (error, warn, info, debug, trace)"
        )),
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and `-` (not
/// at either end), at most 63 each and 253 in all, one trailing dot allowed.
/// The last label is not all digits (that would be a mistyped IPv4 address).
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels_ok = host.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let last_numeric = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()));
    labels_ok && !last_numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY2: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const KEY3: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

    fn file() -> &'static Path {
        Path::new("/etc/config/meshd")
    }

    fn ok(text: &str) -> Config {
        match Config::parse(text, file()) {
            Ok(c) => c,
            Err(errors) => panic!("{}", display(&errors)),
        }
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match Config::parse(text, file()) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(errors) => errors,
        }
    }

    fn display(errors: &[ConfigError]) -> String {
        errors
            .iter()
            .map(|e| format!("{e}\n"))
            .collect::<Vec<_>>()
            .concat()
    }

    fn prefix(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    /// The sample file in this module's doc: each `config` line's type with
    /// its `option`/`list` lines, each with the comment that follows it
    /// (its continuation lines included).
    fn documented_options() -> Vec<(String, Vec<(String, String)>)> {
        let mut in_sample = false;
        let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for line in include_str!("config.rs")
            .lines()
            .take_while(|l| l.starts_with("//!"))
        {
            let text = line.trim_start_matches("//!").trim();
            if text.starts_with("```") {
                in_sample = !in_sample;
                continue;
            }
            let comment = text.split_once('#').map_or("", |(_, c)| c);
            match text.split_whitespace().collect::<Vec<_>>().as_slice() {
                _ if !in_sample => {}
                ["config", stype, ..] => sections.push((stype.to_string(), Vec::new())),
                ["option" | "list", name, ..] => {
                    let (_, options) = sections.last_mut().expect("a config line first");
                    options.push((name.to_string(), comment.to_string()));
                }
                _ => {
                    if let Some((_, option)) = sections.last_mut().and_then(|s| s.1.last_mut()) {
                        option.push_str(comment);
                    }
                }
            }
        }
        sections
    }

    #[test]
    fn the_module_doc_shows_every_option_the_parser_knows_with_its_default() {
        let doc = documented_options();
        let types: Vec<&str> = doc.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, ["meshd", "member"]);
        for ((stype, documented), known) in doc.iter().zip([MAIN_OPTIONS, MEMBER_OPTIONS]) {
            let names: Vec<&str> = documented.iter().map(|(n, _)| n.as_str()).collect();
            for name in known {
                assert_eq!(
                    names.iter().filter(|n| *n == name).count(),
                    1,
                    "config {stype}: option '{name}' should be in config.rs's module doc once"
                );
            }
            for (name, comment) in documented {
                assert!(
                    known.contains(&name.as_str()),
                    "config {stype}: config.rs's module doc shows '{name}', which the parser does not know"
                );
                assert!(
                    comment.contains("default") || comment.contains("required"),
                    "config {stype}: the doc of option '{name}' says neither its default nor that it is required: {comment:?}"
                );
            }
        }
    }

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/uci")
            .join(name);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const MAIN: &str = "config meshd 'main'\n\toption overlay '10.0.0.1'\n\toption asn '65001'\n";

    #[test]
    fn a_full_config_reads_to_the_expected_values() {
        let text = format!(
            "# meshd, Alice's home
config meshd 'main'
\toption enabled 'yes'
\toption private_key_file '/etc/meshd/key'
\toption listen_port '51821'
\toption overlay '10.0.0.1'
\toption overlay6 'fd00::1'
\toption asn '65001'
\tlist announce '192.168.1.0/24'
\tlist announce 'fd00:1::/64'
\toption hold_time '30'
\toption connect_retry '5'
\toption keepalive '0'
\toption max_paths '4'
\toption max_members '24'
\toption tun 'mesh.0'
\toption control_socket '/tmp/meshd.sock'
\toption log_level 'debug'
\toption bfd_interval '20'
\toption bfd_multiplier '5'
\toption bfd_max_detection '300'
\toption bfd_hold_down '4'
\toption bfd_confirm '1500'
\toption redundancy '0'
\toption exit '1'
\toption exit_ports '40000-40999'
\toption exit_mappings '64'
\toption exit_timeout '600'
\toption consoles 'off'
\tlist console '00:04:1F:aa:bb:cc'
\tlist console '192.168.1.50'
\toption exit_all '1'
\toption lan_interface 'lan'
\tlist discovery_port '9302'
\tlist discovery_port '3074'
\toption discovery_ssdp '0'
\toption discovery_mdns 'on'

config member 'r2'
\toption public_key '{KEY2}'
\toption overlay '10.0.0.2'
\toption overlay6 'fd00::2'
\toption asn '65002'
\tlist prefix '192.168.2.0/24'
\tlist endpoint '198.51.100.2:51820'
\tlist endpoint '[2001:db8::2]:51820'
\tlist endpoint 'bob.example.net:51821'
\toption keepalive '0'
\toption hold_time '3'
\toption bfd '0'
\toption exit 'yes'
\toption vouch '1'

config member
\toption name 'r3'
\toption enabled '0'
\toption public_key '{KEY3}'
\toption overlay '10.0.0.3'
\toption asn '4200000003'
\toption prefix '192.168.3.0/24 10.3.0.0/16'
\toption bfd_interval '50'
\toption inviter '0'
\toption via 'r2'
\toption removed '1'
"
        );
        let c = ok(&text);
        assert_eq!(
            c.main,
            MainConfig {
                enabled: true,
                private_key_file: PathBuf::from("/etc/meshd/key"),
                listen_port: 51821,
                overlay: Ipv4Addr::new(10, 0, 0, 1),
                overlay6: Some("fd00::1".parse().unwrap()),
                asn: 65001,
                from_key: FromKey::default(),
                lan_alias: LanAlias::Auto,
                lan_map: None,
                line: 2,
                announce: vec![prefix("192.168.1.0/24"), prefix("fd00:1::/64")],
                hold_time: 30,
                connect_retry: Duration::from_secs(5),
                keepalive: None,
                max_paths: 4,
                max_members: 24,
                tun: "mesh.0".into(),
                control_socket: PathBuf::from("/tmp/meshd.sock"),
                log_level: log::LevelFilter::Debug,
                bfd: Some(BfdTimers {
                    interval_ms: 20,
                    multiplier: 5,
                    max_detection_ms: 300,
                }),
                bfd_max_detection_ms: 300,
                bfd_hold_down: Duration::from_secs(4),
                bfd_confirm: Duration::from_millis(1500),
                redundancy_max_size: None,
                relay_rate_kbit: Some(DEFAULT_RELAY_RATE_KBIT),
                exit: true,
                exit_ports: Some((40000, 40999)),
                exit_mappings: 64,
                exit_timeout: Duration::from_secs(600),
                consoles_auto: false,
                consoles: vec![
                    "00:04:1f:aa:bb:cc".parse().unwrap(),
                    "192.168.1.50".parse().unwrap()
                ],
                exit_all: true,
                lan_interface: "lan".into(),
                discovery: Some(
                    mesh_core::discovery::Policy::new(&[9302, 3074], false, true).unwrap()
                ),
            }
        );
        assert_eq!(
            c.members,
            [
                MemberEntry {
                    name: "r2".into(),
                    enabled: true,
                    public_key: KEY2.parse().unwrap(),
                    overlay: Ipv4Addr::new(10, 0, 0, 2),
                    overlay6: Some("fd00::2".parse().unwrap()),
                    asn: 65002,
                    prefixes: vec![prefix("192.168.2.0/24")],
                    endpoints: vec![
                        Endpoint::Addr("198.51.100.2:51820".parse().unwrap()),
                        Endpoint::Addr("[2001:db8::2]:51820".parse().unwrap()),
                        Endpoint::Name("bob.example.net".into(), 51821),
                    ],
                    keepalive: Some(0),
                    hold_time: Some(3),
                    bfd: Some(false),
                    bfd_interval_ms: None,
                    bfd_multiplier: None,
                    exit: true,
                    inviter: true,
                    vouch: true,
                    via: None,
                    removed: false,
                },
                MemberEntry {
                    name: "r3".into(),
                    enabled: false,
                    public_key: KEY3.parse().unwrap(),
                    overlay: Ipv4Addr::new(10, 0, 0, 3),
                    overlay6: None,
                    asn: 4_200_000_003,
                    prefixes: vec![prefix("192.168.3.0/24"), prefix("10.3.0.0/16")],
                    endpoints: vec![],
                    keepalive: None,
                    hold_time: None,
                    bfd: None,
                    bfd_interval_ms: Some(50),
                    bfd_multiplier: None,
                    exit: false,
                    inviter: false,
                    vouch: false,
                    via: Some("r2".into()),
                    removed: true,
                },
            ]
        );
        assert_eq!(c.members[0].bfd_setting(&c.main), BfdSetting::Off);
        assert_eq!(
            c.members[1].bfd_setting(&c.main),
            BfdSetting::On(mesh_core::bfd::Config {
                desired_min_tx: Duration::from_millis(50),
                required_min_rx: Duration::from_millis(50),
                detect_mult: 5,
                // main's bound
                max_detection: Duration::from_millis(300),
            })
        );
        assert!(c.warnings.is_empty(), "{}", display(&c.warnings));
        assert_eq!(c.enabled_members().count(), 1);
        assert_eq!(c.member("r3").map(|m| m.enabled), Some(false));
    }

    #[test]
    fn numbers_left_out_are_derived_from_the_keys() {
        let text = format!(
            "config meshd 'main'\n\toption private_key_file '/k'\n\n\
             config member 'r2'\n\toption public_key '{KEY2}'\n\n\
             config member 'r3'\n\toption public_key '{KEY3}'\n\toption overlay '10.0.0.3'\n\toption asn '65003'\n"
        );
        let mut c = ok(&text);
        // A member's, at once; this router's wait for its key.
        let k2: Key = KEY2.parse().unwrap();
        let r2 = &c.members[0];
        assert_eq!(r2.overlay, identity::overlay_v4(&k2));
        assert_eq!(r2.overlay6, Some(identity::overlay_v6(&k2)));
        assert_eq!(r2.asn, identity::asn(&k2));
        assert!(r2.overlay.octets()[..2] == [198, 18] || r2.overlay.octets()[..2] == [198, 19]);
        // Explicit numbers win, and no IPv6 overlay is made up beside them.
        let r3 = &c.members[1];
        assert_eq!(
            (r3.overlay, r3.overlay6, r3.asn),
            ("10.0.0.3".parse().unwrap(), None, 65003)
        );
        assert_eq!(
            c.main.from_key,
            FromKey {
                overlay: true,
                overlay6: true,
                asn: true
            }
        );
        assert_eq!((c.main.overlay, c.main.asn), (Ipv4Addr::UNSPECIFIED, 0));
        let own: Key = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykk="
            .parse()
            .unwrap();
        c.derive_identity(&own, file()).unwrap();
        assert_eq!(c.main.overlay, identity::overlay_v4(&own));
        assert_eq!(c.main.overlay6, Some(identity::overlay_v6(&own)));
        assert_eq!(c.main.asn, identity::asn(&own));
        let node = c.main.node_config(Key([1; 32]), 0);
        assert_eq!((node.overlay, node.asn), (c.main.overlay, c.main.asn));
    }

    #[test]
    fn a_derived_number_that_collides_is_refused_with_what_to_set() {
        // Our key derives the same numbers as member r2's (the same key
        // stands in for a hash collision).
        let k2: Key = KEY2.parse().unwrap();
        let text = format!(
            "config meshd 'main'\n\toption asn '65001'\n\n\
             config member 'r2'\n\toption public_key '{KEY2}'\n"
        );
        let mut c = ok(&text);
        let found = c.derive_identity(&k2, file()).unwrap_err();
        assert_eq!(
            display(&found),
            format!(
                "/etc/config/meshd:1: meshd 'main': option 'overlay': {}, derived from this router's key, is member 'r2''s too: set option overlay here by hand\n\
                 /etc/config/meshd:1: meshd 'main': option 'overlay6': {}, derived from this router's key, is member 'r2''s too: set option overlay6 here by hand\n",
                identity::overlay_v4(&k2),
                identity::overlay_v6(&k2)
            )
        );
        // Between members: the same check as for explicit duplicates.
        let twice = format!(
            "{MAIN}\nconfig member 'r2'\n\toption public_key '{KEY2}'\n\n\
             config member 'r3'\n\toption public_key '{KEY3}'\n\toption overlay '{}'\n",
            identity::overlay_v4(&k2)
        );
        let found = errors(&twice);
        assert_eq!(
            display(&found),
            format!(
                "/etc/config/meshd:10: member 'r3': option 'overlay': {} is the overlay address of member 'r2' (line 5)\n",
                identity::overlay_v4(&k2)
            )
        );
    }

    #[test]
    fn two_members_whose_keys_derive_the_same_lan_alias_are_refused() {
        // Two keys whose aliases collide: found by trying (16,384 aliases).
        let mut seen = std::collections::HashMap::new();
        let (k1, k2) = (0u32..)
            .find_map(|i| {
                let mut b = [7u8; 32];
                b[..4].copy_from_slice(&i.to_le_bytes());
                let k = Key(b);
                seen.insert(identity::lan_alias(&k), k)
                    .map(|other| (other, k))
            })
            .unwrap();
        let text = format!(
            "{MAIN}\nconfig member 'a'\n\toption public_key '{k1}'\n\n\
             config member 'b'\n\toption public_key '{k2}'\n"
        );
        assert_eq!(
            display(&errors(&text)),
            format!(
                "/etc/config/meshd:9: member 'b': option 'public_key': its LAN alias {}/24, derived from its key, is member 'a''s too: one of them must set option lan_alias on its router, listed here as a prefix\n",
                identity::lan_alias(&k1)
            )
        );
    }

    #[test]
    fn defaults_apply() {
        let c = ok(&format!(
            "{MAIN}\nconfig member 'r2'\n\toption public_key '{KEY2}'\n\toption overlay '10.0.0.2'\n\toption asn '65002'\n"
        ));
        let m = &c.main;
        assert!(m.enabled);
        assert_eq!(m.private_key_file, Path::new("/etc/meshd/private.key"));
        assert_eq!(m.listen_port, 51820);
        assert_eq!(m.overlay6, None);
        assert!(m.announce.is_empty());
        assert_eq!(m.hold_time, 9);
        assert_eq!(m.connect_retry, Duration::from_secs(2));
        assert_eq!(m.keepalive, Some(25));
        assert_eq!(m.max_paths, 1);
        assert_eq!(m.max_members, DEFAULT_MAX_MEMBERS);
        assert_eq!(m.tun, "meshd0");
        assert_eq!(m.control_socket, Path::new("/var/run/meshd.sock"));
        assert_eq!(m.log_level, log::LevelFilter::Info);
        let discovery = m.discovery.as_ref().expect("discovery is on by default");
        assert_eq!(discovery.ports(), [987, 9302, 30000]);
        assert!(discovery.ssdp() && !discovery.mdns());
        let r2 = &c.members[0];
        assert!(r2.enabled);
        assert!(r2.prefixes.is_empty() && r2.endpoints.is_empty());
        assert_eq!(
            (r2.keepalive, r2.hold_time, r2.overlay6),
            (None, None, None)
        );
    }

    #[test]
    fn each_kind_of_error_names_file_line_section_and_option() {
        let member = |extra: &str| {
            format!(
                "{MAIN}config member 'r2'\n\toption public_key '{KEY2}'\n\toption overlay '10.0.0.2'\n\toption asn '65002'\n{extra}"
            )
        };
        // Line 4 is `config member 'r2'`; `extra` starts on line 8.
        let cases: Vec<(String, &str)> = vec![
            (
                member("").replace("'65002'", "'65x02'"),
                "/etc/config/meshd:7: member 'r2': option 'asn': '65x02' is not an AS number (1..4294967294)",
            ),
            (
                member("").replace("'65002'", "'23456'"),
                "/etc/config/meshd:7: member 'r2': option 'asn': '23456' is AS_TRANS (RFC 6793), which is not a usable AS number",
            ),
            (
                member("").replace("'65002'", "'4294967295'"),
                "/etc/config/meshd:7: member 'r2': option 'asn': '4294967295' is not an AS number (1..4294967294)",
            ),
            (
                member("").replace("\toption public_key '{KEY2}'\n".replace("{KEY2}", KEY2).as_str(), ""),
                "/etc/config/meshd:4: member 'r2': missing required option 'public_key'",
            ),
            (
                member("").replace(KEY2, "not-a-key"),
                "/etc/config/meshd:5: member 'r2': option 'public_key': 'not-a-key' is not a WireGuard key (44 characters of base64)",
            ),
            (
                // Would make mesh-core's key parser underflow: caught before.
                member("").replace(KEY2, "AAAA====AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                "/etc/config/meshd:5: member 'r2': option 'public_key': 'AAAA====AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' is not a WireGuard key (44 characters of base64)",
            ),
            (
                member("").replace("'10.0.0.2'", "'10.0.0'"),
                "/etc/config/meshd:6: member 'r2': option 'overlay': '10.0.0' is not a unicast IPv4 address",
            ),
            (
                member("\toption overlay6 'fd00::g'\n"),
                "/etc/config/meshd:8: member 'r2': option 'overlay6': 'fd00::g' is not a unicast IPv6 address",
            ),
            (
                member("\tlist prefix '192.168.2.0/33'\n"),
                "/etc/config/meshd:8: member 'r2': option 'prefix': '192.168.2.0/33' is not an IP prefix (address/length)",
            ),
            (
                member("\tlist prefix '0.0.0.0/0'\n"),
                "/etc/config/meshd:8: member 'r2': option 'prefix': '0.0.0.0/0' is a default route; meshd carries home networks only",
            ),
            (
                member("\tlist endpoint 'bob.example.net'\n"),
                "/etc/config/meshd:8: member 'r2': option 'endpoint': 'bob.example.net' is not an endpoint: the port is missing (host:port)",
            ),
            (
                member("\tlist endpoint '2001:db8::2:51820'\n"),
                "/etc/config/meshd:8: member 'r2': option 'endpoint': '2001:db8::2:51820' is not an endpoint: write IPv6 as [address]:port",
            ),
            (
                member("\tlist endpoint '198.51.100.300:51820'\n"),
                "/etc/config/meshd:8: member 'r2': option 'endpoint': '198.51.100.300:51820' is not an endpoint: '198.51.100.300' is neither an IPv4 address nor a host name",
            ),
            (
                member("\tlist endpoint 'bob.example.net:0'\n"),
                "/etc/config/meshd:8: member 'r2': option 'endpoint': 'bob.example.net:0' is not an endpoint: '0' is not a port (1..65535)",
            ),
            (
                member("\toption hold_time '2'\n"),
                "/etc/config/meshd:8: member 'r2': option 'hold_time': '2' is not a BGP hold time (0 or 3..65535 seconds)",
            ),
            (
                member("\toption keepalive '-1'\n"),
                "/etc/config/meshd:8: member 'r2': option 'keepalive': '-1' is not a keepalive interval (0..65535 seconds, 0 = off)",
            ),
            (
                member("\toption enabled 'maybe'\n"),
                "/etc/config/meshd:8: member 'r2': option 'enabled': 'maybe' is not a boolean (1/0, yes/no, on/off, true/false)",
            ),
            (
                member("\tlist asn '65003'\n"),
                "/etc/config/meshd:7: member 'r2': option 'asn': takes one value: write `option`, not `list`",
            ),
            (
                member("\toption exit 'sometimes'\n"),
                "/etc/config/meshd:8: member 'r2': option 'exit': 'sometimes' is not a boolean (1/0, yes/no, on/off, true/false)",
            ),
            (
                format!("{MAIN}\toption exit_ports '80-90'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'exit_ports': '80-90' is not a port range lo-hi (1024..65535, lo <= hi)",
            ),
            (
                format!("{MAIN}\toption exit_ports '50000-40000'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'exit_ports': '50000-40000' is not a port range lo-hi (1024..65535, lo <= hi)",
            ),
            (
                format!("{MAIN}\toption exit_timeout '60'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'exit_timeout': '60' is out of range (120..3600 seconds)",
            ),
            (
                format!("{MAIN}\toption consoles 'some'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'consoles': 'some' is neither 'auto' nor 'off'",
            ),
            (
                format!("{MAIN}\tlist console '00:04:1f:aa:bb'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'console': '00:04:1f:aa:bb' is not a MAC address (six pairs of hex digits: aa:bb:cc:dd:ee:ff)",
            ),
            (
                member("\toption name 'r9'\n"),
                "/etc/config/meshd:8: member 'r2': option 'name': 'r9' differs from the section name 'r2'",
            ),
            (
                member("").replace("'10.0.0.2'", "'10.0.0.1'"),
                "/etc/config/meshd:6: member 'r2': option 'overlay': 10.0.0.1 is this node's own overlay address",
            ),
            (
                member("").replace("'65002'", "'65001'"),
                "/etc/config/meshd:7: member 'r2': option 'asn': 65001 is this node's own AS number",
            ),
            (
                format!("{MAIN}\toption listen_port '65536'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'listen_port': '65536' is not a port (1..65535)",
            ),
            (
                format!("{MAIN}\toption connect_retry '0'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'connect_retry': '0' is out of range (1..3600 seconds)",
            ),
            (
                format!("{MAIN}\toption max_paths '33'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'max_paths': '33' is out of range (1..32 paths)",
            ),
            (
                format!("{MAIN}\toption max_members '65'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'max_members': '65' is out of range (1..64 members)",
            ),
            (
                format!("{MAIN}\toption tun 'a-very-long-tun0'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'tun': 'a-very-long-tun0' is not an interface name (1..15 of A-Z a-z 0-9 _ . -)",
            ),
            (
                format!("{MAIN}\toption log_level 'loud'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'log_level': 'loud' is not a log level (error, warn, info, debug, trace)",
            ),
            (
                format!("{MAIN}\toption private_key_file 'key'\n"),
                "/etc/config/meshd:4: meshd 'main': option 'private_key_file': 'key' is not an absolute path",
            ),
            (
                format!("{MAIN}\toption control_socket '/{}'\n", "s".repeat(107)),
                "/etc/config/meshd:4: meshd 'main': option 'control_socket': '/sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss' is too long for a unix socket (at most 107 bytes)",
            ),
            (
                format!("{MAIN}config meshd 'other'\n"),
                "/etc/config/meshd:4: meshd 'other': a second 'config meshd' section (the first is on line 1)",
            ),
            (
                "# nothing yet\n".to_string(),
                "/etc/config/meshd: no 'config meshd' section",
            ),
            (
                format!("{MAIN}config member\n\toption asn '65002'\n\toption overlay '10.0.0.2'\n\toption public_key '{KEY2}'\n"),
                "/etc/config/meshd:4: member @member[0]: an anonymous member section needs option 'name'",
            ),
            (
                format!("{MAIN}\toption broken \"unterminated\n"),
                "/etc/config/meshd:4: EOF with unterminated \"",
            ),
        ];
        for (text, expected) in cases {
            let errors = errors(&text);
            assert_eq!(display(&errors), format!("{expected}\n"), "in:\n{text}");
        }
    }

    #[test]
    fn the_error_fields_are_separate() {
        let e = &errors(&format!(
            "{MAIN}config member 'r2'\n\toption public_key '{KEY2}'\n\toption overlay '10.0.0.2'\n\toption asn '65x02'\n"
        ))[0];
        assert_eq!(e.file, Path::new("/etc/config/meshd"));
        assert_eq!(e.line, 7);
        assert_eq!(e.section, "member 'r2'");
        assert_eq!(e.option.as_deref(), Some("asn"));
        assert_eq!(e.message, "'65x02' is not an AS number (1..4294967294)");
    }

    #[test]
    fn all_errors_are_reported_in_file_order() {
        let text = format!(
            "config meshd 'main'
\toption overlay '10.0.0.1'
\toption asn 'x'
config member 'r2'
\toption public_key '{KEY2}'
\toption overlay '10.0.0.2'
\toption asn '65002'
\toption hold_time '1'
config member 'r3'
\toption public_key '{KEY3}'
\toption overlay '10.0.0.2'
\toption asn '65003'
"
        );
        let errors = errors(&text);
        assert_eq!(
            display(&errors),
            "/etc/config/meshd:3: meshd 'main': option 'asn': 'x' is not an AS number (1..4294967294)\n\
             /etc/config/meshd:8: member 'r2': option 'hold_time': '1' is not a BGP hold time (0 or 3..65535 seconds)\n\
             /etc/config/meshd:11: member 'r3': option 'overlay': 10.0.0.2 is the overlay address of member 'r2' (line 6)\n"
        );
    }

    #[test]
    fn members_must_be_unique_but_disabled_ones_may_repeat() {
        let member = |name: &str, enabled: &str, key: &str, overlay: &str, asn: &str| {
            format!(
                "config member\n\toption name '{name}'\n\toption enabled '{enabled}'\n\toption public_key '{key}'\n\toption overlay '{overlay}'\n\toption overlay6 'fd00::2'\n\toption asn '{asn}'\n"
            )
        };
        // An old entry, disabled, beside its replacement: fine.
        let c = ok(&format!(
            "{MAIN}{}{}",
            member("old", "0", KEY2, "10.0.0.2", "65002"),
            member("new", "1", KEY2, "10.0.0.2", "65002"),
        ));
        assert_eq!(c.members.len(), 2);
        assert!(!c.members[0].enabled && c.members[1].enabled);

        let errors = errors(&format!(
            "{MAIN}{}{}",
            member("bob", "1", KEY2, "10.0.0.2", "65002"),
            member("bob", "1", KEY2, "10.0.0.2", "65002"),
        ));
        let messages: Vec<_> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (12, "member name 'bob' is used already (line 5)"),
                (14, "same public key as member 'bob' (line 7)"),
                (
                    15,
                    "10.0.0.2 is the overlay address of member 'bob' (line 8)"
                ),
                (
                    16,
                    "fd00::2 is the overlay address of member 'bob' (line 9)"
                ),
                (17, "65002 is the AS number of member 'bob' (line 10)"),
            ]
        );
    }

    #[test]
    fn room_is_set_aside_for_max_members_or_the_enabled_members_if_more() {
        let members = |n: u8, disabled: u8| -> String {
            (1..=n + disabled)
                .map(|i| {
                    let key = Key([i; 32]);
                    let enabled = if i > n { "\toption enabled '0'\n" } else { "" };
                    format!(
                        "config member 'm{i}'\n\toption public_key '{key}'\n\toption overlay '10.0.1.{i}'\n\toption asn '{}'\n{enabled}",
                        65100 + i as u32
                    )
                })
                .collect()
        };
        assert_eq!(ok(MAIN).member_capacity(), DEFAULT_MAX_MEMBERS);
        let room = |extra: &str, n: u8, disabled: u8| {
            ok(&format!("{MAIN}{extra}{}", members(n, disabled))).member_capacity()
        };
        assert_eq!(room("", 3, 0), 16);
        assert_eq!(room("\toption max_members '4'\n", 3, 0), 4);
        assert_eq!(room("\toption max_members '2'\n", 3, 0), 3);
        // Disabled members take no room.
        assert_eq!(room("\toption max_members '2'\n", 2, 5), 2);
        assert_eq!(room("", 20, 0), 20);
        assert_eq!(room("\toption max_members '64'\n", 1, 0), 64);
        // On reload: a restart only for another max_members or more room.
        let config = |extra: &str, n: u8| ok(&format!("{MAIN}{extra}{}", members(n, 0)));
        let running = config("\toption max_members '4'\n", 3);
        assert!(!config("\toption max_members '4'\n", 4).needs_new_room(&running, 4));
        assert!(!config("\toption max_members '4'\n", 1).needs_new_room(&running, 4));
        assert!(config("\toption max_members '4'\n", 5).needs_new_room(&running, 4));
        assert!(config("\toption max_members '8'\n", 3).needs_new_room(&running, 4));
        assert!(config("", 3).needs_new_room(&running, 4));
        // Room taken from more members than max_members is kept while they are.
        let running = config("\toption max_members '2'\n", 5);
        assert!(!config("\toption max_members '2'\n", 5).needs_new_room(&running, 5));
        assert!(!config("\toption max_members '2'\n", 3).needs_new_room(&running, 5));
        assert!(config("\toption max_members '2'\n", 6).needs_new_room(&running, 5));
    }

    #[test]
    fn limits_of_mesh_core_are_config_errors() {
        let long = "m".repeat(33);
        let prefixes: String = (0..9)
            .map(|i| format!("\tlist prefix '10.{i}.0.0/16'\n"))
            .collect();
        let found = errors(&format!(
            "{MAIN}config member '{long}'\n\toption public_key '{KEY2}'\n\toption overlay '10.0.0.2'\n\toption asn '65002'\n{prefixes}"
        ));
        assert_eq!(
            display(&found),
            format!(
                "/etc/config/meshd:4: member '{long}': member name '{long}' is longer than 32 bytes\n\
                 /etc/config/meshd:8: member '{long}': option 'prefix': too many prefixes (9, at most 8)\n"
            )
        );
        let announce: String = (0..9).map(|i| format!("10.{i}.0.0/16 ")).collect();
        let found = errors(&format!("{MAIN}\toption announce '{announce}'\n"));
        assert_eq!(found[0].message, "too many prefixes (9, at most 8)");
        let ports: String = (1..=9)
            .map(|i| format!("\tlist discovery_port '{i}'\n"))
            .collect();
        let found = errors(&format!("{MAIN}{ports}"));
        assert_eq!(
            display(&found),
            "/etc/config/meshd:4: meshd 'main': option 'discovery_port': too many ports (9, at most 8)\n"
        );
        let found = errors(&format!(
            "{MAIN}\tlist discovery_port '0'\n\toption discovery 'maybe'\n"
        ));
        assert_eq!(
            display(&found),
            "/etc/config/meshd:4: meshd 'main': option 'discovery_port': '0' is not a port (1..65535)\n\
             /etc/config/meshd:5: meshd 'main': option 'discovery': 'maybe' is not a boolean (1/0, yes/no, on/off, true/false)\n"
        );
        let off = ok(&format!("{MAIN}\toption discovery '0'\n"));
        assert_eq!(off.main.discovery, None);
    }

    #[test]
    fn oddities_are_warnings() {
        let c = ok(&format!(
            "{MAIN}\toption colour 'blue'\n\tlist announce '192.168.1.1/24'\nconfig peer 'x'\n"
        ));
        assert_eq!(c.main.announce, [prefix("192.168.1.0/24")]);
        assert_eq!(
            display(&c.warnings),
            "/etc/config/meshd:4: meshd 'main': option 'colour': unknown option, ignored\n\
             /etc/config/meshd:5: meshd 'main': option 'announce': '192.168.1.1/24' has host bits set; meshd uses 192.168.1.0/24\n\
             /etc/config/meshd:6: peer 'x': unknown section type 'peer', ignored\n"
        );
    }

    #[test]
    fn the_written_fixture_is_a_meshd_config_but_for_its_anonymous_member() {
        let text = fixture("written-by-uci.conf");
        assert!(Package::parse(&text).is_ok());
        // The anonymous member has no name (its AS number it takes from its
        // key); the rest is valid (`allowed_prefix`, `description`,
        // `comment` are unknown options: warnings).
        let errors = errors(&text);
        assert_eq!(
            display(&errors),
            "/etc/config/meshd:20: member @member[1]: an anonymous member section needs option 'name'\n"
        );
        // Given those, it reads, with the warnings expected.
        let fixed = text.replace(
            "\tlist endpoint '[2001:db8::2]:51820'\n\nconfig member\n",
            "\tlist endpoint '[2001:db8::2]:51820'\n\nconfig member\n\toption name 'r3'\n\toption asn '4200000003'\n",
        );
        let c = ok(&fixed);
        assert_eq!(c.main.asn, 4_200_000_001);
        assert_eq!(
            c.main.announce,
            [prefix("192.168.1.0/24"), prefix("fd00:1::/64")]
        );
        assert_eq!(
            c.members[0].endpoints,
            [
                Endpoint::Name("bob.example.net".into(), 51820),
                Endpoint::Addr("[2001:db8::2]:51820".parse().unwrap()),
            ]
        );
        assert!(c.members[0].prefixes.is_empty());
        let unknown: Vec<_> = c
            .warnings
            .iter()
            .map(|w| w.option.as_deref().unwrap())
            .collect();
        assert_eq!(unknown, ["description", "allowed_prefix", "comment"]);
    }

    #[test]
    fn the_tricky_fixture_reads_as_uci_but_lacks_required_options() {
        let text = fixture("tricky.conf");
        assert!(Package::parse(&text).is_ok());
        let errors = errors(&text);
        assert_eq!(
            display(&errors),
            "/etc/config/meshd:11: member @member[0]: an anonymous member section needs option 'name'\n\
             /etc/config/meshd:15: member 'named': missing required option 'public_key'\n"
        );
    }

    #[test]
    fn endpoints() {
        let parse = |s: &str| Endpoint::from_str(s);
        assert_eq!(
            parse("198.51.100.2:51820"),
            Ok(Endpoint::Addr("198.51.100.2:51820".parse().unwrap()))
        );
        assert_eq!(
            parse("[2001:db8::2]:1"),
            Ok(Endpoint::Addr("[2001:db8::2]:1".parse().unwrap()))
        );
        assert_eq!(
            parse("home.example.net.:51820"),
            Ok(Endpoint::Name("home.example.net.".into(), 51820))
        );
        assert_eq!(
            parse("router-1:7"),
            Ok(Endpoint::Name("router-1".into(), 7))
        );
        for bad in [
            "",
            ":51820",
            "host:",
            "host:65536",
            "-host:1",
            "a..b:1",
            "[::1]",
            "[::1:1",
            "1.2.3:1",
            "h_st:1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("[2001:db8::2]:51820").unwrap().to_string(),
            "[2001:db8::2]:51820"
        );
        assert_eq!(
            parse("bob.example.net:51820").unwrap().to_string(),
            "bob.example.net:51820"
        );
    }

    #[test]
    fn converts_to_mesh_core_configs() {
        let c = ok(&format!(
            "config meshd 'main'
\toption overlay '10.0.0.1'
\toption overlay6 'fd00::1'
\toption asn '65001'
\tlist announce '192.168.1.0/24'
\toption hold_time '30'
\toption connect_retry '7'
\toption max_paths '2'
\toption keepalive '15'
config member 'r2'
\toption public_key '{KEY2}'
\toption overlay '10.0.0.2'
\toption asn '65002'
\tlist prefix '192.168.2.0/24'
\tlist endpoint '198.51.100.2:51820'
\tlist endpoint 'bob.example.net:51820'
\toption hold_time '3'
"
        ));
        let private: Key = KEY3.parse().unwrap();
        let node = c.main.node_config(private, 42);
        assert_eq!(node.private_key, private);
        assert_eq!(node.overlay, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(node.overlay_v6, Some("fd00::1".parse().unwrap()));
        assert_eq!(node.asn, 65001);
        assert_eq!(node.lan_prefixes.as_slice(), [prefix("192.168.1.0/24")]);
        assert_eq!(node.hold_time, 30);
        assert_eq!(node.connect_retry, Duration::from_secs(7));
        assert_eq!(node.max_paths, 2);
        assert_eq!(node.keepalive, Some(15));
        assert_eq!(node.seed, 42);

        let r2 = &c.members[0];
        assert_eq!(
            r2.endpoint_names().collect::<Vec<_>>(),
            [("bob.example.net", 51820)]
        );
        let literal: SocketAddr = "198.51.100.2:51820".parse().unwrap();
        let resolved: SocketAddr = "203.0.113.7:51820".parse().unwrap();
        let m = r2.member_config(&c.main, &[literal, resolved]);
        assert_eq!(m.name.as_str(), "r2");
        assert_eq!(m.public_key, KEY2.parse().unwrap());
        assert_eq!(m.overlay, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(m.overlay_v6, None);
        assert_eq!(m.asn, 65002);
        assert_eq!(m.prefixes.as_slice(), [prefix("192.168.2.0/24")]);
        assert_eq!(m.endpoints.as_slice(), [literal, resolved]);
        assert_eq!(m.keepalive, None);
        assert_eq!(m.hold_time, Some(3));

        // Many resolved addresses: the first MAX_ENDPOINTS.
        let many: Vec<SocketAddr> = (1..20)
            .map(|i| SocketAddr::from(([192, 0, 2, i], 1)))
            .collect();
        assert_eq!(
            r2.member_config(&c.main, &many).endpoints.len(),
            MAX_ENDPOINTS
        );
    }

    #[test]
    fn member_entries_compare_without_line_numbers() {
        let a = ok(&format!(
            "{MAIN}config member 'r2'\n\toption public_key '{KEY2}'\n\toption overlay '10.0.0.2'\n\toption asn '65002'\n"
        ));
        let b = ok(&format!(
            "# moved down\n\n{MAIN}config member 'r2'\n\toption asn '65002'\n\toption overlay '10.0.0.2'\n\toption public_key '{KEY2}'\n"
        ));
        assert_eq!(a.members, b.members);
        let c = ok(&format!(
            "{MAIN}config member 'r2'\n\toption public_key '{KEY2}'\n\toption overlay '10.0.0.2'\n\toption asn '65002'\n\tlist endpoint 'h.example:1'\n"
        ));
        assert_ne!(a.members, c.members);
    }

    proptest::proptest! {
        /// Whatever the values, checking a file reports, never panics.
        #[test]
        fn odd_values_never_panic(
            values in proptest::collection::vec(
                (
                    proptest::sample::select([MAIN_OPTIONS, MEMBER_OPTIONS].concat()),
                    "[0-9a-fA-F.:/\\[\\]=+ -]{0,50}|[A-Za-z0-9+/=]{43,45}",
                    proptest::bool::ANY,
                    proptest::bool::ANY,
                ),
                0..24,
            )
        ) {
            let mut text = String::new();
            for (option, value, member, list) in values {
                let section = if member { "config member" } else { "config meshd 'main'" };
                let keyword = if list { "list" } else { "option" };
                let value = value.replace('\'', "");
                text.push_str(&format!("{section}\n\t{keyword} {option} '{value}'\n"));
            }
            if let Ok(config) = Config::parse(&text, file()) {
                let _ = config.main.node_config(Key::default(), 0);
                for m in &config.members {
                    let _ = m.member_config(&config.main, &[]);
                }
            }
        }
    }

    #[test]
    fn load_reads_the_file_and_reports_what_is_wrong_with_it() {
        let dir = std::env::temp_dir().join(format!("meshd-config-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("meshd");
        fs::write(&path, MAIN).unwrap();
        assert_eq!(Config::load(&path).unwrap().main.asn, 65001);

        fs::write(&path, b"config meshd 'main'\n\toption x '\xff'\n").unwrap();
        let errors = Config::load(&path).unwrap_err();
        assert_eq!(
            display(&errors),
            format!("{}:2: not UTF-8 text\n", path.display())
        );

        let missing = dir.join("missing");
        let errors = Config::load(&missing).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 0);
        assert!(errors[0]
            .to_string()
            .starts_with(&format!("{}: ", missing.display())));
        fs::remove_dir_all(&dir).unwrap();
    }
}
