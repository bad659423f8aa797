//! Host-side stub so that `firewall` can declare a build-dependency on this
//! crate (which makes cargo rebuild the embedded programs when
//! `firewall-common` changes). The programs themselves are in `main.rs`.
#![no_std]
