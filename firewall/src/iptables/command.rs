//! One command line: its command, selectors, matches and target read into
//! statements, with the checks iptables makes on them.
//!
//! # Supported syntax
//!
//! Commands `-A`, `-I [N]`, `-P`, `-N` (and in dumps `:CHAIN POLICY [p:b]`
//! lines, `[p:b]` rule counters, `COMMIT`, `#` comments); tables `filter` and
//! `nat` (`mangle`, `raw` and `security` only when empty, as iptables-save
//! prints tables that were merely loaded). Selectors `-p`, `-s`/`-d` (CIDR,
//! dotted masks, comma lists expanded like iptables does), `-i`/`-o` (with
//! `+` wildcards), all with `!`. Matches `tcp`/`udp` (`--sport`, `--dport`,
//! `--tcp-flags`, `--syn`; also implicit after `-p`), `multiport`
//! (`--sports`/`--dports`), `conntrack --ctstate`, `state --state`, `icmp
//! --icmp-type` and `icmp6 --icmpv6-type` (names, `TYPE`, `TYPE/CODE`),
//! `iprange`, `limit` and `comment`. Targets ACCEPT, DROP, REJECT
//! (`--reject-with`), LOG (`--log-prefix`, `--log-level`), RETURN, jumps to
//! user chains, a rule without `-j`, and in `nat` MASQUERADE (`--to-ports`),
//! SNAT (`--to-source`) and DNAT (`--to-destination`).
//!
//! Anything else is an error naming the line and the option: `line 12:
//! unsupported option --mac-source (match mac)`, `unsupported target
//! TCPMSS`, `unsupported command -F`. Nothing is skipped. The checks
//! iptables itself makes are repeated, so a rule iptables would refuse is not
//! imported either (`-m tcp requires -p tcp`, `-i` in OUTPUT, DROP in `nat`,
//! `--reject-with tcp-reset` without `-p tcp`, ...).

use firewall_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use super::{
    Cond, NatTo, ParseError, Policy, Rule, Stmt, Table, Target, Test,
    lex::{Args, tokenize},
};
use crate::syntax::{
    AddrRange, Cidr, Family, HostBits, Iface, Limit, MAX_LIMIT_BURST, MAX_LOG_PREFIX, SYN_ONLY,
    TcpFlags, iptables_proto_name, parse_addr_range, parse_ctstates, parse_icmp_type, parse_iface,
    parse_ip, parse_log_level, parse_port_list, parse_port_range, parse_proto, parse_rate,
    parse_tcp_flags, reject_canonical,
};

/// Parse one iptables command line (without the program name, though a
/// leading `iptables`/`ip6tables` is allowed) for `table`. A `-t` in the
/// line must name the same table. Addresses in comma lists expand into one
/// statement each, in iptables' order.
pub fn parse_rule(line: &str, table: Table) -> Result<Vec<Stmt>, ParseError> {
    parse_rule_in(line, table, None)
}

/// [`parse_rule`] with the ruleset's family when known, which addresses,
/// ICMP matches and REJECT types must agree with.
pub(super) fn parse_rule_in(
    line: &str,
    table: Table,
    family: Option<Family>,
) -> Result<Vec<Stmt>, ParseError> {
    let mut words = tokenize(line).map_err(ParseError::new)?;
    if words.first().is_some_and(|w| {
        matches!(
            w.as_str(),
            "iptables"
                | "ip6tables"
                | "iptables-nft"
                | "ip6tables-nft"
                | "iptables-legacy"
                | "ip6tables-legacy"
        )
    }) {
        words.remove(0);
    }
    let mut parser = RuleParser {
        table,
        family,
        command: None,
        rule_options: false,
        proto: None,
        src: None,
        dst: None,
        iif: None,
        oif: None,
        modules: Vec::new(),
        conds: Vec::new(),
        comment: None,
        target: None,
        target_options: Vec::new(),
    };
    parser.run(Args { words, next: 0 })?;
    parser.finish(line.trim())
}

enum Command {
    Append(String),
    Insert(String, usize),
    Policy(String, String),
    NewChain(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ModuleKind {
    Tcp,
    Udp,
    Multiport,
    Conntrack,
    State,
    Icmp,
    Icmp6,
    Iprange,
    Limit,
    Comment,
    Unknown(String),
}

impl ModuleKind {
    fn load(name: &str) -> ModuleKind {
        match name {
            "tcp" => ModuleKind::Tcp,
            "udp" => ModuleKind::Udp,
            "multiport" => ModuleKind::Multiport,
            "conntrack" => ModuleKind::Conntrack,
            "state" => ModuleKind::State,
            "icmp" => ModuleKind::Icmp,
            "icmp6" => ModuleKind::Icmp6,
            "iprange" => ModuleKind::Iprange,
            "limit" => ModuleKind::Limit,
            "comment" => ModuleKind::Comment,
            other => ModuleKind::Unknown(other.to_string()),
        }
    }

    fn name(&self) -> &str {
        match self {
            ModuleKind::Tcp => "tcp",
            ModuleKind::Udp => "udp",
            ModuleKind::Multiport => "multiport",
            ModuleKind::Conntrack => "conntrack",
            ModuleKind::State => "state",
            ModuleKind::Icmp => "icmp",
            ModuleKind::Icmp6 => "icmp6",
            ModuleKind::Iprange => "iprange",
            ModuleKind::Limit => "limit",
            ModuleKind::Comment => "comment",
            ModuleKind::Unknown(n) => n,
        }
    }

    /// `(spelling, canonical)` of the options this match takes.
    fn options(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            ModuleKind::Tcp => &[
                ("--sport", "--sport"),
                ("--source-port", "--sport"),
                ("--dport", "--dport"),
                ("--destination-port", "--dport"),
                ("--tcp-flags", "--tcp-flags"),
                ("--syn", "--syn"),
            ],
            ModuleKind::Udp => &[
                ("--sport", "--sport"),
                ("--source-port", "--sport"),
                ("--dport", "--dport"),
                ("--destination-port", "--dport"),
            ],
            ModuleKind::Multiport => &[
                ("--sports", "--sports"),
                ("--source-ports", "--sports"),
                ("--dports", "--dports"),
                ("--destination-ports", "--dports"),
            ],
            ModuleKind::Conntrack => &[("--ctstate", "--ctstate")],
            ModuleKind::State => &[("--state", "--state")],
            ModuleKind::Icmp => &[("--icmp-type", "--icmp-type")],
            ModuleKind::Icmp6 => &[("--icmpv6-type", "--icmpv6-type")],
            ModuleKind::Iprange => &[
                ("--src-range", "--src-range"),
                ("--dst-range", "--dst-range"),
            ],
            ModuleKind::Limit => &[("--limit", "--limit"), ("--limit-burst", "--limit-burst")],
            ModuleKind::Comment => &[("--comment", "--comment")],
            ModuleKind::Unknown(_) => &[],
        }
    }

    /// Options of this match that exist in iptables but are not imported.
    fn unsupported(&self) -> &'static [&'static str] {
        match self {
            ModuleKind::Tcp => &["--tcp-option"],
            ModuleKind::Multiport => &["--ports"],
            ModuleKind::Conntrack => &[
                "--ctproto",
                "--ctorigsrc",
                "--ctorigdst",
                "--ctreplsrc",
                "--ctrepldst",
                "--ctorigsrcport",
                "--ctorigdstport",
                "--ctreplsrcport",
                "--ctrepldstport",
                "--ctstatus",
                "--ctexpire",
                "--ctdir",
            ],
            _ => &[],
        }
    }
}

struct Module {
    kind: ModuleKind,
    /// Canonical options given so far, to refuse repeats as iptables does.
    given: Vec<&'static str>,
    /// For `limit`: where its condition sits in `RuleParser::conds`.
    limit_at: Option<usize>,
}

struct RuleParser {
    table: Table,
    family: Option<Family>,
    command: Option<Command>,
    /// Anything beyond the command was given (refused after -P and -N).
    rule_options: bool,
    /// `(negated, protocol (None: all))`.
    proto: Option<(bool, Option<u8>)>,
    src: Option<(bool, Vec<Cidr>)>,
    dst: Option<(bool, Vec<Cidr>)>,
    iif: Option<(bool, Option<Iface>)>,
    oif: Option<(bool, Option<Iface>)>,
    modules: Vec<Module>,
    /// Conditions from matches, in the order written.
    conds: Vec<Cond>,
    comment: Option<String>,
    target: Option<Target>,
    target_options: Vec<&'static str>,
}

impl RuleParser {
    fn run(&mut self, mut args: Args) -> Result<(), ParseError> {
        let mut negate = false;
        while let Some(word) = args.next() {
            if word == "!" {
                if negate {
                    return Err(ParseError::new("! given twice"));
                }
                negate = true;
                continue;
            }
            let neg = std::mem::take(&mut negate);
            let not_negatable = || ParseError::new(format!("! cannot be used with {word}"));
            match word.as_str() {
                "-A" | "--append" | "-I" | "--insert" | "-P" | "--policy" | "-N"
                | "--new-chain" => {
                    if neg {
                        return Err(not_negatable());
                    }
                    if self.command.is_some() {
                        return Err(ParseError::new(format!(
                            "{word}: only one command per line"
                        )));
                    }
                    let chain = args.value(&word)?;
                    self.command = Some(match word.as_str() {
                        "-A" | "--append" => Command::Append(chain),
                        "-I" | "--insert" => {
                            let position = match args.peek() {
                                Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
                                    let p = args.next().unwrap_or_default();
                                    match p.parse::<usize>() {
                                        Ok(n) if n >= 1 => n,
                                        _ => {
                                            return Err(ParseError::new(format!(
                                                "invalid rule position {p} (counting from 1)"
                                            )));
                                        }
                                    }
                                }
                                _ => 1,
                            };
                            Command::Insert(chain, position)
                        }
                        "-P" | "--policy" => Command::Policy(chain, args.value(&word)?),
                        _ => Command::NewChain(chain),
                    });
                }
                "-D" | "--delete" | "-R" | "--replace" | "-F" | "--flush" | "-X"
                | "--delete-chain" | "-Z" | "--zero" | "-L" | "--list" | "-S" | "--list-rules"
                | "-E" | "--rename-chain" | "-C" | "--check" => {
                    return Err(ParseError::new(format!("unsupported command {word}")));
                }
                "-t" | "--table" => {
                    let t = args.value(&word)?;
                    if t != self.table.name() {
                        return Err(ParseError::new(format!(
                            "-t {t}: this line is read for table {}",
                            self.table.name()
                        )));
                    }
                }
                // Waiting for the xtables lock does not change the rule.
                "-w" | "--wait" => {
                    if args.peek().is_some_and(|w| w.parse::<f64>().is_ok()) {
                        args.next();
                    }
                }
                // Counters do not change what the rule matches.
                "-c" | "--set-counters" => {
                    for _ in 0..2 {
                        let n = args.value(&word)?;
                        if n.parse::<u64>().is_err() {
                            return Err(ParseError::new(format!("{word}: bad counter {n:?}")));
                        }
                    }
                }
                "-p" | "--protocol" => {
                    self.once(&word, self.proto.is_some())?;
                    let v = args.operand(&word)?;
                    let p = parse_proto(&v).map_err(|m| ParseError::new(format!("-p: {m}")))?;
                    if neg && p.is_none() {
                        return Err(ParseError::new("! -p all would never match"));
                    }
                    self.proto = Some((neg, p));
                }
                "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                    let is_src = matches!(word.as_str(), "-s" | "--source" | "--src");
                    let slot = if is_src { &self.src } else { &self.dst };
                    self.once(&word, slot.is_some())?;
                    let v = args.operand(&word)?;
                    let list = v
                        .split(',')
                        .map(|c| Cidr::parse(c, HostBits::Cleared))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|m| ParseError::new(format!("{word} {v}: {m}")))?;
                    let slot = if is_src { &mut self.src } else { &mut self.dst };
                    *slot = Some((neg, list));
                }
                "-i" | "--in-interface" | "-o" | "--out-interface" => {
                    let is_in = matches!(word.as_str(), "-i" | "--in-interface");
                    let slot = if is_in { &self.iif } else { &self.oif };
                    self.once(&word, slot.is_some())?;
                    let v = args.operand(&word)?;
                    let iface =
                        parse_iface(&v).map_err(|m| ParseError::new(format!("{word}: {m}")))?;
                    if neg && iface.is_none() {
                        return Err(ParseError::new(format!("! {word} + would never match")));
                    }
                    let slot = if is_in { &mut self.iif } else { &mut self.oif };
                    *slot = Some((neg, iface));
                }
                "-m" | "--match" => {
                    if neg {
                        return Err(not_negatable());
                    }
                    self.rule_options = true;
                    let name = args.value(&word)?;
                    self.load(ModuleKind::load(&name));
                }
                "-j" | "--jump" => {
                    if neg {
                        return Err(not_negatable());
                    }
                    self.once(&word, self.target.is_some())?;
                    let name = args.value(&word)?;
                    self.target = Some(self.target_named(&name)?);
                }
                "-g" | "--goto" => {
                    return Err(ParseError::new(format!("unsupported option {word} (goto)")));
                }
                "-f" | "--fragment" => {
                    return Err(ParseError::new(format!("unsupported option {word}")));
                }
                "-4" | "--ipv4" | "-6" | "--ipv6" => {
                    return Err(ParseError::new(format!(
                        "unsupported option {word} (import each family's dump on its own)"
                    )));
                }
                opt if opt.starts_with('-') && opt.len() > 1 => {
                    self.rule_options = true;
                    self.extension_option(opt, neg, &mut args)?;
                }
                other => {
                    return Err(ParseError::new(format!("unexpected argument {other:?}")));
                }
            }
        }
        if negate {
            return Err(ParseError::new("! at the end of the line"));
        }
        Ok(())
    }

    fn once(&mut self, opt: &str, given: bool) -> Result<(), ParseError> {
        self.rule_options = true;
        if given {
            return Err(ParseError::new(format!("{opt} given twice")));
        }
        Ok(())
    }

    fn load(&mut self, kind: ModuleKind) -> usize {
        let limit_at = (kind == ModuleKind::Limit).then(|| {
            self.conds.push(Cond {
                negated: false,
                test: Test::Limit(Limit::default()),
            });
            self.conds.len() - 1
        });
        self.modules.push(Module {
            kind,
            given: Vec::new(),
            limit_at,
        });
        self.modules.len() - 1
    }

    fn target_named(&self, name: &str) -> Result<Target, ParseError> {
        let nat_only = |t| {
            if self.table == Table::Nat {
                Ok(t)
            } else {
                Err(ParseError::new(format!(
                    "-j {name} is only valid in the nat table"
                )))
            }
        };
        let not_in_nat = |t| {
            if self.table == Table::Nat {
                Err(ParseError::new(format!(
                    "-j {name} is not allowed in the nat table (it is not for filtering)"
                )))
            } else {
                Ok(t)
            }
        };
        match name {
            "ACCEPT" => Ok(Target::Accept),
            "DROP" => not_in_nat(Target::Drop),
            "REJECT" => not_in_nat(Target::Reject { with: None }),
            "LOG" => Ok(Target::Log {
                prefix: None,
                level: None,
            }),
            "RETURN" => Ok(Target::Return),
            "MASQUERADE" => nat_only(Target::Masquerade { ports: None }),
            "SNAT" => nat_only(Target::Snat {
                to: NatTo::default(),
            }),
            "DNAT" => nat_only(Target::Dnat {
                to: NatTo::default(),
            }),
            n if UNSUPPORTED_TARGETS.contains(&n) => {
                Err(ParseError::new(format!("unsupported target {n}")))
            }
            n if n.starts_with('-') || n.is_empty() => {
                Err(ParseError::new(format!("-j needs a target, not {n:?}")))
            }
            n => Ok(Target::Jump(n.to_string())),
        }
    }

    /// An option that belongs to the target or a match: the target first,
    /// then the latest match that takes it (so a match loaded twice gets its
    /// own options), then the match named like the protocol (`-p tcp
    /// --dport`), as iptables loads it implicitly.
    fn extension_option(
        &mut self,
        opt: &str,
        neg: bool,
        args: &mut Args,
    ) -> Result<(), ParseError> {
        if self.target_option(opt, neg, args)? {
            return Ok(());
        }
        for i in (0..self.modules.len()).rev() {
            let kind = &self.modules[i].kind;
            if kind.unsupported().contains(&opt) {
                return Err(ParseError::new(format!(
                    "unsupported option {opt} (match {})",
                    kind.name()
                )));
            }
            if let Some(&(_, canon)) = kind.options().iter().find(|(o, _)| *o == opt) {
                return self.module_option(i, canon, opt, neg, args);
            }
        }
        let implicit = match self.proto {
            Some((false, Some(IPPROTO_TCP))) => Some(ModuleKind::Tcp),
            Some((false, Some(IPPROTO_UDP))) => Some(ModuleKind::Udp),
            Some((false, Some(IPPROTO_ICMP))) => Some(ModuleKind::Icmp),
            Some((false, Some(IPPROTO_ICMPV6))) => Some(ModuleKind::Icmp6),
            _ => None,
        };
        if let Some(kind) = implicit {
            if kind.unsupported().contains(&opt) {
                return Err(ParseError::new(format!(
                    "unsupported option {opt} (match {})",
                    kind.name()
                )));
            }
            if let Some(&(_, canon)) = kind.options().iter().find(|(o, _)| *o == opt) {
                let i = self.load(kind);
                return self.module_option(i, canon, opt, neg, args);
            }
        }
        let unknown = self.modules.iter().rev().find_map(|m| match &m.kind {
            ModuleKind::Unknown(n) => Some(n.clone()),
            _ => None,
        });
        Err(ParseError::new(match (unknown, &self.target) {
            (Some(m), _) => format!("unsupported option {opt} (match {m})"),
            (None, Some(Target::Jump(t))) => format!("unsupported option {opt} (after -j {t})"),
            _ => format!("unsupported option {opt}"),
        }))
    }

    fn module_option(
        &mut self,
        i: usize,
        canon: &'static str,
        opt: &str,
        neg: bool,
        args: &mut Args,
    ) -> Result<(), ParseError> {
        let module = &mut self.modules[i];
        let name = module.kind.name().to_string();
        let key = match canon {
            "--syn" | "--tcp-flags" => "flags",
            c => c,
        };
        if module.given.contains(&key) {
            return Err(ParseError::new(if key == "flags" {
                "only one of --syn and --tcp-flags is allowed".to_string()
            } else {
                format!("{opt} given twice in one {name} match")
            }));
        }
        module.given.push(key);
        let limit_at = module.limit_at;
        if neg && matches!(canon, "--limit" | "--limit-burst" | "--comment") {
            return Err(ParseError::new(format!("! cannot be used with {opt}")));
        }
        let bad = |v: &str, m: String| ParseError::new(format!("{opt} {v}: {m}"));
        let test = match canon {
            "--sport" | "--dport" => {
                let v = args.operand(opt)?;
                let r = parse_port_range(&v, ':').map_err(|m| bad(&v, m))?;
                if canon == "--sport" {
                    Test::Sport(vec![r])
                } else {
                    Test::Dport(vec![r])
                }
            }
            "--sports" | "--dports" => {
                let v = args.operand(opt)?;
                let l = parse_port_list(&v).map_err(|m| bad(&v, m))?;
                if canon == "--sports" {
                    Test::Sport(l)
                } else {
                    Test::Dport(l)
                }
            }
            "--tcp-flags" => {
                let m = args.operand(opt)?;
                let mask = parse_tcp_flags(&m).map_err(|e| bad(&m, e))?;
                let s = args.value(opt)?;
                let set = parse_tcp_flags(&s).map_err(|e| bad(&s, e))?;
                Test::TcpFlags(TcpFlags { mask, set })
            }
            "--syn" => Test::TcpFlags(SYN_ONLY),
            "--ctstate" | "--state" => {
                let v = args.operand(opt)?;
                Test::CtState(parse_ctstates(&v).map_err(|m| bad(&v, m))?)
            }
            "--icmp-type" => {
                let v = args.operand(opt)?;
                Test::Icmp(parse_icmp_type(&v, false).map_err(|m| bad(&v, m))?)
            }
            "--icmpv6-type" => {
                let v = args.operand(opt)?;
                Test::Icmpv6(parse_icmp_type(&v, true).map_err(|m| bad(&v, m))?)
            }
            "--src-range" | "--dst-range" => {
                let v = args.operand(opt)?;
                let r = parse_addr_range(&v).map_err(|m| bad(&v, m))?;
                if canon == "--src-range" {
                    Test::SrcRange(r)
                } else {
                    Test::DstRange(r)
                }
            }
            "--limit" | "--limit-burst" => {
                let v = args.value(opt)?;
                let Some(Cond {
                    test: Test::Limit(limit),
                    ..
                }) = limit_at.and_then(|at| self.conds.get_mut(at))
                else {
                    unreachable!("a limit match has its condition");
                };
                if canon == "--limit" {
                    (limit.count, limit.per) = parse_rate(&v).map_err(|m| bad(&v, m))?;
                } else {
                    limit.burst = match v.parse::<u32>() {
                        Ok(b) if (1..=MAX_LIMIT_BURST).contains(&b) => b,
                        _ => {
                            return Err(bad(&v, format!("the burst must be 1-{MAX_LIMIT_BURST}")));
                        }
                    };
                }
                return Ok(());
            }
            "--comment" => {
                let v = args.value(opt)?;
                // XT_MAX_COMMENT_LEN, with its NUL.
                if v.len() > 255 {
                    return Err(ParseError::new("--comment is longer than 255 bytes"));
                }
                self.comment = Some(match self.comment.take() {
                    Some(c) => format!("{c}; {v}"),
                    None => v,
                });
                return Ok(());
            }
            _ => unreachable!("{canon} is in a match's option table"),
        };
        self.conds.push(Cond { negated: neg, test });
        Ok(())
    }

    /// Options of the target given so far; `false` when `opt` is not one.
    fn target_option(&mut self, opt: &str, neg: bool, args: &mut Args) -> Result<bool, ParseError> {
        let Some(target) = &mut self.target else {
            return Ok(false);
        };
        let (name, known, unsupported): (&str, &[&'static str], &[&str]) = match target {
            Target::Reject { .. } => ("REJECT", &["--reject-with"], &[]),
            Target::Log { .. } => (
                "LOG",
                &["--log-prefix", "--log-level"],
                &[
                    "--log-tcp-sequence",
                    "--log-tcp-options",
                    "--log-ip-options",
                    "--log-uid",
                    "--log-macdecode",
                ],
            ),
            Target::Masquerade { .. } => (
                "MASQUERADE",
                &["--to-ports"],
                &["--random", "--random-fully"],
            ),
            Target::Snat { .. } => (
                "SNAT",
                &["--to-source"],
                &["--random", "--random-fully", "--persistent"],
            ),
            Target::Dnat { .. } => ("DNAT", &["--to-destination"], &["--random", "--persistent"]),
            _ => return Ok(false),
        };
        if unsupported.contains(&opt) {
            return Err(ParseError::new(format!(
                "unsupported option {opt} (target {name})"
            )));
        }
        let Some(&canon) = known.iter().find(|k| **k == opt) else {
            return Ok(false);
        };
        if neg {
            return Err(ParseError::new(format!("! cannot be used with {opt}")));
        }
        if self.target_options.contains(&canon) {
            return Err(ParseError::new(format!("{opt} given twice")));
        }
        self.target_options.push(canon);
        let v = args.value(opt)?;
        let bad = |m: String| ParseError::new(format!("{opt} {v}: {m}"));
        match (target, canon) {
            (Target::Reject { with }, _) => {
                if reject_canonical(&v, Family::V4).is_none()
                    && reject_canonical(&v, Family::V6).is_none()
                {
                    return Err(bad("unknown reject type".into()));
                }
                *with = Some(v.clone());
            }
            (Target::Log { prefix, .. }, "--log-prefix") => {
                // iptables would cut a longer prefix short.
                if v.len() > MAX_LOG_PREFIX {
                    return Err(bad(format!("longer than {MAX_LOG_PREFIX} bytes")));
                }
                *prefix = Some(v.clone());
            }
            (Target::Log { level, .. }, _) => *level = Some(parse_log_level(&v).map_err(bad)?),
            (Target::Masquerade { ports }, _) => {
                *ports = Some(parse_port_range(&v, '-').map_err(bad)?);
            }
            (Target::Snat { to } | Target::Dnat { to }, _) => {
                *to = parse_nat_to(&v).map_err(bad)?;
            }
            _ => unreachable!("only targets with options get here"),
        }
        Ok(true)
    }

    fn finish(mut self, text: &str) -> Result<Vec<Stmt>, ParseError> {
        let Some(command) = self.command.take() else {
            return Err(ParseError::new("no command (expected -A, -I, -P or -N)"));
        };
        let chain = match command {
            Command::Policy(chain, policy) => {
                if self.rule_options || self.target.is_some() {
                    return Err(ParseError::new("-P takes only a chain and a policy"));
                }
                let policy = match policy.as_str() {
                    "ACCEPT" => Policy::Accept,
                    "DROP" => Policy::Drop,
                    other => {
                        return Err(ParseError::new(format!(
                            "policy {other} is not supported (ACCEPT or DROP)"
                        )));
                    }
                };
                return Ok(vec![Stmt::Policy { chain, policy }]);
            }
            Command::NewChain(chain) => {
                if self.rule_options || self.target.is_some() {
                    return Err(ParseError::new("-N takes only a chain name"));
                }
                return Ok(vec![Stmt::NewChain { chain }]);
            }
            Command::Append(chain) => (chain, None),
            Command::Insert(chain, position) => (chain, Some(position)),
        };

        let proto = match self.proto {
            Some((false, p)) => p,
            _ => None,
        };
        for m in &self.modules {
            let needs = |p: u8| {
                if proto == Some(p) {
                    Ok(())
                } else {
                    Err(ParseError::new(format!(
                        "-m {} requires -p {}",
                        m.kind.name(),
                        iptables_proto_name(p)
                    )))
                }
            };
            match &m.kind {
                ModuleKind::Tcp => needs(IPPROTO_TCP)?,
                ModuleKind::Udp => needs(IPPROTO_UDP)?,
                ModuleKind::Icmp => needs(IPPROTO_ICMP)?,
                ModuleKind::Icmp6 => needs(IPPROTO_ICMPV6)?,
                ModuleKind::Multiport => {
                    if !matches!(proto, Some(IPPROTO_TCP | IPPROTO_UDP)) {
                        return Err(ParseError::new("-m multiport requires -p tcp or -p udp"));
                    }
                    if m.given.is_empty() {
                        return Err(ParseError::new("-m multiport needs --sports or --dports"));
                    }
                }
                ModuleKind::State if m.given.is_empty() => {
                    return Err(ParseError::new("-m state needs --state"));
                }
                ModuleKind::Iprange if m.given.is_empty() => {
                    return Err(ParseError::new(
                        "-m iprange needs --src-range or --dst-range",
                    ));
                }
                ModuleKind::Unknown(name) => {
                    return Err(ParseError::new(format!("unsupported match {name}")));
                }
                _ => {}
            }
        }

        let mut target = self.target.clone().unwrap_or(Target::Continue);
        let family = self.check_family()?;
        match &mut target {
            Target::Reject { with: Some(w) } => {
                let canonical = match family {
                    Some(f) => reject_canonical(w, f),
                    None => reject_canonical(w, Family::V4)
                        .filter(|c| reject_canonical(w, Family::V6) == Some(c)),
                };
                if let Some(c) = canonical {
                    *w = c.to_string();
                }
                if w == "tcp-reset" && proto != Some(IPPROTO_TCP) {
                    return Err(ParseError::new("--reject-with tcp-reset requires -p tcp"));
                }
            }
            Target::Snat { .. } if !self.target_options.contains(&"--to-source") => {
                return Err(ParseError::new("-j SNAT needs --to-source"));
            }
            Target::Dnat { .. } if !self.target_options.contains(&"--to-destination") => {
                return Err(ParseError::new("-j DNAT needs --to-destination"));
            }
            _ => {}
        }
        let nat_ports = match &target {
            Target::Masquerade { ports } => ports.is_some(),
            Target::Snat { to } | Target::Dnat { to } => to.ports.is_some(),
            _ => false,
        };
        if nat_ports && !matches!(proto, Some(IPPROTO_TCP | IPPROTO_UDP)) {
            return Err(ParseError::new(
                "NAT to a port needs -p tcp or -p udp".to_string(),
            ));
        }

        // Expand address lists the way iptables does: each source with each
        // destination, as separate rules.
        let negated_list = [&self.src, &self.dst]
            .iter()
            .any(|s| s.as_ref().is_some_and(|(neg, _)| *neg));
        let several = [&self.src, &self.dst]
            .iter()
            .any(|s| s.as_ref().is_some_and(|(_, l)| l.len() > 1));
        if negated_list && several {
            return Err(ParseError::new(
                "! cannot be used with several source or destination addresses",
            ));
        }
        let expand = |slot: &Option<(bool, Vec<Cidr>)>, src: bool| -> Vec<Option<Cond>> {
            match slot {
                None => vec![None],
                Some((negated, list)) => list
                    .iter()
                    .map(|c| {
                        Some(Cond {
                            negated: *negated,
                            test: if src { Test::Src(*c) } else { Test::Dst(*c) },
                        })
                    })
                    .collect(),
            }
        };
        let mut stmts = Vec::new();
        for s in expand(&self.src, true) {
            for d in expand(&self.dst, false) {
                let mut conds = Vec::new();
                if let Some((negated, Some(p))) = self.proto {
                    conds.push(Cond {
                        negated,
                        test: Test::Proto(p),
                    });
                }
                conds.extend(s.clone());
                conds.extend(d);
                if let Some((negated, Some(i))) = &self.iif {
                    conds.push(Cond {
                        negated: *negated,
                        test: Test::InIface(i.clone()),
                    });
                }
                if let Some((negated, Some(i))) = &self.oif {
                    conds.push(Cond {
                        negated: *negated,
                        test: Test::OutIface(i.clone()),
                    });
                }
                conds.extend(self.conds.iter().cloned());
                let rule = Rule {
                    conds,
                    target: target.clone(),
                    comment: self.comment.clone(),
                    line: 0,
                    text: text.to_string(),
                };
                stmts.push(match chain.1 {
                    None => Stmt::Append {
                        chain: chain.0.clone(),
                        rule,
                    },
                    Some(position) => Stmt::Insert {
                        chain: chain.0.clone(),
                        position,
                        rule,
                    },
                });
            }
        }
        Ok(stmts)
    }

    /// Every family-specific part agrees with the others and with the
    /// ruleset's family; returns the rule's family when something tells it.
    fn check_family(&self) -> Result<Option<Family>, ParseError> {
        let mut seen: Vec<(Family, String)> = Vec::new();
        for (opt, slot) in [("-s", &self.src), ("-d", &self.dst)] {
            for c in slot.iter().flat_map(|(_, l)| l) {
                seen.push((c.family(), format!("{opt} {c}")));
            }
        }
        match self.proto {
            Some((_, Some(IPPROTO_ICMP))) => seen.push((Family::V4, "-p icmp".into())),
            Some((_, Some(IPPROTO_ICMPV6))) => seen.push((Family::V6, "-p ipv6-icmp".into())),
            _ => {}
        }
        for c in &self.conds {
            match &c.test {
                Test::SrcRange(r) | Test::DstRange(r) => {
                    seen.push((r.family(), format!("-m iprange {r}")));
                }
                Test::Icmp(_) => seen.push((Family::V4, "--icmp-type".into())),
                Test::Icmpv6(_) => seen.push((Family::V6, "--icmpv6-type".into())),
                _ => {}
            }
        }
        match &self.target {
            Some(Target::Reject { with: Some(w) }) => {
                match (
                    reject_canonical(w, Family::V4),
                    reject_canonical(w, Family::V6),
                ) {
                    (Some(_), None) => seen.push((Family::V4, format!("--reject-with {w}"))),
                    (None, Some(_)) => seen.push((Family::V6, format!("--reject-with {w}"))),
                    _ => {}
                }
            }
            Some(Target::Snat { to } | Target::Dnat { to }) => {
                if let Some(a) = to.addrs {
                    seen.push((a.family(), format!("--to {to}")));
                }
            }
            _ => {}
        }
        if let Some(f) = self.family {
            if let Some((g, what)) = seen.iter().find(|(g, _)| *g != f) {
                return Err(ParseError::new(format!(
                    "{what} is {g}, but this is an {f} ruleset"
                )));
            }
            return Ok(Some(f));
        }
        if let (Some((f, a)), Some((g, b))) = (
            seen.first(),
            seen.iter()
                .find(|(g, _)| Some(g) != seen.first().map(|(f, _)| f)),
        ) {
            return Err(ParseError::new(format!("{a} is {f} but {b} is {g}")));
        }
        Ok(seen.first().map(|(f, _)| *f))
    }
}

/// `--to-destination`/`--to-source`: `[ADDR[-ADDR]][:PORT[-PORT]]`, IPv6
/// addresses in brackets when a port follows.
fn parse_nat_to(s: &str) -> Result<NatTo, String> {
    if s.contains('/') {
        return Err("the /BASEPORT form is not supported".into());
    }
    let (addrs, ports) = if let Some(rest) = s.strip_prefix('[') {
        let (a, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ]"))?;
        match after {
            "" => (a, None),
            _ => (
                a,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("{s:?}: expected :PORT after ]"))?,
                ),
            ),
        }
    } else if s.matches(':').count() > 1 {
        (s, None)
    } else {
        match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    };
    let addrs = match addrs {
        "" => None,
        a => Some(match a.split_once('-') {
            Some(_) => parse_addr_range(a)?,
            None => {
                let ip = parse_ip(a)?;
                AddrRange { lo: ip, hi: ip }
            }
        }),
    };
    let ports = ports.map(|p| parse_port_range(p, '-')).transpose()?;
    if addrs.is_none() && ports.is_none() {
        return Err(format!("{s:?} names neither an address nor a port"));
    }
    Ok(NatTo { addrs, ports })
}

/// Targets netfilter has that are not imported: named as such rather than
/// taken for a missing user chain.
pub(super) const UNSUPPORTED_TARGETS: &[&str] = &[
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNPT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "MARK",
    "MIRROR",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "QUEUE",
    "RATEEST",
    "REDIRECT",
    "SAME",
    "SECMARK",
    "SET",
    "SNPT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];

#[cfg(test)]
mod tests;
