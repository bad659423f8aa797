//! `BPF_MAP_UPDATE_BATCH` for arrays: writing a 65,536-slot port table one
//! syscall per slot takes a tenth of a second; one batch takes a
//! millisecond. aya 0.14 does not wrap the command.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
};

use aya::Pod;

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `values` to slots `first..first + values.len()` of an array map.
pub fn update_array<T: Pod>(fd: &OwnedFd, first: u32, values: &[T]) -> io::Result<()> {
    // The kernel copies each element with `copy_from_user` per key; chunks
    // keep the key buffer small for huge arrays.
    const CHUNK: usize = 1 << 16;
    for (n, chunk) in values.chunks(CHUNK).enumerate() {
        let base = first + (n * CHUNK) as u32;
        let keys: Vec<u32> = (0..chunk.len() as u32).map(|i| base + i).collect();
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at live key and value buffers of `count`
        // elements of the map's key and value sizes.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        if attr.count as usize != chunk.len() {
            return Err(io::Error::other(format!(
                "batch update wrote {} of {} elements",
                attr.count,
                chunk.len()
            )));
        }
    }
    Ok(())
}
