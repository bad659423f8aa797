//! Numbers the datapath and the loader must agree on that are not part of
//! a map layout: tail-call slots. (Map layouts carry size asserts beside
//! their types; counters are declared once in `stats`; map and program
//! names are checked against the object when it is loaded.)

/// Slots of the XDP program array `JUMP_XDP`.
pub mod xdp_jump {
    /// `firewall_xdp_reject`: the answer of a REJECT rule.
    pub const REJECT: u32 = 0;
    /// `firewall_xdp_fastpath`: forwarding an ESTABLISHED packet in XDP.
    pub const FASTPATH: u32 = 1;
    /// `firewall_xdp_admit`: admitting and creating a new connection.
    pub const ADMIT: u32 = 2;
    pub const SLOTS: u32 = 3;
}

/// Slots of the tc program array `JUMP`.
pub mod tc_jump {
    /// `firewall_tc_ftp`: egress of segments of helped connections.
    pub const FTP: u32 = 0;
    /// `firewall_tc_create`: creating a connection the host itself opens.
    pub const CREATE: u32 = 1;
    pub const SLOTS: u32 = 2;
}
