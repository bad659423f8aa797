//! Conversations: the sequences that let state build up. A flow is a
//! client and a server on either side of the router (or the router
//! itself), speaking TCP (with FTP on port 21), UDP, ICMP echo, SCTP or
//! GRE, IPv4 or IPv6. Each step is the next packet of its script (a
//! handshake, data, a teardown, a reopening SYN), that packet mutated,
//! an ICMP error about the flow, or an old packet again.
//!
//! A flow learns what the router did to it from what came out (the
//! translated source its server sees, the port an FTP announcement was
//! rewritten to) and addresses its next packets accordingly, as real
//! hosts would. It never lets what came out choose its next step: the
//! steps of a run depend on the seed alone.

use std::net::IpAddr;

use crate::{
    mutate::{self, Pkt},
    packets::{self, ftp_line, sctp, sctp_chunk, sctp_init_body},
    rng::Rng,
    router::{Fate, Origin, Side},
    topology::{self, lan_v4, lan_v6, wan_v4, wan_v6},
    view::{self, View},
    wire::{Datagram, IPPROTO_GRE, L4},
};

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
    Sctp,
    Gre,
}

/// An endpoint as a packet carries it.
type End = (IpAddr, u16);

pub struct Flow {
    proto: Proto,
    client: End,
    /// Where the client sends to.
    target: End,
    client_side: Origin,
    server_side: Origin,
    /// The client's last packet as it reached the server's side: who the
    /// server answers, and what an error about the flow quotes.
    seen: (End, End),
    quote_client: Option<Vec<u8>>,
    quote_server: Option<Vec<u8>>,
    /// An FTP control connection: data steps carry commands and replies.
    ftp: bool,
    step: u32,
    /// Steps of data before the teardown.
    data_steps: u32,
    cseq: u32,
    sseq: u32,
    /// SCTP verification tags chosen by client and server.
    ctag: u32,
    stag: u32,
    /// Every frame sent, for retransmissions and for the failure report.
    pub log: Vec<(Origin, Vec<u8>)>,
    pub done: bool,
}

/// One step's packets, and which end sent them.
pub struct Step {
    pub origin: Origin,
    pub frames: Vec<Vec<u8>>,
    from_client: bool,
}

impl Flow {
    /// A new flow of a random kind, suited to the phase (`nat`: the port
    /// forwards and the FTP helper exist).
    pub fn new(rng: &mut Rng, nat: bool) -> Flow {
        let v6 = rng.percent(25);
        let proto = match rng.weighted(&[50, 22, 12, 8, 4]) {
            0 => Proto::Tcp,
            1 => Proto::Udp,
            2 => Proto::Icmp,
            3 => Proto::Sctp,
            _ => Proto::Gre,
        };
        let n = rng.range(2, 9) as u8;
        let m = rng.range(2, 9) as u8;
        let eport = rng.range(1024, 65535) as u16;
        let (lan, wan): (IpAddr, IpAddr) = if v6 {
            (lan_v6(n).into(), wan_v6(m).into())
        } else {
            let server = if rng.one_in(20) {
                topology::unroutable_v4(m)
            } else {
                wan_v4(m)
            };
            (lan_v4(n).into(), server.into())
        };
        let service = match proto {
            Proto::Tcp => *rng.pick(&[80, 443, 21, 21, 23, 25, 22]),
            Proto::Udp => *rng.pick(&[53, 123, 9, 5001]),
            Proto::Sctp => 9899,
            Proto::Icmp | Proto::Gre => 0,
        };
        let icmp_id = rng.u16();
        let port = |p: u16| if proto == Proto::Icmp { icmp_id } else { p };
        let router_wan = IpAddr::from(topology::ROUTER_WAN_V4);
        let (client, target, client_side, server_side) = match rng.weighted(&[55, 15, 10, 10, 10]) {
            1 if nat && !v6 && matches!(proto, Proto::Tcp | Proto::Udp) => {
                // A WAN client to a port forward.
                let fwd = if proto == Proto::Tcp {
                    8080
                } else {
                    rng.range(5000, 5003) as u16
                };
                (
                    (wan, eport),
                    (router_wan, fwd),
                    Origin::From(Side::Wan),
                    Origin::From(Side::Lan),
                )
            }
            2 if !v6 => (
                // The router itself as the client.
                (router_wan, port(eport)),
                (wan, port(service)),
                Origin::Host(Side::Wan),
                Origin::From(Side::Wan),
            ),
            3 if !v6 && matches!(proto, Proto::Tcp | Proto::Icmp) => (
                // A WAN client to the router (SSH and SMTP are open).
                (wan, port(eport)),
                (router_wan, port(*rng.pick(&[22, 25, 80]))),
                Origin::From(Side::Wan),
                Origin::Host(Side::Wan),
            ),
            4 => {
                let router: IpAddr = if v6 {
                    topology::ROUTER_LAN_V6.into()
                } else {
                    topology::ROUTER_LAN_V4.into()
                };
                (
                    (lan, port(eport)),
                    (router, port(service)),
                    Origin::From(Side::Lan),
                    Origin::Host(Side::Lan),
                )
            }
            _ => (
                (lan, port(eport)),
                (wan, port(service)),
                Origin::From(Side::Lan),
                Origin::From(Side::Wan),
            ),
        };
        let ftp = proto == Proto::Tcp && target.1 == 21;
        Flow {
            proto,
            client,
            target,
            client_side,
            server_side,
            seen: (client, target),
            quote_client: None,
            quote_server: None,
            ftp,
            step: 0,
            data_steps: rng.range(1, 8),
            cseq: rng.u32(),
            sseq: rng.u32(),
            ctag: rng.u32() | 1,
            stag: rng.u32() | 1,
            log: Vec::new(),
            done: false,
        }
    }

    /// A data connection an FTP announcement asked for: `client` connects
    /// to `target`; their packets enter at `client_side` and `server_side`.
    fn data(
        rng: &mut Rng,
        (client, target): (End, End),
        client_side: Origin,
        server_side: Origin,
    ) -> Flow {
        Flow {
            proto: Proto::Tcp,
            client,
            target,
            client_side,
            server_side,
            seen: (client, target),
            quote_client: None,
            quote_server: None,
            ftp: false,
            step: 0,
            data_steps: rng.range(1, 4),
            cseq: rng.u32(),
            sseq: rng.u32(),
            ctag: 0,
            stag: 0,
            log: Vec::new(),
            done: false,
        }
    }

    /// The packet the script sends next, and who sends it; advances the
    /// script.
    fn script(&mut self, rng: &mut Rng) -> (bool, Pkt) {
        let step = self.step;
        self.step += 1;
        let (from_client, l4) = match self.proto {
            Proto::Tcp => self.tcp_step(rng, step),
            Proto::Udp => {
                let from_client = step.is_multiple_of(2) || rng.one_in(3);
                if step > 2 * self.data_steps {
                    self.done = true;
                }
                let payload = rng.bytes_range(1, 120);
                (
                    from_client,
                    self.ports_l4(from_client, |s, d| packets::udp(s, d, &payload)),
                )
            }
            Proto::Icmp => {
                let from_client = step.is_multiple_of(2);
                if step > 2 * self.data_steps {
                    self.done = true;
                }
                let v4 = self.client.0.is_ipv4();
                let ty = match (v4, from_client) {
                    (true, true) => 8,
                    (true, false) => 0,
                    (false, true) => 128,
                    (false, false) => 129,
                };
                let id = if from_client {
                    self.client.1
                } else {
                    self.seen.0.1
                };
                (from_client, packets::query(v4, ty, id, step as u16 / 2))
            }
            Proto::Sctp => self.sctp_step(rng, step),
            Proto::Gre => {
                if step > 2 * self.data_steps {
                    self.done = true;
                }
                let from_client = step.is_multiple_of(2) || rng.one_in(3);
                let mut bytes = vec![0, 0, 0x08, 0x00];
                bytes.extend(rng.bytes_below(40));
                (
                    from_client,
                    L4::Raw {
                        proto: IPPROTO_GRE,
                        bytes,
                    },
                )
            }
        };
        (from_client, self.packet(from_client, l4))
    }

    /// Builds the transport of a packet from one end to the other, given
    /// the ports it carries.
    fn ports_l4(&self, from_client: bool, l4: impl FnOnce(u16, u16) -> L4) -> L4 {
        if from_client {
            l4(self.client.1, self.target.1)
        } else {
            l4(self.seen.1.1, self.seen.0.1)
        }
    }

    fn packet(&self, from_client: bool, l4: L4) -> Pkt {
        let (src, dst) = if from_client {
            (self.client.0, self.target.0)
        } else {
            (self.seen.1.0, self.seen.0.0)
        };
        Pkt::new(Datagram {
            net: packets::net(src, dst),
            l4,
        })
    }

    fn tcp_step(&mut self, rng: &mut Rng, step: u32) -> (bool, L4) {
        let data_end = 3 + self.data_steps;
        let (from_client, flags, payload): (bool, u8, Vec<u8>) = match step {
            0 => (true, SYN, Vec::new()),
            1 => (false, SYN | ACK, Vec::new()),
            2 => (true, ACK, Vec::new()),
            s if s < data_end => {
                let from_client = rng.one_in(2);
                let payload = if self.ftp && rng.percent(70) {
                    let (addr, port) = if from_client {
                        (self.client.0, rng.range(30000, 40000) as u16)
                    } else {
                        (self.seen.1.0, rng.range(50000, 60000) as u16)
                    };
                    ftp_line(rng, from_client, addr, port)
                } else {
                    // Now and then more than the MTU holds.
                    let most = if rng.one_in(15) { 1600 } else { 300 };
                    rng.bytes_range(1, most)
                };
                (from_client, ACK | PSH, payload)
            }
            s if s == data_end && rng.one_in(5) => {
                self.done = rng.one_in(2);
                self.reopen_later(rng);
                (rng.one_in(2), RST | ACK, Vec::new())
            }
            s if s == data_end => (true, FIN | ACK, Vec::new()),
            s if s == data_end + 1 => (false, FIN | ACK, Vec::new()),
            _ => {
                // The last ACK; then, sometimes, the same ports again: a SYN
                // in TIME_WAIT reopens the connection.
                self.done = rng.percent(70);
                self.reopen_later(rng);
                (true, ACK, Vec::new())
            }
        };
        let (seq, ack) = if from_client {
            (self.cseq, self.sseq)
        } else {
            (self.sseq, self.cseq)
        };
        let ack = if flags & ACK != 0 { ack } else { 0 };
        let used = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        if from_client {
            self.cseq = self.cseq.wrapping_add(used);
        } else {
            self.sseq = self.sseq.wrapping_add(used);
        }
        let mut l4 = self.ports_l4(from_client, |s, d| {
            packets::tcp(s, d, flags, seq, ack, &payload)
        });
        if let L4::Tcp(t) = &mut l4 {
            t.options = if flags & SYN != 0 {
                mutate::tcp_options(rng, false)
            } else if rng.one_in(3) {
                crate::wire::tcp_opt::timestamps(step, step)
            } else {
                Vec::new()
            };
        }
        (from_client, l4)
    }

    /// After a teardown the script starts again from the SYN, with new
    /// sequence numbers, unless the flow is done.
    fn reopen_later(&mut self, rng: &mut Rng) {
        if !self.done {
            self.step = 0;
            self.cseq = rng.u32();
            self.sseq = rng.u32();
        }
    }

    fn sctp_step(&mut self, rng: &mut Rng, step: u32) -> (bool, L4) {
        let data_end = 4 + self.data_steps;
        let (from_client, ty, flags, body): (bool, u8, u8, Vec<u8>) = match step {
            0 => (true, 1, 0, sctp_init_body(self.ctag)),
            1 => (false, 2, 0, sctp_init_body(self.stag)),
            2 => (true, 10, 0, rng.bytes(16)),
            3 => (false, 11, 0, Vec::new()),
            s if s < data_end => {
                let mut b = step.to_be_bytes().to_vec();
                b.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
                b.extend(rng.bytes_range(1, 40));
                (rng.one_in(2), 0, 3, b)
            }
            s if s == data_end => (true, 7, 0, vec![0, 0, 0, 1]),
            s if s == data_end + 1 => (false, 8, 0, Vec::new()),
            _ => {
                self.done = true;
                (true, 14, 0, Vec::new())
            }
        };
        // Packets carry the tag the other end chose; an INIT carries 0.
        let vtag = match (ty, from_client) {
            (1, _) => 0,
            (_, true) => self.stag,
            (_, false) => self.ctag,
        };
        let chunks = sctp_chunk(ty, flags, &body);
        (
            from_client,
            self.ports_l4(from_client, |s, d| sctp(s, d, vtag, chunks)),
        )
    }

    /// The flow's next step: its script's next packet (60%), that packet
    /// mutated without advancing the script (25%), an ICMP error about the
    /// flow (8%), or an old packet again (7%).
    pub fn next(&mut self, rng: &mut Rng) -> Step {
        let choice = rng.weighted(&[60, 25, 8, 7]);
        if choice == 3 && !self.log.is_empty() {
            let (origin, frame) = self.log[rng.below(self.log.len())].clone();
            return Step {
                origin,
                frames: vec![frame],
                from_client: origin == self.client_side || origin == self.client_side.raw(),
            };
        }
        if choice == 2
            && let Some(step) = self.error(rng)
        {
            return step;
        }
        let saved = (self.step, self.cseq, self.sseq, self.done);
        let (from_client, mut pkt) = self.script(rng);
        if choice == 1 {
            // Mutations leave the script where it was: the conversation
            // goes on as if the mutated packet had never been sent.
            (self.step, self.cseq, self.sseq, self.done) = saved;
            let host = self.side(from_client).is_host();
            if rng.percent(80) {
                mutate::structured(rng, &mut pkt, host);
            } else {
                mutate::transport(rng, &mut pkt.dgram.l4);
            }
        }
        let mut frames = pkt.frames(rng.u32());
        let mut origin = self.side(from_client);
        if choice == 1 && rng.percent(35) {
            for f in &mut frames {
                mutate::bytes(rng, f);
            }
            origin = origin.raw();
        }
        Step {
            origin,
            frames,
            from_client,
        }
    }

    /// Where packets of one end enter the router.
    fn side(&self, from_client: bool) -> Origin {
        if from_client {
            self.client_side
        } else {
            self.server_side
        }
    }

    /// An error about the flow's last packet in one direction, sent back
    /// by its receiver (or a router on the way) to its sender.
    fn error(&mut self, rng: &mut Rng) -> Option<Step> {
        let about_client = rng.one_in(2);
        let quote = if about_client {
            self.quote_client.clone()?
        } else {
            self.quote_server.clone()?
        };
        let v = view::view(&crate::wire::Eth::plain().frame(
            if quote.first()? >> 4 == 4 {
                crate::wire::ETH_P_IP
            } else {
                crate::wire::ETH_P_IPV6
            },
            &quote,
        ))?;
        let v4 = v.src.is_ipv4();
        let router_on_path: IpAddr = if v4 {
            wan_v4(254).into()
        } else {
            wan_v6(254).into()
        };
        let origin = if about_client {
            self.server_side
        } else {
            self.client_side
        };
        let host = origin.is_host();
        // The host's errors come from the address the offending packet was
        // sent to, as the kernel's `icmp_send` picks it.
        let on_path = rng.one_in(3) && !host;
        let from = if on_path { router_on_path } else { v.dst };
        let mut pkt = Pkt::new(Datagram {
            net: packets::net(from, v.src),
            l4: packets::error(rng, v4, &quote),
        });
        if rng.one_in(4) {
            mutate::structured(rng, &mut pkt, host);
        }
        Some(Step {
            origin,
            frames: pkt.frames(rng.u32()),
            from_client: !about_client,
        })
    }

    /// Learns from where a step's packet went: the translated tuple the
    /// other end sees, what an error would quote, and the data connection
    /// an FTP announcement asked for (returned, to join the pool).
    pub fn learn(&mut self, rng: &mut Rng, step: &Step, fate: &Fate) -> Option<Flow> {
        // Drawn whatever the fate, so that the generator's stream does not
        // depend on what the datapath did.
        let mut rng = Rng::new(rng.next_u64());
        let delivered = match fate {
            Fate::Out(f) | Fate::Local(f) => f,
            Fate::Gone => return None,
        };
        let v = view::view(delivered)?;
        let ip = delivered[v.l3..].to_vec();
        if step.from_client {
            self.seen = ((v.src, v.sport), (v.dst, v.dport));
            self.quote_client = Some(ip);
        } else {
            self.quote_server = Some(ip);
        }
        if !self.ftp {
            return None;
        }
        let (addr, port) = announcement(delivered, &v)?;
        // Active mode: the server connects to the client's announced
        // address. Passive: the client connects to the server's.
        let data = if step.from_client {
            let server = (self.seen.1.0, 20);
            let ends = (server, (addr, port));
            Flow::data(&mut rng, ends, self.server_side, self.client_side)
        } else {
            let client = (self.client.0, rng.range(40000, 50000) as u16);
            let ends = (client, (addr, port));
            Flow::data(&mut rng, ends, self.client_side, self.server_side)
        };
        Some(data)
    }
}

/// The address and port an FTP PORT, EPRT, 227 or 229 line announces.
fn announcement(frame: &[u8], v: &View) -> Option<End> {
    let l4 = v.l4?;
    let doff = usize::from(frame.get(l4 + 12)? >> 4) * 4;
    let text = std::str::from_utf8(frame.get(l4 + doff..)?).ok()?;
    let numbers =
        |s: &str| -> Option<Vec<u16>> { s.split(',').map(|n| n.trim().parse().ok()).collect() };
    let six = |n: Vec<u16>| -> Option<End> {
        if n.len() != 6 || n.iter().any(|x| *x > 255) {
            return None;
        }
        let a = IpAddr::from([n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8]);
        Some((a, n[4] << 8 | n[5]))
    };
    if let Some(rest) = text.strip_prefix("PORT ") {
        return six(numbers(rest.trim_end())?);
    }
    if let Some(rest) = text.strip_prefix("EPRT ") {
        let parts: Vec<&str> = rest.trim_end().split('|').collect();
        return Some((parts.get(2)?.parse().ok()?, parts.get(3)?.parse().ok()?));
    }
    if text.starts_with("227 ") {
        let inner = text.split('(').nth(1)?.split(')').next()?;
        return six(numbers(inner)?);
    }
    if text.starts_with("229 ") {
        let port = text.split("|||").nth(1)?.split('|').next()?.parse().ok()?;
        return Some((v.src, port));
    }
    None
}
