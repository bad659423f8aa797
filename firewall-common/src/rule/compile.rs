//! Compiles an ordered rule list into the per-field class tables the
//! datapath walks (see the parent module for the layout and why).
//!
//! For each field the rules' conditions are grouped into *signatures*
//! (distinct conjunctions). The field's value space is cut into *regions*
//! where every signature either holds throughout or not at all: the
//! prefixes any rule names (an address's region is its longest matching
//! prefix), the elementary intervals between port-range boundaries, the
//! interfaces named plus "any other". A region's class is the set of
//! signatures that hold there, and its bitmap the union of their rules.
//! Regions with the same set share a class, and classes with the same
//! bitmap share storage.
//!
//! [`Compiled::evaluate`] replays the datapath's walk on the host, so the
//! tables can be property-tested against [`super::model::reference`].

use alloc::{
    collections::{BTreeMap as HashMap, BTreeSet},
    string::String,
    vec,
    vec::Vec,
};
use core::fmt;

use super::{
    AddrClassData, Chain, ClassBits, MAX_ADDR_CLASSES, MAX_BITMAP_WORDS, MAX_CLASSES,
    MAX_IFACE_CLASSES, META_SLOTS, MatchInput, PORT_SLOTS, RuleAction, RuleInfo, RulesetHeader,
    SUMMARY_WORDS, addr_field, addr_prefixlen, field, info_flags, meta_slot,
    model::{Cond, MatchRule, Outcome, Prefix, RejectWith},
    pop_word,
};
use crate::{FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, MAX_RULES};

/// The tables for one bank, laid out as bank 0; the loader offsets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// `generation` is left 0 for the loader to set.
    pub header: RulesetHeader,
    /// `META_SLOTS` classes.
    pub meta: Vec<u32>,
    /// `PORT_SLOTS` classes each, for `SPORT` and `DPORT`.
    pub sport: Vec<u32>,
    pub dport: Vec<u32>,
    /// (field, ifindex, class) for every interface a rule names.
    pub ifaces: Vec<(u8, u32, u32)>,
    /// (addr_field, prefix, class), including a /0 per family and used
    /// field so that a lookup never misses.
    pub addrs: Vec<(u8, Prefix, u32)>,
    pub classes: Vec<ClassBits>,
    pub words: Vec<u64>,
    /// One per rule; `counter` is left 0 for the loader to assign.
    pub infos: Vec<RuleInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    TooManyRules(usize),
    TooManyClasses(usize),
    TooManyWords(usize),
    TooManyPrefixes(usize),
    TooManyInterfaces(usize),
    /// A rule the tables cannot represent (the config layer should have
    /// refused it): its index and why.
    Invalid(usize, String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::TooManyRules(n) => {
                write!(f, "{n} rules exceed the maximum of {MAX_RULES}")
            }
            CompileError::TooManyClasses(n) => write!(
                f,
                "the ruleset needs {n} match classes, more than the {MAX_CLASSES} the tables hold"
            ),
            CompileError::TooManyWords(n) => write!(
                f,
                "the ruleset needs {n} bitmap words, more than the {MAX_BITMAP_WORDS} the tables hold"
            ),
            CompileError::TooManyPrefixes(n) => write!(
                f,
                "the ruleset names {n} address prefixes, more than the {MAX_ADDR_CLASSES} the tables hold"
            ),
            CompileError::TooManyInterfaces(n) => write!(
                f,
                "the ruleset names {n} interface conditions, more than the {MAX_IFACE_CLASSES} the tables hold"
            ),
            CompileError::Invalid(i, why) => write!(f, "rule {}: {why}", i + 1),
        }
    }
}

/// Class storage with sharing of identical bitmaps.
struct Store {
    nwords: usize,
    classes: Vec<ClassBits>,
    words: Vec<u64>,
    by_bitmap: HashMap<Vec<u64>, u32>,
}

impl Store {
    fn add(&mut self, bitmap: Vec<u64>) -> u32 {
        if let Some(&c) = self.by_bitmap.get(&bitmap) {
            return c;
        }
        let offset = self.words.len() as u32;
        let mut summary = [0u64; SUMMARY_WORDS];
        for (w, &v) in bitmap.iter().enumerate() {
            if v != 0 {
                summary[w / 64] |= 1 << (w % 64);
                self.words.push(v);
            }
        }
        let cb = ClassBits::new(summary, offset);
        let id = self.classes.len() as u32;
        self.classes.push(cb);
        self.by_bitmap.insert(bitmap, id);
        id
    }
}

/// The distinct conjunctions of one field, and which rules carry each.
/// Signature 0 is the empty conjunction (always holds).
struct Sigs<T> {
    conds: Vec<Vec<Cond<T>>>,
    rules: Vec<Vec<u64>>,
}

impl<T: Clone + Ord> Sigs<T> {
    fn new<'r>(
        rules: &'r [MatchRule],
        nwords: usize,
        mut of: impl FnMut(&'r MatchRule) -> Option<Vec<Cond<T>>>,
    ) -> Sigs<T> {
        let mut s = Sigs {
            conds: vec![Vec::new()],
            rules: vec![vec![0; nwords]],
        };
        let mut index: HashMap<Vec<Cond<T>>, usize> = HashMap::new();
        index.insert(Vec::new(), 0);
        for (i, r) in rules.iter().enumerate() {
            // None: the rule never holds on this field's lookup (another
            // family's address condition), so it joins no signature.
            let Some(conds) = of(r) else { continue };
            let sig = *index.entry(conds.clone()).or_insert_with(|| {
                s.conds.push(conds);
                s.rules.push(vec![0; nwords]);
                s.conds.len() - 1
            });
            s.rules[sig][i / 64] |= 1 << (i % 64);
        }
        s
    }

    /// `(sig, cond)` pairs, flattened.
    fn cond_ids(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (s, cs) in self.conds.iter().enumerate() {
            for c in 0..cs.len() {
                out.push((s, c));
            }
        }
        out
    }

    /// Signatures with a negated condition: they may hold in a region that
    /// touches none of their conditions.
    fn negative(&self) -> Vec<usize> {
        (0..self.conds.len())
            .filter(|&s| self.conds[s].iter().any(|c| c.negated))
            .collect()
    }

    /// Given which conditions contain the region (`contained[sig][cond]`
    /// is consulted only for touched signatures), the signatures that hold.
    fn holding(
        &self,
        touched: &BTreeSet<usize>,
        neg: &[usize],
        marked: &dyn Fn(usize, usize) -> bool,
    ) -> Vec<u32> {
        let mut cand: BTreeSet<usize> = touched.clone();
        cand.extend(neg.iter().copied());
        cand.insert(0);
        cand.into_iter()
            .filter(|&s| {
                self.conds[s]
                    .iter()
                    .enumerate()
                    .all(|(c, cond)| marked(s, c) != cond.negated)
            })
            .map(|s| s as u32)
            .collect()
    }

    fn bitmap(&self, holding: &[u32], nwords: usize) -> Vec<u64> {
        let mut out = vec![0u64; nwords];
        for &s in holding {
            for (o, w) in out.iter_mut().zip(&self.rules[s as usize]) {
                *o |= w;
            }
        }
        out
    }
}

/// Classes of a field, memoised by holding set.
struct Classifier<'a> {
    store: &'a mut Store,
    by_set: HashMap<Vec<u32>, u32>,
}

impl Classifier<'_> {
    fn class<T: Clone + Ord>(&mut self, sigs: &Sigs<T>, holding: Vec<u32>) -> u32 {
        if let Some(&c) = self.by_set.get(&holding) {
            return c;
        }
        let c = self.store.add(sigs.bitmap(&holding, self.store.nwords));
        self.by_set.insert(holding, c);
        c
    }
}

pub fn compile(rules: &[MatchRule], policy: [u8; 4]) -> Result<Compiled, CompileError> {
    if rules.len() > MAX_RULES as usize {
        return Err(CompileError::TooManyRules(rules.len()));
    }
    for (i, r) in rules.iter().enumerate() {
        validate(i, r)?;
    }
    let nwords = rules.len().div_ceil(64).max(1);
    let mut store = Store {
        nwords,
        classes: Vec::new(),
        words: Vec::new(),
        by_bitmap: HashMap::new(),
    };
    let mut header = RulesetHeader {
        count: rules.len() as u32,
        fields: 1 << field::META,
        policy,
        ..RulesetHeader::default()
    };

    let meta = meta_classes(rules, &mut store);

    let mut ifaces = Vec::new();
    for (f, get) in [
        (
            field::IIF,
            (|r: &MatchRule| &r.iif) as fn(&MatchRule) -> &Vec<Cond<u32>>,
        ),
        (field::OIF, |r: &MatchRule| &r.oif),
    ] {
        if rules.iter().any(|r| !get(r).is_empty()) {
            header.fields |= 1 << f;
        }
        let sigs = Sigs::new(rules, nwords, |r| Some(get(r).clone()));
        let mut cl = Classifier {
            store: &mut store,
            by_set: HashMap::new(),
        };
        let named: BTreeSet<u32> = sigs
            .conds
            .iter()
            .flatten()
            .flat_map(|c| c.any_of.iter().copied())
            .collect();
        let ids = sigs.cond_ids();
        let neg = sigs.negative();
        for &ifindex in &named {
            let touched: BTreeSet<usize> = ids
                .iter()
                .filter(|&&(s, c)| sigs.conds[s][c].any_of.contains(&ifindex))
                .map(|&(s, _)| s)
                .collect();
            let holding = sigs.holding(&touched, &neg, &|s, c| {
                sigs.conds[s][c].any_of.contains(&ifindex)
            });
            ifaces.push((f as u8, ifindex, cl.class(&sigs, holding)));
        }
        let holding = sigs.holding(&BTreeSet::new(), &neg, &|_, _| false);
        header.default_class[f] = cl.class(&sigs, holding);
    }

    let mut addrs = Vec::new();
    for (f, get) in [
        (
            field::SRC,
            (|r: &MatchRule| &r.src) as fn(&MatchRule) -> &Vec<Cond<Prefix>>,
        ),
        (field::DST, |r: &MatchRule| &r.dst),
    ] {
        if !rules.iter().any(|r| !get(r).is_empty()) {
            // Unused: the walk skips the lookup and takes every rule.
            header.default_class[f] = store.add(
                vec![!0u64; nwords]
                    .into_iter()
                    .enumerate()
                    .map(|(w, v)| v & word_mask(rules.len(), w))
                    .collect(),
            );
            continue;
        }
        header.fields |= 1 << f;
        for (family, v6) in [(FAMILY_V4, false), (FAMILY_V6, true)] {
            let sigs = Sigs::new(rules, nwords, |r| {
                let conds = get(r);
                if conds.is_empty() {
                    Some(Vec::new())
                } else if r.family == Some(family) {
                    Some(conds.clone())
                } else {
                    None
                }
            });
            addr_classes(&sigs, addr_field(f, v6), &mut store, &mut addrs);
        }
    }

    let mut sport = vec![0; PORT_SLOTS as usize];
    let mut dport = vec![0; PORT_SLOTS as usize];
    for (f, out) in [(field::SPORT, &mut sport), (field::DPORT, &mut dport)] {
        let sigs = Sigs::new(rules, nwords, |r| {
            Some(if f == field::SPORT {
                r.sport.iter().chain(&r.icmp).cloned().collect()
            } else {
                r.dport.clone()
            })
        });
        if sigs.conds.len() > 1 {
            header.fields |= 1 << f;
        }
        port_classes(&sigs, &mut store, out);
    }

    if addrs.len() > MAX_ADDR_CLASSES as usize {
        return Err(CompileError::TooManyPrefixes(addrs.len()));
    }
    if ifaces.len() > MAX_IFACE_CLASSES as usize {
        return Err(CompileError::TooManyInterfaces(ifaces.len()));
    }
    if store.classes.len() > MAX_CLASSES as usize {
        return Err(CompileError::TooManyClasses(store.classes.len()));
    }
    if store.words.len() > MAX_BITMAP_WORDS as usize {
        return Err(CompileError::TooManyWords(store.words.len()));
    }
    let infos = rules.iter().map(info).collect();
    Ok(Compiled {
        header,
        meta,
        sport,
        dport,
        ifaces,
        addrs,
        classes: store.classes,
        words: store.words,
        infos,
    })
}

/// The bits of word `w` that name one of `n` rules.
fn word_mask(n: usize, w: usize) -> u64 {
    let lo = w * 64;
    if n >= lo + 64 {
        !0
    } else if n <= lo {
        0
    } else {
        (1u64 << (n - lo)) - 1
    }
}

fn validate(i: usize, r: &MatchRule) -> Result<(), CompileError> {
    let bad = |why: &str| Err(CompileError::Invalid(i, why.into()));
    if !(r.src.is_empty() && r.dst.is_empty()) {
        let Some(family) = r.family else {
            return bad("an address condition needs a family");
        };
        let bits = if family == FAMILY_V4 { 32 } else { 128 };
        let too_long = r
            .src
            .iter()
            .chain(&r.dst)
            .flat_map(|c| &c.any_of)
            .any(|p| p.len > bits);
        if too_long {
            return bad("a prefix is longer than its family's addresses");
        }
    }
    if r.tcp_flags.is_some_and(|t| t.comp & !t.mask != 0) {
        // Such a test can never hold; iptables refuses it too.
        return bad("TCP flags to be set lie outside the mask");
    }
    if r.limit.is_some_and(|l| l.interval_ns == 0) {
        return bad("a limit needs a rate");
    }
    if r.action == RuleAction::Reject && r.chain == Chain::Output {
        // The answer would have to be delivered to a local socket from TC
        // egress; netfilter does that, this datapath does not (yet).
        return bad("REJECT is not supported in chain output (use drop)");
    }
    if !r.icmp.is_empty() {
        let icmp_only = r.proto.iter().any(|c| {
            !c.negated
                && c.any_of
                    .iter()
                    .all(|&p| p == IPPROTO_ICMP || p == IPPROTO_ICMPV6)
        });
        if !icmp_only {
            return bad("an ICMP type needs protocol icmp or icmpv6");
        }
    }
    Ok(())
}

/// `META`: chain, family, state and protocol. Protocols no rule names
/// behave alike, so one representative stands for them.
fn meta_classes(rules: &[MatchRule], store: &mut Store) -> Vec<u32> {
    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Sig {
        chain: Chain,
        family: Option<u8>,
        ctstate: u8,
        proto: Vec<Cond<u8>>,
    }
    let nwords = store.nwords;
    let mut index: HashMap<Sig, usize> = HashMap::new();
    let mut sigs: Vec<(Sig, Vec<u64>)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let sig = Sig {
            chain: r.chain,
            family: r.family,
            ctstate: r.ctstate,
            proto: r.proto.clone(),
        };
        let s = *index.entry(sig.clone()).or_insert_with(|| {
            sigs.push((sig, vec![0; nwords]));
            sigs.len() - 1
        });
        sigs[s].1[i / 64] |= 1 << (i % 64);
    }
    let named: BTreeSet<u8> = rules
        .iter()
        .flat_map(|r| r.proto.iter().flat_map(|c| c.any_of.iter().copied()))
        .collect();
    let other = (0..=255u8).find(|p| !named.contains(p));
    let mut by_set: HashMap<Vec<usize>, u32> = HashMap::new();
    let mut out = vec![0u32; META_SLOTS as usize];
    for chain in 0..4u8 {
        for v6 in [false, true] {
            for state in 0..8u8 {
                let mut class_of = |proto: u8| -> u32 {
                    let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
                    let holding: Vec<usize> = sigs
                        .iter()
                        .enumerate()
                        .filter(|(_, (s, _))| {
                            s.chain as u8 == chain
                                && s.family.is_none_or(|f| f == family)
                                && (s.ctstate == 0 || s.ctstate & (1 << state) != 0)
                                && s.proto
                                    .iter()
                                    .all(|c| c.any_of.contains(&proto) != c.negated)
                        })
                        .map(|(i, _)| i)
                        .collect();
                    *by_set.entry(holding.clone()).or_insert_with(|| {
                        let mut bm = vec![0u64; nwords];
                        for s in holding {
                            for (o, w) in bm.iter_mut().zip(&sigs[s].1) {
                                *o |= w;
                            }
                        }
                        store.add(bm)
                    })
                };
                let other_class = other.map(&mut class_of);
                let named_classes: Vec<(u8, u32)> =
                    named.iter().map(|&p| (p, class_of(p))).collect();
                for proto in 0..=255u8 {
                    let c = match named_classes.binary_search_by_key(&proto, |&(p, _)| p) {
                        Ok(i) => named_classes[i].1,
                        // `other` exists whenever some protocol is unnamed.
                        Err(_) => other_class.unwrap_or(0),
                    };
                    out[meta_slot(0, chain, v6, state, proto) as usize] = c;
                }
            }
        }
    }
    out
}

fn addr_classes(
    sigs: &Sigs<Prefix>,
    afield: u8,
    store: &mut Store,
    out: &mut Vec<(u8, Prefix, u32)>,
) {
    let mut by_prefix: HashMap<Prefix, Vec<(usize, usize)>> = HashMap::new();
    for (s, c) in sigs.cond_ids() {
        for p in &sigs.conds[s][c].any_of {
            let e = by_prefix.entry(*p).or_default();
            if !e.contains(&(s, c)) {
                e.push((s, c));
            }
        }
    }
    let lens: BTreeSet<u8> = by_prefix.keys().map(|p| p.len).collect();
    let neg = sigs.negative();
    let mut cl = Classifier {
        store,
        by_set: HashMap::new(),
    };
    let mut regions: Vec<Prefix> = by_prefix.keys().copied().collect();
    regions.sort();
    let root = Prefix {
        addr: [0; 16],
        len: 0,
    };
    if !by_prefix.contains_key(&root) {
        regions.insert(0, root);
    }
    for region in regions {
        let mut marked: BTreeSet<(usize, usize)> = BTreeSet::new();
        for &l in lens.range(..=region.len) {
            if let Some(ids) = by_prefix.get(&Prefix::new(region.addr, l)) {
                marked.extend(ids.iter().copied());
            }
        }
        let touched: BTreeSet<usize> = marked.iter().map(|&(s, _)| s).collect();
        let holding = sigs.holding(&touched, &neg, &|s, c| marked.contains(&(s, c)));
        out.push((afield, region, cl.class(sigs, holding)));
    }
}

fn port_classes(sigs: &Sigs<(u16, u16)>, store: &mut Store, out: &mut [u32]) {
    let mut bounds: BTreeSet<u32> = BTreeSet::new();
    bounds.insert(0);
    for cs in &sigs.conds {
        for c in cs {
            for &(lo, hi) in &c.any_of {
                bounds.insert(lo as u32);
                bounds.insert(hi as u32 + 1);
            }
        }
    }
    bounds.insert(PORT_SLOTS);
    let bounds: Vec<u32> = bounds.into_iter().collect();
    let nint = bounds.len() - 1;
    let mut contained: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nint];
    for (s, c) in sigs.cond_ids() {
        for &(lo, hi) in &sigs.conds[s][c].any_of {
            let a = bounds.binary_search(&(lo as u32)).unwrap_or_else(|i| i);
            let b = bounds.binary_search(&(hi as u32 + 1)).unwrap_or_else(|i| i);
            for iv in contained.iter_mut().take(b).skip(a) {
                if !iv.contains(&(s, c)) {
                    iv.push((s, c));
                }
            }
        }
    }
    let neg = sigs.negative();
    let mut cl = Classifier {
        store,
        by_set: HashMap::new(),
    };
    for (i, marked) in contained.iter().enumerate() {
        let touched: BTreeSet<usize> = marked.iter().map(|&(s, _)| s).collect();
        let holding = sigs.holding(&touched, &neg, &|s, c| marked.contains(&(s, c)));
        let class = cl.class(sigs, holding);
        for slot in &mut out[bounds[i] as usize..bounds[i + 1] as usize] {
            *slot = class;
        }
    }
}

fn info(r: &MatchRule) -> RuleInfo {
    let mut info = RuleInfo {
        action: r.action as u8,
        log_level: r.log_level,
        log_prefix: super::prefix_words(&r.log_prefix),
        ..RuleInfo::default()
    };
    if let Some(t) = r.tcp_flags {
        info.flags |= info_flags::TCP_FLAGS;
        if t.negated {
            info.flags |= info_flags::TCP_FLAGS_NEG;
        }
        info.tcp_mask = t.mask;
        info.tcp_comp = t.comp & t.mask;
    }
    if let Some(l) = r.limit {
        info.flags |= info_flags::LIMIT;
        info.limit_interval_ns = l.interval_ns;
        info.limit_burst_ns = l.interval_ns * (l.burst.max(1) as u64 - 1);
    }
    match r.reject {
        RejectWith::TcpReset => info.flags |= info_flags::REJECT_RST,
        RejectWith::Icmp { v4, v6 } => {
            (info.icmp4_type, info.icmp4_code) = v4;
            (info.icmp6_type, info.icmp6_code) = v6;
        }
    }
    info
}

impl Compiled {
    fn class_of(&self, f: usize, p: &MatchInput) -> u32 {
        let used = self.header.fields & (1 << f) != 0;
        if !used && matches!(f, field::IIF | field::OIF | field::SRC | field::DST) {
            return self.header.default_class[f];
        }
        match f {
            field::META => self.meta[p.meta_slot(0) as usize],
            field::IIF | field::OIF => {
                let ifindex = if f == field::IIF { p.iif } else { p.oif };
                self.ifaces
                    .iter()
                    .find(|&&(ff, i, _)| ff as usize == f && i == ifindex)
                    .map_or(self.header.default_class[f], |&(_, _, c)| c)
            }
            field::SRC | field::DST => {
                let addr = if f == field::SRC { &p.src } else { &p.dst };
                let af = addr_field(f, p.v6);
                self.addrs
                    .iter()
                    .filter(|(ff, q, _)| *ff == af && q.contains(addr))
                    .max_by_key(|(_, q, _)| q.len)
                    .map(|&(_, _, c)| c)
                    .expect("a /0 entry covers every address")
            }
            field::SPORT => self.sport[p.sport as usize],
            _ => self.dport[p.dport as usize],
        }
    }

    /// The datapath's walk, on the host (rate limits count as holding).
    pub fn evaluate(&self, p: &MatchInput) -> Outcome {
        let mut out = Outcome::default();
        // Like the datapath, every field takes part; an unused one's class
        // holds every rule.
        let used: Vec<&ClassBits> = (0..field::COUNT)
            .map(|f| &self.classes[self.class_of(f, p) as usize])
            .collect();
        let mut sum = [!0u64; SUMMARY_WORDS];
        for c in &used {
            for (s, w) in sum.iter_mut().zip(&c.summary) {
                *s &= w;
            }
        }
        while let Some(w) = pop_word(&mut sum) {
            let mut word = !0u64;
            for c in &used {
                word &= self.words[(c.offset + c.rank(w)) as usize];
            }
            while word != 0 {
                let r = w * 64 + word.trailing_zeros();
                word &= word - 1;
                let info = &self.infos[r as usize];
                if !info.residual_ok(p.proto, p.tcp_flags) {
                    continue;
                }
                if info.action == RuleAction::Log as u8 {
                    out.logged.push(r as usize);
                    continue;
                }
                out.decided_by = Some(r as usize);
                return out;
            }
        }
        out
    }

    /// LPM entries for bank `bank`: (prefix length, key data, class).
    pub fn addr_keys(&self, bank: u8) -> impl Iterator<Item = (u32, AddrClassData, u32)> + '_ {
        self.addrs.iter().map(move |&(f, p, c)| {
            (
                addr_prefixlen(p.len),
                AddrClassData {
                    bank,
                    field: f,
                    _pad: [0; 2],
                    addr: p.addr,
                },
                c,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::{CtState, IPPROTO_TCP, IPPROTO_UDP, rule::model::reference, testing::Rng};
    use alloc::vec;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    /// Values are drawn from small pools so rules and packets collide often.
    fn addr(rng: &mut Rng, v6: bool) -> [u8; 16] {
        if v6 {
            let mut a = [0u8; 16];
            a[0] = 0x20;
            a[1] = 0x01;
            a[15] = rng.below(8) as u8;
            a[14] = rng.below(2) as u8;
            a
        } else {
            v4([
                10,
                rng.below(3) as u8,
                rng.below(2) as u8,
                rng.below(8) as u8,
            ])
        }
    }

    fn prefix(rng: &mut Rng, v6: bool) -> Prefix {
        let a = addr(rng, v6);
        let len = if v6 {
            [0, 16, 112, 120, 125, 128][rng.below(6) as usize]
        } else {
            [0, 8, 16, 24, 29, 30, 32][rng.below(7) as usize]
        };
        Prefix::new(a, len)
    }

    fn ports(rng: &mut Rng) -> Cond<(u16, u16)> {
        let n = 1 + rng.below(3) as usize;
        let any_of = (0..n)
            .map(|_| {
                let lo = [0u16, 22, 53, 80, 443, 1024, 8080, 65535][rng.below(8) as usize];
                let hi = if rng.chance(30) {
                    lo.saturating_add(rng.below(2000) as u16)
                } else {
                    lo
                };
                (lo, hi)
            })
            .collect();
        Cond {
            negated: rng.chance(25),
            any_of,
        }
    }

    fn random_rule(rng: &mut Rng) -> MatchRule {
        let chain = Chain::ALL[rng.below(3) as usize];
        let action = [
            RuleAction::Accept,
            RuleAction::Drop,
            RuleAction::Reject,
            RuleAction::Log,
        ][rng.below(4) as usize];
        let action = if chain == Chain::Output && action == RuleAction::Reject {
            RuleAction::Drop
        } else {
            action
        };
        let mut r = MatchRule::new(chain, action);
        let fam = rng.below(3);
        r.family = [None, Some(FAMILY_V4), Some(FAMILY_V6)][fam as usize];
        let v6 = fam == 2;
        let proto_pick = rng.below(5);
        match proto_pick {
            0 => {}
            1 => r.proto.push(Cond::is(IPPROTO_TCP)),
            2 => r.proto.push(Cond::is(IPPROTO_UDP)),
            3 => r.proto.push(Cond::not(IPPROTO_TCP)),
            _ => r
                .proto
                .push(Cond::is(if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP })),
        }
        if fam != 0 {
            for _ in 0..rng.below(3) {
                let n = 1 + rng.below(2) as usize;
                let c = Cond {
                    negated: rng.chance(30),
                    any_of: (0..n).map(|_| prefix(rng, v6)).collect(),
                };
                if rng.chance(50) {
                    r.src.push(c);
                } else {
                    r.dst.push(c);
                }
            }
            if rng.chance(15) {
                // iprange
                let lo = addr(rng, v6);
                let mut hi = lo;
                hi[if v6 { 15 } else { 3 }] = hi[if v6 { 15 } else { 3 }].saturating_add(3);
                let bits = if v6 { 128 } else { 32 };
                r.src.push(Cond {
                    negated: rng.chance(30),
                    any_of: Prefix::cover(lo, hi, bits),
                });
            }
        }
        if matches!(proto_pick, 1 | 2) {
            if rng.chance(50) {
                r.dport.push(ports(rng));
            }
            if rng.chance(25) {
                r.sport.push(ports(rng));
            }
            if rng.chance(10) {
                r.dport.push(ports(rng));
            }
        }
        if proto_pick == 1 && rng.chance(30) {
            r.tcp_flags = Some(crate::rule::model::TcpFlagsSpec {
                mask: 0x17,
                comp: 0x02,
                negated: rng.chance(30),
            });
        }
        if proto_pick == 4 && rng.chance(60) {
            let ty = [0u16, 3, 8, 11][rng.below(4) as usize];
            let range = if rng.chance(50) {
                (ty << 8, ty << 8 | 0xff)
            } else {
                (ty << 8, ty << 8)
            };
            r.icmp.push(Cond {
                negated: rng.chance(25),
                any_of: vec![range],
            });
        }
        for list in [&mut r.iif, &mut r.oif] {
            if rng.chance(25) {
                list.push(Cond {
                    negated: rng.chance(30),
                    any_of: (0..1 + rng.below(2))
                        .map(|_| 1 + rng.below(4) as u32)
                        .collect(),
                });
            }
        }
        if rng.chance(15) {
            r.ctstate = [
                CtState::New.bit(),
                CtState::Related.bit(),
                CtState::New.bit() | CtState::Invalid.bit(),
            ][rng.below(3) as usize];
        }
        r
    }

    fn random_packet(rng: &mut Rng) -> MatchInput {
        let v6 = rng.chance(40);
        let proto = match rng.below(4) {
            0 => IPPROTO_TCP,
            1 => IPPROTO_UDP,
            2 => {
                if v6 {
                    IPPROTO_ICMPV6
                } else {
                    IPPROTO_ICMP
                }
            }
            _ => 47,
        };
        let port = |rng: &mut Rng| {
            [0u16, 22, 23, 53, 80, 443, 1024, 1500, 8080, 9000, 65535][rng.below(11) as usize]
        };
        let (sport, dport) = match proto {
            IPPROTO_TCP | IPPROTO_UDP => (port(rng), port(rng)),
            IPPROTO_ICMP | IPPROTO_ICMPV6 => (
                [0u16, 3, 8, 11][rng.below(4) as usize] << 8 | rng.below(2) as u16,
                0,
            ),
            _ => (0, 0),
        };
        MatchInput {
            chain: rng.below(3) as u8,
            v6,
            state: [CtState::New, CtState::Related, CtState::Invalid][rng.below(3) as usize] as u8,
            proto,
            src: addr(rng, v6),
            dst: addr(rng, v6),
            iif: rng.below(6) as u32,
            oif: rng.below(6) as u32,
            sport,
            dport,
            tcp_flags: [0x02u8, 0x12, 0x10, 0x04, 0x0a][rng.below(5) as usize],
        }
    }

    /// The property: on random rule sets and packets, the tables agree with
    /// the ordered list, including LOG rules met before the decision.
    #[test]
    fn compiled_tables_agree_with_the_ordered_list() {
        let mut rng = Rng::xorshift64(0x9e37_79b9_7f4a_7c15);
        let mut decided = 0;
        for round in 0..300 {
            let n = [1usize, 3, 10, 40, 70, 150][round % 6];
            let rules: Vec<MatchRule> = (0..n).map(|_| random_rule(&mut rng)).collect();
            let c = compile(&rules, [2, 2, 1, 2]).expect("compiles");
            for _ in 0..200 {
                let p = random_packet(&mut rng);
                let want = reference(&rules, &p);
                let got = c.evaluate(&p);
                assert_eq!(got, want, "round {round}, packet {p:?}");
                decided += usize::from(want.decided_by.is_some());
            }
        }
        // The generator must exercise matches, not only misses.
        assert!(decided > 10_000, "only {decided} decided packets");
    }

    #[test]
    fn first_match_and_unused_fields() {
        let mut ssh = MatchRule::new(Chain::Input, RuleAction::Accept);
        ssh.proto.push(Cond::is(IPPROTO_TCP));
        ssh.dport.push(Cond::is((22, 22)));
        let drop_all = MatchRule::new(Chain::Input, RuleAction::Drop);
        let rules = vec![ssh, drop_all];
        let c = compile(&rules, [2, 2, 1, 2]).unwrap();
        assert_eq!(
            c.header.fields,
            1 << field::META | 1 << field::DPORT,
            "only META and DPORT are looked up"
        );
        let p = MatchInput {
            chain: Chain::Input as u8,
            proto: IPPROTO_TCP,
            dport: 22,
            ..MatchInput::default()
        };
        assert_eq!(c.evaluate(&p).decided_by, Some(0));
        assert_eq!(
            c.evaluate(&MatchInput { dport: 80, ..p }).decided_by,
            Some(1)
        );
        let fwd = MatchInput {
            chain: Chain::Forward as u8,
            ..p
        };
        assert_eq!(c.evaluate(&fwd).decided_by, None);
    }

    #[test]
    fn ten_thousand_distinct_rules_keep_tables_small() {
        // Distinct source per rule, a catch-all at the end: each address
        // class holds two rules, so stored words stay near one per class.
        let mut rules: Vec<MatchRule> = (0..10_000u32)
            .map(|i| {
                let mut r = MatchRule::new(Chain::Forward, RuleAction::Drop);
                r.family = Some(FAMILY_V4);
                r.proto.push(Cond::is(IPPROTO_UDP));
                r.src.push(Cond::is(Prefix::new(
                    v4((0x0b00_0000 + i).to_be_bytes()),
                    32,
                )));
                r.dport.push(Cond::is((
                    1000 + (i % 5000) as u16,
                    1000 + (i % 5000) as u16,
                )));
                r
            })
            .collect();
        rules.push(MatchRule::new(Chain::Forward, RuleAction::Accept));
        let c = compile(&rules, [2, 2, 1, 2]).unwrap();
        assert!(c.words.len() < 40_000, "{} words", c.words.len());
        let p = MatchInput {
            chain: Chain::Forward as u8,
            proto: IPPROTO_UDP,
            src: v4([11, 0, 0x13, 0x88]), // rule 5000
            dport: 1000,
            ..MatchInput::default()
        };
        assert_eq!(c.evaluate(&p).decided_by, Some(5000));
        assert_eq!(
            c.evaluate(&MatchInput { dport: 999, ..p }).decided_by,
            Some(10_000)
        );
    }

    #[test]
    fn refuses_what_the_tables_cannot_hold() {
        let mut r = MatchRule::new(Chain::Input, RuleAction::Accept);
        r.src.push(Cond::is(Prefix::new(v4([10, 0, 0, 0]), 8)));
        assert!(matches!(
            compile(&[r.clone()], [0; 4]),
            Err(CompileError::Invalid(0, _))
        ));
        r.family = Some(FAMILY_V4);
        assert!(compile(&[r], [0; 4]).is_ok());
        let mut flags = MatchRule::new(Chain::Input, RuleAction::Accept);
        flags.tcp_flags = Some(crate::rule::model::TcpFlagsSpec {
            mask: 0x02,
            comp: 0x12,
            negated: false,
        });
        assert!(matches!(
            compile(&[flags], [0; 4]),
            Err(CompileError::Invalid(0, _))
        ));
        let mut reject_out = MatchRule::new(Chain::Output, RuleAction::Reject);
        assert!(compile(&[reject_out.clone()], [0; 4]).is_err());
        reject_out.chain = Chain::Input;
        assert!(compile(&[reject_out], [0; 4]).is_ok());
        let mut icmp = MatchRule::new(Chain::Input, RuleAction::Accept);
        icmp.icmp.push(Cond::is((0x0800, 0x08ff)));
        assert!(compile(&[icmp.clone()], [0; 4]).is_err());
        icmp.proto.push(Cond::is(IPPROTO_ICMP));
        assert!(compile(&[icmp], [0; 4]).is_ok());
        let many = vec![MatchRule::new(Chain::Input, RuleAction::Accept); MAX_RULES as usize + 1];
        assert_eq!(
            compile(&many, [0; 4]),
            Err(CompileError::TooManyRules(MAX_RULES as usize + 1))
        );
    }
}
