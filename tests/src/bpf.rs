//! What is attached to an interface, asked of the kernel directly.
//!
//! Debian 12's bpftool (7.1) predates tcx and does not list tcx programs in
//! `bpftool net show`, so tcx attachments are counted with `BPF_PROG_QUERY`.

use anyhow::{Context as _, Result, ensure};

use crate::Netns;

// From include/uapi/linux/bpf.h.
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// The `query` member of `union bpf_attr` (kernel 6.6+ layout).
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}
const _: () = assert!(size_of::<ProgQueryAttr>() == 64);

/// Number of programs attached through tcx to `ifname` in `netns`: (ingress, egress).
pub fn attached_tcx_programs(netns: &Netns, ifname: &str) -> Result<(u32, u32)> {
    let name = std::ffi::CString::new(ifname).context("interface name")?;
    netns
        .enter(|| -> Result<(u32, u32)> {
            // SAFETY: `name` is a valid NUL-terminated string.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            ensure!(ifindex != 0, "no interface {ifname}");
            Ok((
                query_tcx(ifindex, BPF_TCX_INGRESS)?,
                query_tcx(ifindex, BPF_TCX_EGRESS)?,
            ))
        })?
        .with_context(|| format!("querying tcx programs on {ifname} in {}", netns.name()))
}

fn query_tcx(ifindex: u32, attach_type: u32) -> Result<u32> {
    let mut attr = ProgQueryAttr {
        target_ifindex: ifindex,
        attach_type,
        ..ProgQueryAttr::default()
    };
    // SAFETY: `attr` is a zeroed, correctly sized bpf_attr prefix; with `prog_ids` null
    // the kernel only writes the counts back into it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &raw mut attr,
            size_of::<ProgQueryAttr>(),
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_PROG_QUERY");
    }
    Ok(attr.prog_cnt)
}

/// Whether `ip -d link show dev IFNAME` reports an XDP program (any mode).
pub fn has_xdp_program(netns: &Netns, ifname: &str) -> Result<bool> {
    let link = netns.ip(&format!("-d link show dev {ifname}"))?;
    Ok(link.contains("xdp"))
}

/// Every XDP and tcx attachment in `netns`, one readable line each (`wan0: xdp`,
/// `lan0: tcx ingress x1`); empty when nothing is attached.
pub fn attachments(netns: &Netns) -> Result<Vec<String>> {
    let links = netns.ip("-j -d link show")?;
    let links: Vec<serde_json::Value> =
        serde_json::from_str(&links).context("parsing `ip -j -d link show`")?;
    let mut found = Vec::new();
    for link in &links {
        let ifname = link["ifname"].as_str().context("link without ifname")?;
        if ifname == "lo" {
            continue;
        }
        if link.get("xdp").is_some() {
            found.push(format!("{ifname}: xdp {}", link["xdp"]));
        }
        let (ingress, egress) = attached_tcx_programs(netns, ifname)?;
        if ingress > 0 {
            found.push(format!("{ifname}: tcx ingress x{ingress}"));
        }
        if egress > 0 {
            found.push(format!("{ifname}: tcx egress x{egress}"));
        }
    }
    Ok(found)
}
