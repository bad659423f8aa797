//! TCP connection tracking state machine, after netfilter's
//! `nf_conntrack_proto_tcp.c` (`tcp_conntracks[][][]`, `tcp_valid_flags`,
//! `get_conntrack_index`).
//!
//! We track state transitions exactly as the kernel's table does, but not
//! sequence windows (`tcp_in_window`): every connection behaves as if
//! netfilter's per-connection `BE_LIBERAL` flag were set. See
//! docs/ARCHITECTURE.md for why and what that costs.

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// Conntrack TCP states with netfilter's names and order (`enum
/// tcp_conntrack`), so `tcp_state` values read the same as the kernel's.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
}

impl TcpState {
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// A `match`, not an index into [`Self::ALL`]: a value loaded from a
    /// table is opaque to the verifier, while the range check this compiles
    /// to bounds the later transition-table index.
    pub const fn from_u8(v: u8) -> Option<TcpState> {
        Some(match v {
            0 => TcpState::None,
            1 => TcpState::SynSent,
            2 => TcpState::SynRecv,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Close,
            9 => TcpState::SynSent2,
            _ => return None,
        })
    }

    /// The name `conntrack -L` prints.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }
}

/// Which flag row of the transition table a segment uses
/// (`get_conntrack_index`; first match wins).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpFlagIndex {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

impl TcpFlagIndex {
    pub const ALL: [TcpFlagIndex; 6] = [
        TcpFlagIndex::Syn,
        TcpFlagIndex::SynAck,
        TcpFlagIndex::Fin,
        TcpFlagIndex::Ack,
        TcpFlagIndex::Rst,
        TcpFlagIndex::None,
    ];
}

pub const fn flag_index(flags: u8) -> TcpFlagIndex {
    if flags & TCP_RST != 0 {
        TcpFlagIndex::Rst
    } else if flags & TCP_SYN != 0 {
        if flags & TCP_ACK != 0 {
            TcpFlagIndex::SynAck
        } else {
            TcpFlagIndex::Syn
        }
    } else if flags & TCP_FIN != 0 {
        TcpFlagIndex::Fin
    } else if flags & TCP_ACK != 0 {
        TcpFlagIndex::Ack
    } else {
        TcpFlagIndex::None
    }
}

/// `tcp_valid_flags`: after masking ECE, CWR and PSH, only these
/// combinations are legal. Everything else (bare FIN, SYN|FIN, SYN|RST, NULL,
/// XMAS…) is INVALID.
pub const fn flags_valid(flags: u8) -> bool {
    let f = flags & !(TCP_ECE | TCP_CWR | TCP_PSH);
    matches!(
        f,
        x if x == TCP_SYN
            || x == TCP_SYN | TCP_URG
            || x == TCP_SYN | TCP_ACK
            || x == TCP_RST
            || x == TCP_RST | TCP_ACK
            || x == TCP_FIN | TCP_ACK
            || x == TCP_FIN | TCP_ACK | TCP_URG
            || x == TCP_ACK
            || x == TCP_ACK | TCP_URG
    )
}

/// A cell of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpTransition {
    /// Move to this state.
    To(TcpState),
    /// `sIG`: accept the segment, leave state and timeout alone.
    Ignore,
    /// `sIV`: the segment is INVALID.
    Invalid,
}

use TcpState as S;
use TcpTransition::{Ignore as IG, Invalid as IV};

const SS: TcpTransition = TcpTransition::To(S::SynSent);
const SR: TcpTransition = TcpTransition::To(S::SynRecv);
const ES: TcpTransition = TcpTransition::To(S::Established);
const FW: TcpTransition = TcpTransition::To(S::FinWait);
const CW: TcpTransition = TcpTransition::To(S::CloseWait);
const LA: TcpTransition = TcpTransition::To(S::LastAck);
const TW: TcpTransition = TcpTransition::To(S::TimeWait);
const CL: TcpTransition = TcpTransition::To(S::Close);
const S2: TcpTransition = TcpTransition::To(S::SynSent2);

/// `tcp_conntracks[dir][index][old]`, verbatim from the kernel
/// (columns: NO SS SR ES FW CW LA TW CL S2).
const TABLE: [[[TcpTransition; 10]; 6]; 2] = [
    // ORIGINAL
    [
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY
    [
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

/// Looks up the transition for a segment with `index` flags travelling in
/// direction `reply` (false = the connection's original direction) on a
/// connection in `old`.
#[inline(always)]
pub fn transition(reply: bool, index: TcpFlagIndex, old: TcpState) -> TcpTransition {
    TABLE[reply as usize][index as usize][old as usize]
}

/// What the first segment of an unknown flow does (`tcp_new`): SYN starts a
/// connection, a bare ACK is a loose mid-stream pickup, anything else is
/// "invalid new" and creates nothing.
#[inline(always)]
pub fn new_connection_state(flags: u8) -> Option<TcpState> {
    match transition(false, flag_index(flags), TcpState::None) {
        TcpTransition::To(s) => Some(s),
        _ => None,
    }
}

/// Whether a transition to `new` from `old` in direction `reply` reopens a
/// closed connection (a SYN in TIME_WAIT or CLOSE). netfilter kills the old
/// conntrack and creates a fresh one (`-NF_REPEAT`), so the packet is NEW
/// again and passes through policy.
#[inline(always)]
pub fn is_reopen(old: TcpState, new: TcpState) -> bool {
    new == TcpState::SynSent && matches!(old, TcpState::TimeWait | TcpState::Close)
}

pub mod options;
pub mod track;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_index_priority() {
        assert_eq!(flag_index(TCP_RST | TCP_SYN), TcpFlagIndex::Rst);
        assert_eq!(flag_index(TCP_SYN | TCP_ACK), TcpFlagIndex::SynAck);
        assert_eq!(flag_index(TCP_SYN | TCP_FIN), TcpFlagIndex::Syn);
        assert_eq!(flag_index(TCP_FIN | TCP_ACK), TcpFlagIndex::Fin);
        assert_eq!(flag_index(TCP_ACK | TCP_PSH), TcpFlagIndex::Ack);
        assert_eq!(flag_index(TCP_PSH), TcpFlagIndex::None);
        assert_eq!(flag_index(0), TcpFlagIndex::None);
    }

    #[test]
    fn new_connection_states() {
        assert_eq!(new_connection_state(TCP_SYN), Some(TcpState::SynSent));
        assert_eq!(new_connection_state(TCP_ACK), Some(TcpState::Established));
        assert_eq!(new_connection_state(TCP_SYN | TCP_ACK), None);
        assert_eq!(new_connection_state(TCP_FIN | TCP_ACK), None);
        assert_eq!(new_connection_state(TCP_RST), None);
        assert_eq!(new_connection_state(0), None);
    }

    // The crate is `no_std`; the host test build may still use std.
    extern crate std;
    use std::vec::Vec;

    // ---------------------------------------------------------------------
    // Cross-checks against docs: /work/shared/reference/netfilter-semantics.md
    // sections 1.2 and 1.3. The expected values below are derived from the
    // reference text, not from `TABLE` or the functions under test.
    // ---------------------------------------------------------------------

    /// `tcp_conntracks[dir][index][old]` as printed in the reference
    /// (section 1.2), in its own `sXX` notation. Parsed by `reference_grid`.
    static REFERENCE_GRID: &str = "
ORIGINAL      sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2
/*syn*/     { sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2 },
/*synack*/  { sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR },
/*fin*/     { sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV },
/*ack*/     { sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV },
/*rst*/     { sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL },
/*none*/    { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV }
REPLY
/*syn*/     { sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2 },
/*synack*/  { sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR },
/*fin*/     { sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV },
/*ack*/     { sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG },
/*rst*/     { sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL },
/*none*/    { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV }
";

    /// Reference column order (`sNO sSS ... sS2`) and the state each names.
    const REF_COLUMNS: [(&str, TcpState); 10] = [
        ("sNO", TcpState::None),
        ("sSS", TcpState::SynSent),
        ("sSR", TcpState::SynRecv),
        ("sES", TcpState::Established),
        ("sFW", TcpState::FinWait),
        ("sCW", TcpState::CloseWait),
        ("sLA", TcpState::LastAck),
        ("sTW", TcpState::TimeWait),
        ("sCL", TcpState::Close),
        ("sS2", TcpState::SynSent2),
    ];

    /// Reference row order and the flag index each names.
    const REF_ROWS: [(&str, TcpFlagIndex); 6] = [
        ("syn", TcpFlagIndex::Syn),
        ("synack", TcpFlagIndex::SynAck),
        ("fin", TcpFlagIndex::Fin),
        ("ack", TcpFlagIndex::Ack),
        ("rst", TcpFlagIndex::Rst),
        ("none", TcpFlagIndex::None),
    ];

    fn ref_state(name: &str) -> TcpState {
        REF_COLUMNS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unknown reference state {name:?}"))
            .1
    }

    fn ref_cell(token: &str) -> TcpTransition {
        match token {
            "sIV" => TcpTransition::Invalid,
            "sIG" => TcpTransition::Ignore,
            other => TcpTransition::To(ref_state(other)),
        }
    }

    /// One parsed cell: (direction name, reply, row name, index, column name,
    /// old state, expected transition).
    type GridCell = (
        &'static str,
        bool,
        &'static str,
        TcpFlagIndex,
        &'static str,
        TcpState,
        TcpTransition,
    );

    /// Parses `REFERENCE_GRID` into 120 cells, checking its shape as it goes
    /// (direction headers, column header, row labels and order, 10 cells a
    /// row).
    fn reference_grid() -> Vec<GridCell> {
        let mut cells = Vec::new();
        let mut dir: Option<(&'static str, bool)> = None;
        let mut row_no = 0usize;
        let mut dirs_seen = Vec::new();
        for line in REFERENCE_GRID.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("ORIGINAL") {
                let header: Vec<&str> = rest.split_whitespace().collect();
                let expected: Vec<&str> = REF_COLUMNS.iter().map(|(n, _)| *n).collect();
                assert_eq!(header, expected, "reference column header");
                dir = Some(("ORIGINAL", false));
                dirs_seen.push("ORIGINAL");
                row_no = 0;
                continue;
            }
            if line == "REPLY" {
                assert_eq!(row_no, 6, "ORIGINAL block must have 6 rows");
                dir = Some(("REPLY", true));
                dirs_seen.push("REPLY");
                row_no = 0;
                continue;
            }
            let (dir_name, reply) = dir.expect("row before a direction header");
            let label = line
                .strip_prefix("/*")
                .and_then(|l| l.split_once("*/"))
                .unwrap_or_else(|| panic!("row without /*label*/: {line:?}"));
            let (row_name, body) = (label.0.trim(), label.1);
            let (expected_row_name, index) = REF_ROWS[row_no];
            assert_eq!(row_name, expected_row_name, "{dir_name} row {row_no} label");
            let body = body
                .trim()
                .trim_end_matches(',')
                .trim()
                .strip_prefix('{')
                .and_then(|b| b.strip_suffix('}'))
                .unwrap_or_else(|| panic!("row body not in braces: {line:?}"));
            let tokens: Vec<&'static str> = body.split(',').map(str::trim).collect();
            assert_eq!(tokens.len(), 10, "{dir_name} {row_name}: 10 cells");
            for (col, token) in tokens.into_iter().enumerate() {
                let (col_name, old) = REF_COLUMNS[col];
                cells.push((
                    dir_name,
                    reply,
                    expected_row_name,
                    index,
                    col_name,
                    old,
                    ref_cell(token),
                ));
            }
            row_no += 1;
        }
        assert_eq!(row_no, 6, "REPLY block must have 6 rows");
        assert_eq!(dirs_seen, ["ORIGINAL", "REPLY"]);
        cells
    }

    #[test]
    fn transition_table_matches_reference_in_all_120_cells() {
        let mut visited = 0usize;
        let mut seen = std::collections::HashSet::new();
        for (dir_name, reply, row_name, index, col_name, old, expected) in reference_grid() {
            assert!(
                seen.insert((reply, index as u8, old as u8)),
                "cell {dir_name}/{row_name}/{col_name} listed twice"
            );
            let got = transition(reply, index, old);
            assert_eq!(
                got, expected,
                "tcp_conntracks[{dir_name}][{row_name}][{col_name}]: got {got:?}, reference says {expected:?}"
            );
            visited += 1;
        }
        assert_eq!(visited, 120, "must visit 2 dirs x 6 rows x 10 states");
        // And the grid covers the whole cartesian product of the crate's enums.
        for reply in [false, true] {
            for index in TcpFlagIndex::ALL {
                for old in TcpState::ALL {
                    assert!(
                        seen.contains(&(reply, index as u8, old as u8)),
                        "cell reply={reply} {index:?} {old:?} missing from reference grid"
                    );
                }
            }
        }
    }

    #[test]
    fn reference_column_and_row_order_matches_enum_discriminants() {
        // The reference lists states in `enum tcp_conntrack` order and rows in
        // `get_conntrack_index` order; the Rust enums claim the same values.
        for (i, (name, state)) in REF_COLUMNS.iter().enumerate() {
            assert_eq!(*state as usize, i, "state {name} discriminant");
            assert_eq!(TcpState::from_u8(i as u8), Some(*state), "from_u8({i})");
        }
        assert_eq!(TcpState::from_u8(10), None);
        assert_eq!(TcpState::from_u8(255), None);
        for (i, (name, index)) in REF_ROWS.iter().enumerate() {
            assert_eq!(*index as usize, i, "flag row {name} discriminant");
        }
    }

    #[test]
    fn none_row_is_invalid_in_every_state_and_direction() {
        for reply in [false, true] {
            for old in TcpState::ALL {
                assert_eq!(
                    transition(reply, TcpFlagIndex::None, old),
                    TcpTransition::Invalid,
                    "reply={reply} none/{old:?}"
                );
            }
        }
    }

    /// Reference 1.3: the masked flag combinations `tcp_valid_flags` accepts.
    const REF_VALID_MASKED: [u8; 9] = [
        TCP_SYN,
        TCP_SYN | TCP_URG,
        TCP_SYN | TCP_ACK,
        TCP_RST,
        TCP_RST | TCP_ACK,
        TCP_FIN | TCP_ACK,
        TCP_FIN | TCP_ACK | TCP_URG,
        TCP_ACK,
        TCP_ACK | TCP_URG,
    ];

    #[test]
    fn flags_valid_iff_masked_flags_in_reference_list_for_all_256_bytes() {
        let mask = !(TCP_ECE | TCP_CWR | TCP_PSH);
        let mut valid_count = 0;
        for flags in 0..=255u8 {
            let expected = REF_VALID_MASKED.contains(&(flags & mask));
            assert_eq!(
                flags_valid(flags),
                expected,
                "flags_valid({flags:#04x}) (masked {:#04x})",
                flags & mask
            );
            valid_count += expected as usize;
        }
        // 9 combinations x 8 settings of the ignored ECE/CWR/PSH bits.
        assert_eq!(valid_count, 9 * 8);
    }

    #[test]
    fn flags_valid_rejects_bare_fin_synfin_synrst_null_and_xmas() {
        let cases: [(&str, u8); 5] = [
            ("bare FIN", TCP_FIN),
            ("SYN|FIN", TCP_SYN | TCP_FIN),
            ("SYN|RST", TCP_SYN | TCP_RST),
            ("NULL", 0),
            ("XMAS (FIN|PSH|URG)", TCP_FIN | TCP_PSH | TCP_URG),
        ];
        for (name, flags) in cases {
            assert!(!flags_valid(flags), "{name} ({flags:#04x}) must be invalid");
        }
        // Adding ACK or ignored bits does not rescue SYN|FIN or SYN|RST.
        assert!(!flags_valid(TCP_SYN | TCP_FIN | TCP_ACK));
        assert!(!flags_valid(TCP_SYN | TCP_RST | TCP_ACK));
        assert!(!flags_valid(0xff), "all flags set");
        assert!(!flags_valid(TCP_PSH), "PSH alone masks to NULL");
        assert!(!flags_valid(TCP_URG), "URG alone");
        assert!(!flags_valid(TCP_RST | TCP_URG), "RST|URG is not listed");
        assert!(!flags_valid(TCP_FIN | TCP_URG), "FIN|URG without ACK");
    }

    #[test]
    fn flags_valid_accepts_listed_combinations_and_ignores_ece_cwr_psh() {
        assert!(flags_valid(TCP_SYN | TCP_ECE | TCP_CWR), "ECN-setup SYN");
        assert!(
            flags_valid(TCP_SYN | TCP_ACK | TCP_ECE),
            "ECN-setup SYN/ACK"
        );
        assert!(flags_valid(TCP_ACK | TCP_PSH), "ACK|PSH data segment");
        assert!(flags_valid(TCP_FIN | TCP_ACK | TCP_PSH), "FIN|ACK|PSH");
        assert!(flags_valid(TCP_RST | TCP_ACK), "RST|ACK");
        for masked in REF_VALID_MASKED {
            assert!(flags_valid(masked), "{masked:#04x}");
        }
    }

    /// Reference 1.2 priority rule for `get_conntrack_index`, written out
    /// independently of `flag_index`.
    fn ref_flag_index(flags: u8) -> TcpFlagIndex {
        let has = |bit: u8| flags & bit == bit;
        if has(TCP_RST) {
            return TcpFlagIndex::Rst;
        }
        if has(TCP_SYN) {
            return if has(TCP_ACK) {
                TcpFlagIndex::SynAck
            } else {
                TcpFlagIndex::Syn
            };
        }
        if has(TCP_FIN) {
            return TcpFlagIndex::Fin;
        }
        if has(TCP_ACK) {
            return TcpFlagIndex::Ack;
        }
        TcpFlagIndex::None
    }

    #[test]
    fn flag_index_follows_reference_priority_for_all_256_bytes() {
        let mut counts = [0usize; 6];
        for flags in 0..=255u8 {
            let expected = ref_flag_index(flags);
            assert_eq!(flag_index(flags), expected, "flag_index({flags:#04x})");
            counts[expected as usize] += 1;
        }
        // RST: 128; SYN w/o RST: 64 split 32/32 by ACK; FIN w/o RST,SYN: 32;
        // ACK only of those four: 16; none of the four: 16.
        assert_eq!(counts, [32, 32, 32, 16, 128, 16]);
    }

    #[test]
    fn is_reopen_only_for_syn_sent_from_time_wait_or_close() {
        let mut trues = 0;
        for old in TcpState::ALL {
            for new in TcpState::ALL {
                let expected = new == TcpState::SynSent
                    && (old == TcpState::TimeWait || old == TcpState::Close);
                assert_eq!(is_reopen(old, new), expected, "is_reopen({old:?}, {new:?})");
                trues += expected as usize;
            }
        }
        assert_eq!(trues, 2);
    }

    #[test]
    fn reopen_cells_in_reference_are_syn_in_time_wait_and_close() {
        // Which table cells actually produce a reopen: ORIGINAL syn from
        // TIME_WAIT/CLOSE, and REPLY syn from TIME_WAIT (reference grid).
        let mut reopening = Vec::new();
        for (dir_name, reply, row_name, index, col_name, old, expected) in reference_grid() {
            if let TcpTransition::To(new) = transition(reply, index, old) {
                if is_reopen(old, new) {
                    reopening.push((dir_name, row_name, col_name));
                }
                assert_eq!(TcpTransition::To(new), expected);
            }
        }
        assert_eq!(
            reopening,
            [
                ("ORIGINAL", "syn", "sTW"),
                ("ORIGINAL", "syn", "sCL"),
                ("REPLY", "syn", "sTW"),
            ]
        );
    }

    #[test]
    fn new_connection_state_follows_reference_for_all_256_bytes() {
        // Reference 1.3 `tcp_new`: SYN -> SYN_SENT, ACK -> ESTABLISHED,
        // SYN/ACK, FIN, RST or no flags -> no ct.
        for flags in 0..=255u8 {
            let expected = match ref_flag_index(flags) {
                TcpFlagIndex::Syn => Some(TcpState::SynSent),
                TcpFlagIndex::Ack => Some(TcpState::Established),
                _ => None,
            };
            assert_eq!(
                new_connection_state(flags),
                expected,
                "new_connection_state({flags:#04x})"
            );
        }
    }

    /// Applies a sequence of (reply, flags, expected) segments starting from
    /// `start`, asserting each step's transition; `To` moves the state,
    /// Ignore/Invalid leave it. Returns the final state.
    fn walk(start: TcpState, steps: &[(bool, u8, TcpTransition)]) -> TcpState {
        let mut state = start;
        for (i, &(reply, flags, expected)) in steps.iter().enumerate() {
            assert!(flags_valid(flags), "step {i}: flags {flags:#04x} invalid");
            let got = transition(reply, flag_index(flags), state);
            assert_eq!(
                got,
                expected,
                "step {i}: {} {flags:#04x} in {state:?}",
                if reply { "REPLY" } else { "ORIGINAL" }
            );
            if let TcpTransition::To(next) = got {
                state = next;
            }
        }
        state
    }

    const ORIG: bool = false;
    const REPL: bool = true;
    const fn to(s: TcpState) -> TcpTransition {
        TcpTransition::To(s)
    }

    #[test]
    fn three_way_handshake_reaches_established() {
        assert_eq!(new_connection_state(TCP_SYN), Some(TcpState::SynSent));
        let end = walk(
            TcpState::None,
            &[
                (ORIG, TCP_SYN, to(TcpState::SynSent)),
                (REPL, TCP_SYN | TCP_ACK, to(TcpState::SynRecv)),
                (ORIG, TCP_ACK, to(TcpState::Established)),
                (REPL, TCP_ACK | TCP_PSH, to(TcpState::Established)),
                (ORIG, TCP_ACK | TCP_PSH, to(TcpState::Established)),
            ],
        );
        assert_eq!(end, TcpState::Established);
    }

    #[test]
    fn handshake_retransmissions_and_stray_synack_are_handled() {
        walk(
            TcpState::None,
            &[
                (ORIG, TCP_SYN, to(TcpState::SynSent)),
                // Retransmitted SYN stays in SYN_SENT.
                (ORIG, TCP_SYN, to(TcpState::SynSent)),
                // A reply ACK before the SYN/ACK is ignored.
                (REPL, TCP_ACK, TcpTransition::Ignore),
                // SYN/ACK from the originator is invalid in SYN_SENT.
                (ORIG, TCP_SYN | TCP_ACK, TcpTransition::Invalid),
                (REPL, TCP_SYN | TCP_ACK, to(TcpState::SynRecv)),
                // Retransmitted SYN/ACK is ignored in SYN_RECV.
                (REPL, TCP_SYN | TCP_ACK, TcpTransition::Ignore),
                (ORIG, TCP_ACK, to(TcpState::Established)),
                // Late duplicate SYN/ACK after establishment is ignored.
                (REPL, TCP_SYN | TCP_ACK, TcpTransition::Ignore),
                // Retransmitted SYN is ignored too.
                (ORIG, TCP_SYN, TcpTransition::Ignore),
            ],
        );
    }

    #[test]
    fn originator_closes_first_and_last_ack_reaches_time_wait() {
        let end = walk(
            TcpState::Established,
            &[
                (ORIG, TCP_FIN | TCP_ACK, to(TcpState::FinWait)),
                (REPL, TCP_ACK, to(TcpState::CloseWait)),
                (REPL, TCP_FIN | TCP_ACK, to(TcpState::LastAck)),
                (ORIG, TCP_ACK, to(TcpState::TimeWait)),
                // Retransmitted last ACK / FIN stay in TIME_WAIT.
                (ORIG, TCP_ACK, to(TcpState::TimeWait)),
                (REPL, TCP_FIN | TCP_ACK, to(TcpState::TimeWait)),
            ],
        );
        assert_eq!(end, TcpState::TimeWait);
    }

    #[test]
    fn responder_closes_first_and_last_ack_reaches_time_wait() {
        let end = walk(
            TcpState::Established,
            &[
                (REPL, TCP_FIN | TCP_ACK, to(TcpState::FinWait)),
                (ORIG, TCP_ACK, to(TcpState::CloseWait)),
                (ORIG, TCP_FIN | TCP_ACK, to(TcpState::LastAck)),
                (REPL, TCP_ACK, to(TcpState::TimeWait)),
            ],
        );
        assert_eq!(end, TcpState::TimeWait);
    }

    #[test]
    fn simultaneous_close_fin_from_both_sides_reaches_time_wait() {
        let end = walk(
            TcpState::Established,
            &[
                (ORIG, TCP_FIN | TCP_ACK, to(TcpState::FinWait)),
                (REPL, TCP_FIN | TCP_ACK, to(TcpState::LastAck)),
                (ORIG, TCP_ACK, to(TcpState::TimeWait)),
            ],
        );
        assert_eq!(end, TcpState::TimeWait);
    }

    #[test]
    fn rst_from_established_reaches_close_in_either_direction() {
        for (reply, flags) in [
            (ORIG, TCP_RST),
            (ORIG, TCP_RST | TCP_ACK),
            (REPL, TCP_RST),
            (REPL, TCP_RST | TCP_ACK),
        ] {
            let end = walk(
                TcpState::Established,
                &[(reply, flags, to(TcpState::Close))],
            );
            assert_eq!(end, TcpState::Close);
        }
    }

    #[test]
    fn rst_reaches_close_from_every_state_but_none() {
        for reply in [ORIG, REPL] {
            for old in TcpState::ALL {
                let expected = if old == TcpState::None {
                    TcpTransition::Invalid
                } else {
                    to(TcpState::Close)
                };
                assert_eq!(
                    transition(reply, flag_index(TCP_RST | TCP_ACK), old),
                    expected,
                    "reply={reply} RST in {old:?}"
                );
            }
        }
    }

    #[test]
    fn simultaneous_open_goes_through_syn_sent2() {
        let end = walk(
            TcpState::None,
            &[
                (ORIG, TCP_SYN, to(TcpState::SynSent)),
                // Peer also sends a bare SYN: SYN_SENT2.
                (REPL, TCP_SYN, to(TcpState::SynSent2)),
                // Retransmitted SYNs in SYN_SENT2 stay there.
                (ORIG, TCP_SYN, to(TcpState::SynSent2)),
                (REPL, TCP_SYN, to(TcpState::SynSent2)),
                // Reply ACK in SYN_SENT2 is ignored.
                (REPL, TCP_ACK, TcpTransition::Ignore),
                // Either side's SYN/ACK moves to SYN_RECV.
                (ORIG, TCP_SYN | TCP_ACK, to(TcpState::SynRecv)),
                // A REPLY ACK in SYN_RECV keeps SYN_RECV in the table (the
                // SIMULTANEOUS_OPEN promotion is done by the caller).
                (REPL, TCP_ACK, to(TcpState::SynRecv)),
                (ORIG, TCP_ACK, to(TcpState::Established)),
            ],
        );
        assert_eq!(end, TcpState::Established);
        // The reply side's SYN/ACK also works from SYN_SENT2.
        assert_eq!(
            walk(
                TcpState::SynSent2,
                &[(REPL, TCP_SYN | TCP_ACK, to(TcpState::SynRecv))]
            ),
            TcpState::SynRecv
        );
    }

    #[test]
    fn syn_after_close_or_time_wait_reopens() {
        for old in [TcpState::TimeWait, TcpState::Close] {
            let t = transition(ORIG, flag_index(TCP_SYN), old);
            assert_eq!(t, to(TcpState::SynSent), "ORIGINAL SYN in {old:?}");
            let TcpTransition::To(new) = t else {
                unreachable!()
            };
            assert!(is_reopen(old, new), "{old:?} -> {new:?} reopens");
        }
        // Reference: REPLY SYN reopens from TIME_WAIT but is invalid in CLOSE.
        assert_eq!(
            transition(REPL, flag_index(TCP_SYN), TcpState::TimeWait),
            to(TcpState::SynSent)
        );
        assert_eq!(
            transition(REPL, flag_index(TCP_SYN), TcpState::Close),
            TcpTransition::Invalid
        );
    }

    #[test]
    fn loose_pickup_ack_then_close() {
        assert_eq!(new_connection_state(TCP_ACK), Some(TcpState::Established));
        let end = walk(
            TcpState::None,
            &[
                (ORIG, TCP_ACK, to(TcpState::Established)),
                (REPL, TCP_ACK, to(TcpState::Established)),
                (REPL, TCP_RST, to(TcpState::Close)),
                // Stray ACKs in CLOSE stay in CLOSE.
                (ORIG, TCP_ACK, to(TcpState::Close)),
            ],
        );
        assert_eq!(end, TcpState::Close);
    }
}
