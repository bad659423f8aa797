//! `BPF_MAP_UPDATE_BATCH` for arrays: writing a 65,536-slot port table one
//! syscall per slot takes a tenth of a second; one batch takes a
//! millisecond. And `BPF_MAP_LOOKUP_BATCH`, which reads a whole table in a
//! few syscalls (the fuzzer reads the connection table after every packet).
//! aya 0.14 wraps neither command.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd},
};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
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
    let keys: Vec<u32> = (0..values.len() as u32).map(|i| first + i).collect();
    update_keys(fd, &keys, values, 1)
}

/// Writes `values` to the array slots `keys`; `per_key` values per key (the
/// number of possible CPUs for a per-CPU array, whose values must then be
/// 8-byte multiples, as `RuleCounter` is).
pub fn update_keys<T: Pod>(
    fd: &OwnedFd,
    keys: &[u32],
    values: &[T],
    per_key: usize,
) -> io::Result<()> {
    if values.len() != keys.len() * per_key {
        return Err(io::Error::other(format!(
            "batch update of {} keys with {} values ({per_key} per key)",
            keys.len(),
            values.len()
        )));
    }
    // The kernel copies each element with `copy_from_user` per key; chunks
    // keep each call's buffers bounded for huge arrays.
    const CHUNK: usize = 1 << 16;
    for (keys, chunk) in keys.chunks(CHUNK).zip(values.chunks(CHUNK * per_key)) {
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: chunk.as_ptr() as u64,
            count: keys.len() as u32,
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
        if attr.count as usize != keys.len() {
            return Err(io::Error::other(format!(
                "batch update wrote {} of {} elements",
                attr.count,
                keys.len()
            )));
        }
    }
    Ok(())
}

/// Reads every element of the map behind `fd` into `keys` and `values`
/// (sized for `max` elements of `key_size` and `value_size` bytes; for a
/// per-CPU map a value is one 8-byte-aligned value per possible CPU, back
/// to back). Returns the number of elements.
pub fn lookup_all(
    fd: BorrowedFd<'_>,
    (key_size, value_size): (usize, usize),
    keys: &mut [u8],
    values: &mut [u8],
) -> io::Result<usize> {
    let max = keys.len() / key_size;
    // The batch cursor: a bucket index for hash maps, an index for arrays.
    let mut cursor_in = [0u8; 64];
    let mut cursor_out = [0u8; 64];
    let mut read = 0usize;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                cursor_in.as_mut_ptr() as u64
            },
            out_batch: cursor_out.as_mut_ptr() as u64,
            keys: keys[read * key_size..].as_mut_ptr() as u64,
            values: values[read * value_size..].as_mut_ptr() as u64,
            count: (max - read) as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: attr points at live buffers of `count` keys and values of
        // the map's sizes, and at two cursor buffers larger than any cursor.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        read += attr.count as usize;
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOENT) {
                return Ok(read);
            }
            return Err(err);
        }
        if read >= max {
            return Ok(read);
        }
        first = false;
        cursor_in = cursor_out;
    }
}
