//! Interface names as rules match them: exact, or a `+` prefix wildcard.

use std::fmt;

/// An interface name as iptables matches it: exact, or a prefix (`eth+`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub wildcard: bool,
}

impl Iface {
    /// `NAME` or `PREFIX+`; `None` for a lone `+`, which is every
    /// interface.
    pub fn split(s: &str) -> Option<Iface> {
        match s.strip_suffix('+') {
            Some("") => None,
            Some(prefix) => Some(Iface {
                name: prefix.into(),
                wildcard: true,
            }),
            None => Some(Iface {
                name: s.into(),
                wildcard: false,
            }),
        }
    }

    /// The interface names this and `other` both match.
    pub fn meet(&self, other: &Iface) -> Option<Iface> {
        match (self.wildcard, other.wildcard) {
            (false, false) => (self.name == other.name).then(|| self.clone()),
            (true, false) => other.name.starts_with(&self.name).then(|| other.clone()),
            (false, true) => self.name.starts_with(&other.name).then(|| self.clone()),
            (true, true) if self.name.starts_with(&other.name) => Some(self.clone()),
            (true, true) => other.name.starts_with(&self.name).then(|| other.clone()),
        }
    }

    pub fn is_loopback(&self) -> bool {
        !self.wildcard && self.name == "lo"
    }
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, if self.wildcard { "+" } else { "" })
    }
}

/// `-i`/`-o` as iptables reads them: at most IFNAMSIZ - 1 bytes, the `+`
/// included. `None` is `+`, every interface.
pub fn parse_iface(s: &str) -> Result<Option<Iface>, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("interface name {s:?} must be 1-15 bytes"));
    }
    Ok(Iface::split(s))
}

/// Mirrors the kernel's `dev_valid_name`, so a name that could never exist is
/// caught here instead of as a confusing lookup failure at attach time.
pub fn interface_name_problem(name: &str) -> Option<String> {
    let max = libc::IFNAMSIZ - 1;
    if name.is_empty() || name.len() > max {
        return Some(format!("interface name {name:?} must be 1-{max} bytes"));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Some(format!("{name:?} is not a valid interface name"));
    }
    None
}
