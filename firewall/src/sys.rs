//! Small OS facts the loader needs: privileges, interfaces, bpffs.

use std::{ffi::CString, path::Path};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SysError {
    #[error("this command needs root (CAP_BPF and CAP_NET_ADMIN); run it with sudo")]
    NotRoot,
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("{path} is not on a bpf filesystem; mount one with `mount -t bpf bpf {path}`")]
    NotBpffs { path: String },
    #[error("mounting bpffs at {path}: {source}")]
    Mount {
        path: String,
        source: std::io::Error,
    },
    #[error("creating {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
}

pub fn require_root() -> Result<(), SysError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SysError::NotRoot);
    }
    Ok(())
}

pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// Every interface of the network namespace, by name and ifindex
/// (`if_nameindex(3)`); empty if the list cannot be read.
pub fn interfaces() -> Vec<(String, u32)> {
    // SAFETY: if_nameindex returns an array ending in a zeroed entry, or
    // null; it is read up to that entry and freed once.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name);
            out.push((name.to_string_lossy().into_owned(), (*p).if_index));
            p = p.add(1);
        }
        libc::if_freenameindex(list);
        out
    }
}

pub fn require_interface(name: &str) -> Result<u32, SysError> {
    ifindex(name).ok_or_else(|| SysError::NoSuchInterface(name.to_owned()))
}

/// An IPv6 sysctl of interface `name` (`/proc/sys/net/ipv6/conf/NAME/KEY`),
/// or `None` when it cannot be read (IPv6 disabled).
fn ipv6_conf(name: &str, key: &str) -> Option<i64> {
    let path = Path::new("/proc/sys/net/ipv6/conf").join(name).join(key);
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// What the kernel does with router advertisements and redirects arriving
/// on `name`, as `nd::iface_flags` bits: `accept_ra` 2, or 1 with
/// forwarding off (`ipv6_accept_ra`); `accept_redirects` with forwarding
/// off (a router ignores redirects).
pub fn ipv6_nd_flags(name: &str) -> u8 {
    use firewall_common::nd::iface_flags::{ACCEPT_RA, ACCEPT_REDIRECTS};
    let forwarding = ipv6_conf(name, "forwarding").unwrap_or(0) != 0;
    let mut flags = 0;
    match ipv6_conf(name, "accept_ra") {
        Some(2) => flags |= ACCEPT_RA,
        Some(1) if !forwarding => flags |= ACCEPT_RA,
        _ => {}
    }
    if !forwarding && ipv6_conf(name, "accept_redirects").unwrap_or(0) != 0 {
        flags |= ACCEPT_REDIRECTS;
    }
    flags
}

/// Physical NICs have a `device` link in sysfs; veth, bridges and other
/// virtual devices do not. Used to pick the XDP mode in `auto`.
pub fn is_physical(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("device")
        .exists()
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    st.f_type as i64 == BPF_FS_MAGIC
}

/// Makes sure `pin_dir` can hold pins: it must live on a bpffs. The
/// conventional mount point /sys/fs/bpf is mounted on demand, as libbpf
/// tools do; any other location must already be a bpffs, because silently
/// mounting over a user's directory would hide what was there.
pub fn ensure_bpffs(pin_dir: &Path) -> Result<(), SysError> {
    let sys_bpf = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(sys_bpf) && !is_bpffs(sys_bpf) {
        std::fs::create_dir_all(sys_bpf).map_err(|source| SysError::CreateDir {
            path: sys_bpf.display().to_string(),
            source,
        })?;
        let src = CString::new("bpf").expect("static");
        let target = CString::new("/sys/fs/bpf").expect("static");
        // SAFETY: valid C strings; no data argument.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(SysError::Mount {
                path: "/sys/fs/bpf".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        log::info!("mounted bpffs at /sys/fs/bpf");
    }
    // The pin dir itself may not exist yet: check its closest existing
    // ancestor.
    let mut probe = pin_dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    if !is_bpffs(probe) {
        return Err(SysError::NotBpffs {
            path: probe.display().to_string(),
        });
    }
    std::fs::create_dir_all(pin_dir).map_err(|source| SysError::CreateDir {
        path: pin_dir.display().to_string(),
        source,
    })
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The first IPv4 address of interface `name`, as masquerade uses it.
pub fn ipv4_address(name: &str) -> Option<std::net::Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated per getifaddrs(3).
        let ifname = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if ifname.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family we check.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET {
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    found
}
