//! TCP sequence adjustment after a rewrite changed a segment's length
//! (`nf_conntrack_seqadj.c`).

/// TCP sequence number order (`after()` in `include/net/tcp.h`): `a` comes
/// after `b`, modulo 2^32.
#[inline(always)]
pub const fn seq_after(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) < 0
}

/// One direction's sequence correction (`struct nf_ct_seqadj`). Once NAT has
/// changed a segment's length, every later sequence number in that
/// direction, and every acknowledgement in the other, is off by the
/// accumulated difference.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SeqAdj {
    /// Sequence number (sender's, unadjusted) of the last segment whose
    /// length changed.
    pub correction_pos: u32,
    /// Offset for segments at or before `correction_pos`.
    pub offset_before: i32,
    /// Offset for segments after it.
    pub offset_after: i32,
}
const _: () = assert!(core::mem::size_of::<SeqAdj>() == 12);

impl SeqAdj {
    /// No correction recorded: nothing to adjust (`IPS_SEQ_ADJUST` clear).
    pub const fn is_identity(&self) -> bool {
        self.offset_before == 0 && self.offset_after == 0
    }

    /// `nf_ct_seqadj_set`: the segment at `seq` (unadjusted) grew by `delta`
    /// bytes. Recorded only when no correction is pending or the last one is
    /// before `seq`, so rewriting a retransmission again changes nothing.
    /// netfilter keeps one level of history, and so do we: a retransmission
    /// from before the previous correction gets `offset_before` of the
    /// latest one.
    pub fn record(&mut self, seq: u32, delta: i32) {
        if delta == 0 {
            return;
        }
        let Self {
            correction_pos,
            offset_before,
            offset_after,
        } = self;
        if *offset_before == *offset_after || seq_after(seq, *correction_pos) {
            *correction_pos = seq;
            *offset_before = *offset_after;
            *offset_after = offset_after.wrapping_add(delta);
        }
    }

    /// `nf_ct_seq_offset`: the offset for a segment of this direction
    /// starting at `seq` (unadjusted).
    #[inline(always)]
    pub fn offset(&self, seq: u32) -> i32 {
        if seq_after(seq, self.correction_pos) {
            self.offset_after
        } else {
            self.offset_before
        }
    }

    /// `nf_ct_seq_adjust`, the seq half: this direction's sequence number
    /// as the receiver must see it.
    #[inline(always)]
    pub fn adjust_seq(&self, seq: u32) -> u32 {
        seq.wrapping_add(self.offset(seq) as u32)
    }

    /// `nf_ct_seq_adjust`, the ack half. `self` is the OTHER direction's
    /// correction: the ack acknowledges adjusted sequence numbers and must
    /// go back to what their sender counts.
    #[inline(always)]
    pub fn adjust_ack(&self, ack: u32) -> u32 {
        let back = if seq_after(
            ack.wrapping_sub(self.offset_before as u32),
            self.correction_pos,
        ) {
            self.offset_after
        } else {
            self.offset_before
        };
        ack.wrapping_sub(back as u32)
    }

    /// `nf_ct_sack_block_adjust`: a SACK block's start or end edge, adjusted
    /// like an ack. `self` is the OTHER direction's correction.
    #[inline(always)]
    pub fn adjust_sack_edge(&self, edge: u32) -> u32 {
        self.adjust_ack(edge)
    }
}

#[cfg(test)]
mod tests;
