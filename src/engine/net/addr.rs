//! The addresses a role binds or connects to (`junos_sync_set_address`): IPv4 and IPv6 literals,
//! an IPv6 scope by interface name or index, and host names, looked up when the role starts;
//! and how addresses are shown (IPv6 in brackets with its scope's name, IPv4-mapped as IPv4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::time::Duration;

use crate::sys;

/// Most addresses a role keeps of a name: the resolver's first, in its order of preference.
pub(crate) const MAX_ADDRS: usize = 8;

/// Longest a start or switchover waits for the resolver: glibc's time for one query to one
/// server (resolv.conf's default `timeout:5`). getaddrinfo cannot be interrupted, so the lookup
/// runs on a thread of its own, and one that has not answered by then is left to finish alone.
pub(crate) const RESOLVE_LIMIT: Duration = Duration::from_secs(5);

/// An IP address and, for IPv6, its scope: an interface index, 0 for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    ip: IpAddr,
    scope: u32,
}

impl Host {
    pub(crate) fn v4(a: Ipv4Addr) -> Host {
        Host { ip: IpAddr::V4(a), scope: 0 }
    }

    /// The host of a socket address, IPv4-mapped IPv6 as IPv4.
    pub(crate) fn of(a: SocketAddr) -> Host {
        match canonical(a) {
            SocketAddr::V4(a) => Host::v4(*a.ip()),
            SocketAddr::V6(a) => Host { ip: IpAddr::V6(*a.ip()), scope: a.scope_id() },
        }
    }

    pub(crate) fn ip(self) -> IpAddr {
        self.ip
    }

    /// The socket address of this host at `port`.
    pub(crate) fn at(self, port: u16) -> SocketAddr {
        match self.ip {
            IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, self.scope)),
        }
    }
}

/// A role's addresses, in the order they are tried; never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hosts {
    list: [Host; MAX_ADDRS],
    len: usize,
}

impl Hosts {
    pub(crate) fn one(h: Host) -> Hosts {
        Hosts { list: [h; MAX_ADDRS], len: 1 }
    }

    /// The first `MAX_ADDRS` distinct hosts of `addrs`, in order; `None` if there are none.
    pub(crate) fn of(addrs: impl IntoIterator<Item = SocketAddr>) -> Option<Hosts> {
        let mut it = addrs.into_iter().map(Host::of);
        let mut hs = Hosts::one(it.next()?);
        for h in it {
            if hs.len == MAX_ADDRS {
                break;
            }
            if !hs.iter().any(|x| x == h) {
                hs.list[hs.len] = h;
                hs.len += 1;
            }
        }
        Some(hs)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Host `i`, counting round (the one after the last is the first).
    pub(crate) fn get(&self, i: usize) -> Host {
        self.list[i % self.len]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Host> + '_ {
        self.list[..self.len].iter().copied()
    }
}

/// An address as the application gave it: checked, not looked up yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Spec {
    Literal(Host),
    /// A host name, looked up when a role takes it (start, switchover).
    Name(String),
}

/// Checks an address the application gave: an IPv4 literal, an IPv6 literal (in brackets or
/// not) with its scope after `%` (an interface name or index that exists here), or a host name.
/// The error says what is wrong, quoting the text escaped.
pub(crate) fn parse(text: &str) -> Result<Spec, String> {
    let bracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    let t = bracketed.unwrap_or(text);
    if t.is_empty() {
        return Err("the address is empty".into());
    }
    let (ip, scope) = match t.split_once('%') {
        Some((ip, s)) => (ip, Some(s)),
        None => (t, None),
    };
    let host = if let (Ok(a), None) = (ip.parse::<Ipv4Addr>(), bracketed) {
        if scope.is_some() {
            return Err(format!("{text:?}: a scope (%interface) belongs to an IPv6 address"));
        }
        Host::v4(a)
    } else if let Ok(a) = ip.parse::<Ipv6Addr>() {
        match (a.to_ipv4_mapped(), scope) {
            (Some(_), Some(_)) => return Err(format!("{text:?}: a scope (%interface) belongs to an IPv6 address")),
            (Some(v4), None) => Host::v4(v4),
            (None, s) => {
                let scope = s.map_or(Ok(0), |s| scope_index(text, s))?;
                if scope == 0 && a.segments()[0] & 0xffc0 == 0xfe80 {
                    return Err(format!("{text:?} is link-local: name its interface too, as in fe80::1%eth0"));
                }
                Host { ip: IpAddr::V6(a), scope }
            }
        }
    } else if bracketed.is_some() || scope.is_some() {
        return Err(format!("{text:?} is not an IPv6 address"));
    } else if is_host_name(t) {
        return Ok(Spec::Name(t.to_owned()));
    } else {
        return Err(format!("{text:?} is neither an IP address nor a host name"));
    };
    if host.ip.is_multicast() || host.ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(format!("{text:?} is not a unicast address (TCP needs one)"));
    }
    Ok(Spec::Literal(host))
}

/// An interface named `s`, or numbered `s`, that exists.
fn scope_index(text: &str, s: &str) -> Result<u32, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(i) if i != 0 && sys::interface_name(i).is_some() => Ok(i),
            _ => Err(format!("{text:?}: there is no interface with index {s}")),
        };
    }
    sys::interface_index(s).ok_or_else(|| format!("{text:?}: there is no interface named {s:?}"))
}

/// A host name as RFC 1123 has them (underscores allowed, a final dot too), whose last label is
/// not all digits (RFC 3696: that is an IPv4 address in a form inet_aton takes, "127.1").
fn is_host_name(t: &str) -> bool {
    let t = t.strip_suffix('.').unwrap_or(t);
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    t.len() <= 253
        && t.split('.').all(label)
        && !t.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

impl Spec {
    /// The addresses this stands for. A name is looked up with the system's resolver
    /// (getaddrinfo) on a thread of its own, waiting at most `limit` for it.
    pub(crate) fn resolve(&self, limit: Duration) -> Result<Hosts, String> {
        let name = match self {
            Spec::Literal(h) => return Ok(Hosts::one(*h)),
            Spec::Name(n) => n.clone(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let n = name.clone();
        let lookup = std::thread::Builder::new()
            .name("junos-sync-dns".into())
            .spawn(move || {
                let _ = tx.send((n.as_str(), 0).to_socket_addrs().map(Iterator::collect::<Vec<_>>));
            })
            .map_err(|e| format!("cannot start looking up {name:?}: {e}"))?;
        match rx.recv_timeout(limit) {
            Ok(r) => {
                let _ = lookup.join();
                let addrs = r.map_err(|e| format!("{name:?} does not resolve: {e}"))?;
                Hosts::of(addrs).ok_or_else(|| format!("{name:?} resolves to no address"))
            }
            Err(_) => Err(format!(
                "{name:?} did not resolve within {} s (the resolver does not answer); not waiting longer",
                limit.as_secs()
            )),
        }
    }
}

/// IPv4-mapped IPv6 (what a dual-stack listener sees of an IPv4 peer) as the IPv4 it is.
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v) => match v.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::V4(SocketAddrV4::new(ip, v.port())),
            None => a,
        },
        a => a,
    }
}

/// `a` for people (logs, the status): `192.0.2.1:7000`, `[2001:db8::1]:7000`,
/// `[fe80::1%eth1]:7000`.
pub(crate) fn show(a: SocketAddr) -> String {
    match canonical(a) {
        SocketAddr::V4(v) => v.to_string(),
        a => format!("[{}]:{}", show_ip(a), a.port()),
    }
}

/// Addresses for people, `show`n and separated by commas.
pub(crate) fn list(addrs: impl Iterator<Item = SocketAddr>) -> String {
    addrs.map(show).collect::<Vec<_>>().join(", ")
}

/// The address of `a` alone, as `show` writes it but without brackets and port. A scope is
/// shown by its interface's name when that name is plain (letters, digits, `.`, `-`, `_`, `@`,
/// `+`: Linux allows any byte but `/`, `:` and spaces in one), else by its index; so this never
/// holds a quote, a backslash or a control character, in a log, in JSON or on a terminal.
pub(crate) fn show_ip(a: SocketAddr) -> String {
    match canonical(a) {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) if v.scope_id() == 0 => v.ip().to_string(),
        SocketAddr::V6(v) => {
            let plain = |n: &String| n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b));
            let scope = sys::interface_name(v.scope_id()).filter(plain).unwrap_or_else(|| v.scope_id().to_string());
            format!("{}%{scope}", v.ip())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(t: &str) -> Host {
        match parse(t) {
            Ok(Spec::Literal(h)) => h,
            other => panic!("{t}: {other:?}"),
        }
    }

    fn err(t: &str) -> String {
        parse(t).expect_err(t)
    }

    #[test]
    fn literals() {
        assert_eq!(lit("192.0.2.1").at(7), "192.0.2.1:7".parse().unwrap());
        assert_eq!(lit("0.0.0.0").ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(lit("::").ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(lit("::1").at(9), "[::1]:9".parse().unwrap());
        assert_eq!(lit("[2001:db8::1]").ip(), "2001:db8::1".parse::<IpAddr>().unwrap());
        // IPv4-mapped is IPv4.
        assert_eq!(lit("::ffff:192.0.2.7"), Host::v4(Ipv4Addr::new(192, 0, 2, 7)));
    }

    #[test]
    fn scopes_name_an_interface_that_exists() {
        let lo = sys::interface_index("lo").expect("a loopback interface named lo");
        let h = lit("fe80::1%lo");
        assert_eq!(h.at(5), SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 5, 0, lo)));
        assert_eq!(lit(&format!("fe80::1%{lo}")), h);
        assert_eq!(lit("[fe80::1%lo]"), h);
        assert!(err("fe80::1").contains("link-local"), "{}", err("fe80::1"));
        assert!(err("fe80::1%jsync-none0").contains("no interface named"));
        assert!(err("fe80::1%4000000000").contains("no interface with index"));
        assert!(err("fe80::1%0").contains("no interface with index"));
        assert!(err("fe80::1%").contains("no interface named"));
        assert!(err("127.0.0.1%lo").contains("IPv6"));
        assert!(err("::ffff:127.0.0.1%lo").contains("IPv6"));
    }

    #[test]
    fn names_and_garbage() {
        assert_eq!(parse("localhost"), Ok(Spec::Name("localhost".into())));
        assert_eq!(parse("db-1.example.com."), Ok(Spec::Name("db-1.example.com.".into())));
        for bad in
            ["", "[]", "[127.0.0.1]", "[db.example]", "a b", "-a.example", "a..b", "127.1", "1.2.3.4.5", "x\n", "a%b"]
        {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse(&"a".repeat(64)).is_err());
        assert!(parse(&["a"; 127].join(".")).is_ok(), "253 characters");
        assert!(parse(&["a"; 128].join(".")).is_err(), "255 characters");
        assert!(err("224.0.0.1").contains("unicast"));
        assert!(err("ff02::1%lo").contains("unicast"));
        assert!(err("a\u{1b}[2J").contains("\\u{1b}"), "escaped in the message: {}", err("a\u{1b}[2J"));
    }

    #[test]
    fn names_resolve_and_nonsense_does_not() {
        let hs = Spec::Name("localhost".into()).resolve(RESOLVE_LIMIT).unwrap();
        assert!(hs.iter().all(|h| h.ip().is_loopback()), "{hs:?}");
        let e = Spec::Name("jsync-no-such-host.invalid".into()).resolve(RESOLVE_LIMIT).unwrap_err();
        assert!(e.contains("jsync-no-such-host.invalid"), "{e}");
        assert_eq!(Spec::Literal(Host::v4(Ipv4Addr::LOCALHOST)).resolve(Duration::ZERO).unwrap().len(), 1);
    }

    #[test]
    fn hosts_keep_order_drop_duplicates_and_count_round() {
        let a: Vec<SocketAddr> =
            ["[::1]:1", "127.0.0.1:1", "[::ffff:127.0.0.1]:2", "[::1]:3"].iter().map(|s| s.parse().unwrap()).collect();
        let hs = Hosts::of(a).unwrap();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs.get(0).ip(), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(hs.get(1).ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(hs.get(2), hs.get(0));
        let many = (1..=20u8).map(|i| SocketAddr::from(([10, 0, 0, i], 0)));
        assert_eq!(Hosts::of(many).unwrap().len(), MAX_ADDRS);
        assert_eq!(Hosts::of(std::iter::empty()), None);
    }

    #[test]
    fn shown_as_people_read_them() {
        let s = |t: &str| show(t.parse().unwrap());
        assert_eq!(s("192.0.2.1:7000"), "192.0.2.1:7000");
        assert_eq!(s("[2001:db8::1]:7000"), "[2001:db8::1]:7000");
        assert_eq!(s("[::ffff:192.0.2.1]:7000"), "192.0.2.1:7000");
        let lo = sys::interface_index("lo").unwrap();
        let ll = SocketAddr::V6(SocketAddrV6::new("fe80::2".parse().unwrap(), 80, 0, lo));
        assert_eq!(show(ll), "[fe80::2%lo]:80");
        assert_eq!(show_ip(ll), "fe80::2%lo");
        let gone = SocketAddr::V6(SocketAddrV6::new("fe80::2".parse().unwrap(), 80, 0, 4_000_000_000));
        assert_eq!(show(gone), "[fe80::2%4000000000]:80");
        assert_eq!(show_ip("[::ffff:10.1.2.3]:1".parse().unwrap()), "10.1.2.3");
    }
}
