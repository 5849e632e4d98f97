//! The daemon's side of invites (issue 17, part 3; the exchange itself is
//! `mesh_core::invite`, run by the node on the mesh port): making a token
//! for `meshd invite`, starting `meshd join`, and what a join's progress
//! looks like in status.
//!
//! The member sections an invite adds are written by the file thread
//! (`files.rs`) with the UCI editor, like ubus `member_add`: never on the
//! packet loop. A pending invite lives in the running daemon only: a
//! restart of meshd voids it (the safe direction for a one-time secret).

use std::io;
use std::net::{IpAddr, SocketAddr};

use mesh_core::invite::{valid_name, Endpoint, Name, Token, MAX_ENDPOINTS, MAX_NAME};
use mesh_core::node::Node;
use mesh_core::wg::{Crypto, Key};
use mesh_core::Instant;

use crate::json::Json;

/// Octets from the kernel's random source (as `keys.rs` makes keys).
pub fn random<const N: usize>() -> io::Result<[u8; N]> {
    use std::io::Read;
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// This router's name for its friends: its host name, as a member name
/// may be (`[A-Za-z0-9_]`, at most 32; other characters become `_`).
pub fn own_name() -> Name {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    name_from(host.trim())
}

/// `text` as a member name: other characters become `_`; empty: `meshd`.
pub fn name_from(text: &str) -> Name {
    let mut n = Name::new();
    for c in text.chars().take(MAX_NAME) {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        let _ = n.push(c);
    }
    if n.is_empty() {
        let _ = n.push_str("meshd");
    }
    n
}

/// A name for a new member that no member of `taken` has: `name`, else
/// `name` and `_` and the first characters of its key (then a digit).
pub fn unique_name<'t>(
    name: &str,
    key: &Key,
    taken: impl Iterator<Item = &'t str> + Clone,
) -> Name {
    let free = |n: &str| !taken.clone().any(|t| t == n);
    if free(name) {
        return name_from(name);
    }
    let short: String = key
        .to_string()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    let base: String = name.chars().take(MAX_NAME - 9).collect();
    let candidate = format!("{base}_{short}");
    if free(&candidate) {
        return name_from(&candidate);
    }
    (2..100)
        .map(|k| format!("{base}_{short}{k}"))
        .find(|c| free(c))
        .map_or_else(|| name_from(&candidate), |c| name_from(&c))
}

/// The endpoints a token carries when the inviter names none: the public
/// endpoint STUN found (members told us), then this host's own global
/// addresses, with the mesh port.
pub fn default_endpoints(
    public: Option<SocketAddr>,
    host: &[IpAddr],
    port: u16,
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = public.into_iter().collect();
    let mut own: Vec<IpAddr> = host
        .iter()
        .copied()
        .filter(|a| !a.is_loopback() && !a.is_unspecified() && !a.is_multicast())
        .filter(|a| match a {
            IpAddr::V6(v) => (v.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(v) => !v.is_link_local(),
        })
        .collect();
    // Addresses the internet can reach before private ones.
    own.sort_by_key(|a| match a {
        IpAddr::V4(v) => v.is_private() as u8,
        IpAddr::V6(v) => 2 + ((v.segments()[0] & 0xfe00) == 0xfc00) as u8,
    });
    for a in own {
        let e = SocketAddr::new(a, port);
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out.truncate(MAX_ENDPOINTS);
    out
}

/// Parses `24h`, `30m`, `90s`, `2d` or plain seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let (n, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = n.parse().ok()?;
    let k = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    n.checked_mul(k).filter(|&t| t > 0)
}

/// Builds the token for an invite the node holds.
pub fn token(
    own: &Key,
    own_name: Name,
    name: &str,
    endpoints: &[SocketAddr],
    id: [u8; 8],
    secret: [u8; 16],
    expires_unix: u64,
) -> Result<Token, String> {
    if !valid_name(name) {
        return Err(format!(
            "'{name}' is not a member name (1..32 of [A-Za-z0-9_])"
        ));
    }
    if endpoints.is_empty() {
        return Err("no endpoint to put in the token: give one with --endpoint".into());
    }
    Ok(Token {
        inviter: own.0,
        inviter_name: own_name,
        endpoints: endpoints
            .iter()
            .take(MAX_ENDPOINTS)
            .map(|&e| Endpoint::from(e))
            .collect(),
        id,
        secret,
        expires: expires_unix,
        name: name_from(name),
        numbers: None,
    })
}

/// A friend's numbers, as its token or join request carried them, into
/// the member section written for it (none: derived from its key).
pub fn write_numbers(
    m: &mut crate::uci_edit::NewMember,
    numbers: Option<&mesh_core::invite::Numbers>,
) {
    let Some(n) = numbers else { return };
    m.overlay = std::net::Ipv4Addr::from(n.overlay).to_string();
    m.asn = n.asn.to_string();
    m.prefixes = n
        .prefixes
        .iter()
        .map(|(a, len)| format!("{}/{len}", std::net::Ipv4Addr::from(*a)))
        .collect();
}

/// What a token (or our join request) carries of this router's numbers: none when the friend can
/// derive them from its key (overlay and AS left to the key); else the
/// overlay address, the AS and the IPv4 prefixes it announces in the mesh
/// (a mapped LAN as its alias), which the friend's section for it needs.
pub fn numbers(main: &crate::config::MainConfig) -> Option<mesh_core::invite::Numbers> {
    if main.from_key.overlay && main.from_key.asn {
        return None;
    }
    let mut prefixes = heapless::Vec::new();
    for p in &main.announce {
        let IpAddr::V4(a) = p.addr() else { continue };
        let (addr, len) = match main
            .lan_map
            .filter(|m| m.lan.0 == a && m.lan.1 == p.prefix_len())
        {
            Some(m) => (m.alias.0, m.alias.1),
            None => (a, p.prefix_len()),
        };
        if prefixes.push((addr.octets(), len)).is_err() {
            log::warn!(
                "invite: the token carries {} of the prefixes this router announces",
                mesh_core::invite::MAX_PREFIXES
            );
            break;
        }
    }
    Some(mesh_core::invite::Numbers {
        overlay: main.overlay.octets(),
        asn: main.asn,
        prefixes,
    })
}

/// Unix time now, in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where this router's own join stands, for `meshd join` and status.
#[derive(Debug, Clone, Default)]
pub enum JoinProgress {
    #[default]
    None,
    /// Asking the inviter.
    Joining {
        inviter: String,
    },
    /// Accepted; the inviter's member section is being written.
    Writing {
        inviter: String,
    },
    /// Done: the inviter is member `inviter`.
    Joined {
        inviter: String,
    },
    Failed {
        inviter: String,
        reason: String,
    },
}

impl JoinProgress {
    pub fn state(&self) -> &'static str {
        match self {
            JoinProgress::None => "none",
            JoinProgress::Joining { .. } => "joining",
            JoinProgress::Writing { .. } => "writing",
            JoinProgress::Joined { .. } => "joined",
            JoinProgress::Failed { .. } => "failed",
        }
    }

    /// The answer to `join status`: the state, the inviter, and why if
    /// it failed, on one line.
    pub fn line(&self) -> String {
        match self {
            JoinProgress::None => "none\n".into(),
            JoinProgress::Joining { inviter }
            | JoinProgress::Writing { inviter }
            | JoinProgress::Joined { inviter } => format!("{} {inviter}\n", self.state()),
            JoinProgress::Failed { inviter, reason } => format!("failed {inviter} {reason}\n"),
        }
    }
}

/// The `invites` part of status.
pub fn document<C: Crypto>(
    node: &Node<'_, C>,
    join: &JoinProgress,
    bad_tokens: u64,
    now: Instant,
) -> Json {
    let s = node.invites().stats;
    let pending: Vec<Json> = node
        .invites()
        .pending(now)
        .map(|p| {
            Json::obj().with("name", p.name.as_str()).with(
                "expires_in_s",
                p.expires_at.saturating_duration_since(now).as_secs(),
            )
        })
        .collect();
    let mut j = Json::obj().with("state", join.state()).with(
        "inviter",
        match join {
            JoinProgress::None => Json::Null,
            JoinProgress::Joining { inviter }
            | JoinProgress::Writing { inviter }
            | JoinProgress::Joined { inviter }
            | JoinProgress::Failed { inviter, .. } => Json::from(inviter.as_str()),
        },
    );
    if let JoinProgress::Failed { reason, .. } = join {
        j = j.with("reason", reason.as_str());
    }
    Json::obj()
        .with("pending", Json::Arr(pending))
        .with("issued", s.issued)
        .with("joined", s.joined)
        .with("answered_again", s.answered_again)
        .with("refused_expired", s.refused_expired)
        .with("refused_used", s.refused_used)
        .with("refused_bad_mac", s.refused_bad_mac)
        .with("refused_unknown", s.refused_unknown)
        .with("malformed", s.malformed)
        .with("rate_limited", s.rate_limited)
        .with("bad_tokens", bad_tokens)
        .with("outcomes_dropped", node.invite_outcomes_dropped())
        .with("join", j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(86400));
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("2d"), Some(172800));
        for bad in ["", "h", "0", "-1h", "1x", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_from_host_names_and_unique_ones() {
        assert_eq!(name_from("OpenWrt").as_str(), "OpenWrt");
        assert_eq!(name_from("bob-s.router").as_str(), "bob_s_router");
        assert_eq!(name_from("").as_str(), "meshd");
        assert_eq!(name_from(&"x".repeat(40)).len(), 32);
        let key: Key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
            .parse()
            .unwrap();
        let taken = ["OpenWrt", "bob"];
        assert_eq!(
            unique_name("alice", &key, taken.iter().copied()).as_str(),
            "alice"
        );
        let n = unique_name("OpenWrt", &key, taken.iter().copied());
        assert_eq!(n.as_str(), "OpenWrt_xTIBA5");
        assert!(valid_name(&n));
        let taken = ["OpenWrt", "OpenWrt_xTIBA5"];
        assert_eq!(
            unique_name("OpenWrt", &key, taken.iter().copied()).as_str(),
            "OpenWrt_xTIBA52"
        );
    }

    #[test]
    fn endpoints_public_first_then_global_then_private() {
        let host: Vec<IpAddr> = [
            "127.0.0.1",
            "192.168.1.1",
            "fe80::1",
            "2001:db8::5",
            "203.0.113.7",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let public: SocketAddr = "198.51.100.9:4444".parse().unwrap();
        let e = default_endpoints(Some(public), &host, 51820);
        let want: Vec<SocketAddr> = [
            "198.51.100.9:4444",
            "203.0.113.7:51820",
            "192.168.1.1:51820",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(e, want);
        assert_eq!(
            default_endpoints(None, &[], 51820),
            Vec::<SocketAddr>::new()
        );
    }
}
