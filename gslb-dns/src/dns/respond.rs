//! Query in, response bytes out: the whole authoritative logic of the DNS front, over one
//! [`Snapshot`]. Responses are assembled from precomputed record tails; owner names are
//! compression pointers into the question (or into a CNAME target written earlier).

use std::net::IpAddr;

use topology::records::rtype;
use topology::{Family, ServiceId, SiteId};

use super::snapshot::{PackedVariant, Snapshot};
use super::wire::{self, ClientSubnet, HEADER_LEN, Query, Rejection, flags, rcode};
use super::zone::{Node, RrSet, ZoneData, rr_tail};

/// How the query arrived (UDP answers are size-limited and may be truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What happened, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// False when the packet deserves no reply.
    pub reply: bool,
    pub rcode: u16,
    pub service: Option<ServiceId>,
    pub site: Option<SiteId>,
    pub truncated: bool,
}

/// The longest CNAME chain followed inside the zone.
const MAX_CNAME_CHAIN: usize = 8;

/// Answers `packet` from `snapshot` into `out` (cleared first). `rotation` picks which
/// rotation of a multi-answer RRset is handed out.
pub fn respond(
    snapshot: &Snapshot,
    packet: &[u8],
    peer: IpAddr,
    transport: Transport,
    rotation: u32,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    let settings = &*snapshot.dns;
    let query = match wire::parse_query(packet) {
        Ok(query) => query,
        Err(Rejection::Drop) => return Outcome::default(),
        Err(Rejection::Reply {
            id,
            flags,
            rcode,
            question_len,
            edns,
        }) => {
            let w = Writer::start(
                out,
                id,
                reply_flags(flags, false),
                &packet[HEADER_LEN..HEADER_LEN + question_len],
            );
            let opt = edns.then_some(Opt {
                payload: settings.max_udp_payload,
                rcode,
                dnssec_ok: false,
                subnet: None,
                scope: 0,
            });
            w.finish(rcode, opt.as_ref(), usize::MAX);
            return Outcome {
                reply: true,
                rcode,
                ..Outcome::default()
            };
        }
    };
    let client_subnet = if settings.ecs {
        query.edns.and_then(|e| e.client_subnet)
    } else {
        None
    };
    let mut answer = Answer {
        rcode: rcode::NOERROR,
        authoritative: true,
        scope: 0,
        service: None,
        site: None,
    };
    let mut w = Writer::start(out, query.id, 0, query.question);
    let mut lower = [0u8; 255];
    let qname_len = wire::lowercase_name(query.qname, &mut lower);
    let qname = &lower[..qname_len];
    if query.qclass != 1 || matches!(query.qtype, 251 | 252) {
        answer.refuse();
    } else if query.qtype == rtype::OPT {
        answer.rcode = rcode::FORMERR;
        answer.authoritative = false;
    } else if let Some(apex_at) = apex_offset(&snapshot.zone, qname) {
        let ctx = Context {
            snapshot,
            query: &query,
            client: client_address(client_subnet, peer),
            peer,
            rotation,
            soa_owner: pointer(HEADER_LEN + apex_at),
        };
        ctx.answer_in_zone(qname, &mut w, &mut answer);
    } else {
        answer.refuse();
    }
    let limit = match (transport, query.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(edns)) => {
            usize::from(edns.udp_payload.clamp(512, settings.max_udp_payload))
        }
    };
    let opt = query.edns.map(|edns| Opt {
        payload: settings.max_udp_payload,
        rcode: answer.rcode,
        dnssec_ok: edns.dnssec_ok,
        subnet: client_subnet,
        scope: answer.scope,
    });
    w.flags = reply_flags(query.flags, answer.authoritative);
    let truncated = w.finish(answer.rcode, opt.as_ref(), limit);
    Outcome {
        reply: true,
        rcode: answer.rcode,
        service: answer.service,
        site: answer.site,
        truncated,
    }
}

/// The address that decides the answer: the client subnet when one was sent (and not /0),
/// else the resolver's source address.
fn client_address(subnet: Option<ClientSubnet>, peer: IpAddr) -> IpAddr {
    match subnet {
        Some(s) if s.source_prefix > 0 => s.address,
        _ => peer.to_canonical(),
    }
}

fn reply_flags(query_flags: u16, authoritative: bool) -> u16 {
    let mut f = flags::QR | (query_flags & (flags::OPCODE_MASK | flags::RD | flags::CD));
    if authoritative {
        f |= flags::AA;
    }
    f
}

fn pointer(offset: usize) -> [u8; 2] {
    (0xC000u16 | offset as u16).to_be_bytes()
}

/// Offset in `qname` where the zone's origin starts, when `qname` is in the zone.
fn apex_offset(zone: &ZoneData, qname: &[u8]) -> Option<usize> {
    let labels = super::zone::label_count(qname);
    if labels < zone.origin_labels {
        return None;
    }
    let mut at = 0;
    for _ in 0..labels - zone.origin_labels {
        at += 1 + qname[at] as usize;
    }
    (qname[at..] == zone.origin[..]).then_some(at)
}

struct Answer {
    rcode: u16,
    authoritative: bool,
    scope: u8,
    service: Option<ServiceId>,
    site: Option<SiteId>,
}

impl Answer {
    fn refuse(&mut self) {
        self.rcode = rcode::REFUSED;
        self.authoritative = false;
    }
}

struct Context<'a> {
    snapshot: &'a Snapshot,
    query: &'a Query<'a>,
    client: IpAddr,
    /// The packet's source (the resolver), not the client subnet it may speak for.
    peer: IpAddr,
    rotation: u32,
    soa_owner: [u8; 2],
}

impl Context<'_> {
    fn answer_in_zone(&self, qname: &[u8], w: &mut Writer<'_>, answer: &mut Answer) {
        let zone = &self.snapshot.zone;
        let qtype = self.query.qtype;
        let mut owner = pointer(HEADER_LEN);
        let mut name: &[u8] = qname;
        for _ in 0..=MAX_CNAME_CHAIN {
            let Some(node) = zone.nodes.get(name) else {
                answer.rcode = rcode::NXDOMAIN;
                w.authority(self.soa_owner, &zone.negative_soa);
                return;
            };
            if let Some(service) = node
                .service
                .filter(|_| matches!(qtype, rtype::A | rtype::AAAA | rtype::ANY))
            {
                return self.service_answer(service, owner, w, answer);
            }
            let debug = node.explain.is_some() || node.status;
            if debug && !self.snapshot.dns.debug_allowed(self.peer) {
                // Large answers about the cluster's inner state: only for dns.debug_networks.
                return answer.refuse();
            }
            if let Some(service) = node
                .explain
                .filter(|_| matches!(qtype, rtype::TXT | rtype::ANY))
            {
                return self.explain_answer(service, owner, w, answer);
            }
            if node.status && matches!(qtype, rtype::TXT | rtype::ANY) {
                return self.status_answer(owner, w);
            }
            match (&node.cname_target, qtype) {
                (Some(target), t) if t != rtype::CNAME && t != rtype::ANY => {
                    let set = node
                        .rrset(rtype::CNAME)
                        .expect("a CNAME node has its record");
                    let target_at = w.out.len() + 2 + 10;
                    w.answers(owner, set);
                    if target_at >= 0x4000 || apex_offset(zone, target).is_none() {
                        return;
                    }
                    owner = pointer(target_at);
                    name = target;
                    continue;
                }
                _ => {}
            }
            match pick_rrset(node, qtype) {
                Some(set) => w.answers(owner, set),
                None => w.authority(self.soa_owner, &zone.negative_soa),
            }
            return;
        }
    }

    fn service_answer(
        &self,
        service: ServiceId,
        owner: [u8; 2],
        w: &mut Writer<'_>,
        answer: &mut Answer,
    ) {
        let snapshot = self.snapshot;
        let family = if self.query.qtype == rtype::AAAA {
            Family::V6
        } else {
            Family::V4
        };
        let (class, block_len) = snapshot.classes.lookup(self.client);
        if snapshot.answers.location_scoped(service) {
            answer.scope = block_len;
        }
        answer.service = Some(service);
        let packed = snapshot.answers.get(service, family, class);
        if packed.variants.is_empty() {
            w.authority(self.soa_owner, &snapshot.zone.negative_soa);
            return;
        }
        let variant: &PackedVariant =
            &packed.variants[self.rotation as usize % packed.variants.len()];
        answer.site = variant.site;
        w.records(owner, variant.count, &variant.tails, Section::Answer);
    }

    fn explain_answer(
        &self,
        service: ServiceId,
        owner: [u8; 2],
        w: &mut Writer<'_>,
        answer: &mut Answer,
    ) {
        let snapshot = self.snapshot;
        let (location, network) = snapshot.locate(self.client);
        let (class, block_len) = snapshot.classes.lookup(self.client);
        answer.scope = block_len;
        let explained = topology::explain::explain_with_class(
            &snapshot.deployment,
            &snapshot.state,
            service,
            Family::V4,
            &location,
            snapshot.classes.class(class),
            // The time the answers were computed at, so the explanation matches them.
            snapshot.built_at,
        );
        let mut lines = vec![format!(
            "client {} via {}",
            self.client,
            network.as_deref().unwrap_or("no network")
        )];
        lines.extend(explained.summary_lines());
        w.records(owner, 1, &txt_tail(&lines), Section::Answer);
    }
}

impl Context<'_> {
    /// `_status.<origin>` TXT: this node's view of the store.
    fn status_answer(&self, owner: [u8; 2], w: &mut Writer<'_>) {
        let store = &self.snapshot.store;
        let lines = [
            format!(
                "node {} applied {} leader {} term {}",
                store.node_id, store.applied, store.leader, store.term
            ),
            match store.degraded_since {
                Some(since) => format!(
                    "degraded since {} ms: answering from the last applied state",
                    since.0
                ),
                None => "degraded no".to_owned(),
            },
            format!("snapshot generation {}", self.snapshot.generation),
        ];
        w.records(owner, 1, &txt_tail(&lines), Section::Answer);
    }
}

/// A TXT record (TTL 0) of one character string per line, each cut at 255 octets.
fn txt_tail(lines: &[String]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for line in lines {
        let bytes = &line.as_bytes()[..line.len().min(255)];
        rdata.push(bytes.len() as u8);
        rdata.extend_from_slice(bytes);
    }
    let mut tail = Vec::new();
    rr_tail(rtype::TXT, 0, &rdata, &mut tail);
    tail
}

/// The RRset answering `qtype` at `node`; ANY gets one RRset (RFC 8482 minimal answer).
fn pick_rrset(node: &Node, qtype: u16) -> Option<&RrSet> {
    if qtype == rtype::ANY {
        node.rrsets.first()
    } else {
        node.rrset(qtype)
    }
}

/// The OPT record of a reply.
struct Opt {
    payload: u16,
    rcode: u16,
    dnssec_ok: bool,
    subnet: Option<ClientSubnet>,
    scope: u8,
}

#[derive(Clone, Copy)]
enum Section {
    Answer,
    Authority,
}

/// Appends records to a reply and fixes up the header at the end.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    id: u16,
    flags: u16,
    question_end: usize,
    qdcount: u16,
    ancount: u16,
    nscount: u16,
}

impl<'a> Writer<'a> {
    fn start(out: &'a mut Vec<u8>, id: u16, flags: u16, question: &[u8]) -> Writer<'a> {
        out.clear();
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        out.extend_from_slice(question);
        Writer {
            id,
            flags,
            question_end: out.len(),
            qdcount: u16::from(!question.is_empty()),
            ancount: 0,
            nscount: 0,
            out,
        }
    }

    /// `count` records whose tails are concatenated in `tails`, each given `owner`.
    fn records(&mut self, owner: [u8; 2], count: u16, tails: &[u8], section: Section) {
        let mut at = 0;
        for _ in 0..count {
            let rdlen = u16::from_be_bytes([tails[at + 8], tails[at + 9]]) as usize;
            let end = at + 10 + rdlen;
            self.out.extend_from_slice(&owner);
            self.out.extend_from_slice(&tails[at..end]);
            at = end;
        }
        match section {
            Section::Answer => self.ancount += count,
            Section::Authority => self.nscount += count,
        }
    }

    fn answers(&mut self, owner: [u8; 2], set: &RrSet) {
        self.records(owner, set.count, &set.tails, Section::Answer);
    }

    fn authority(&mut self, owner: [u8; 2], soa_tail: &[u8]) {
        self.records(owner, 1, soa_tail, Section::Authority);
    }

    /// Appends the OPT record and writes the header. If the reply exceeds `limit`, its
    /// records are dropped and TC set; the question and the OPT record stay (RFC 6891
    /// section 7). Returns whether it truncated.
    fn finish(self, rcode: u16, opt: Option<&Opt>, limit: usize) -> bool {
        let mut flags = self.flags | (rcode & 0x000F);
        let (mut ancount, mut nscount) = (self.ancount, self.nscount);
        let truncated = self.out.len() + opt.map_or(0, Opt::len) > limit;
        if truncated {
            self.out.truncate(self.question_end);
            flags |= wire::flags::TC;
            ancount = 0;
            nscount = 0;
        }
        if let Some(opt) = opt {
            write_opt(opt, self.out);
        }
        let header = &mut self.out[..HEADER_LEN];
        header[0..2].copy_from_slice(&self.id.to_be_bytes());
        header[2..4].copy_from_slice(&flags.to_be_bytes());
        header[4..6].copy_from_slice(&self.qdcount.to_be_bytes());
        header[6..8].copy_from_slice(&ancount.to_be_bytes());
        header[8..10].copy_from_slice(&nscount.to_be_bytes());
        header[10..12].copy_from_slice(&u16::from(opt.is_some()).to_be_bytes());
        truncated
    }
}

impl Opt {
    /// Encoded length: the fixed part, plus the Client Subnet option when echoed.
    fn len(&self) -> usize {
        11 + self.subnet.map_or(0, |s| 8 + s.raw_len)
    }
}

fn write_opt(opt: &Opt, out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&opt.payload.to_be_bytes());
    let extended_rcode = (opt.rcode >> 4) as u8;
    let do_flag = if opt.dnssec_ok { 0x80 } else { 0 };
    out.extend_from_slice(&[extended_rcode, 0, do_flag, 0]);
    match opt.subnet {
        None => out.extend_from_slice(&0u16.to_be_bytes()),
        Some(subnet) => {
            let mut address = [0u8; 16];
            match subnet.address {
                IpAddr::V4(a) => address[..4].copy_from_slice(&a.octets()),
                IpAddr::V6(a) => address.copy_from_slice(&a.octets()),
            }
            let raw = &address[..subnet.raw_len];
            let option_len = 4 + raw.len() as u16;
            // A /0 source means "do not use my address": the scope must be 0 too.
            let scope = if subnet.source_prefix == 0 {
                0
            } else {
                opt.scope
            };
            out.extend_from_slice(&(4 + option_len).to_be_bytes());
            out.extend_from_slice(&wire::OPTION_ECS.to_be_bytes());
            out.extend_from_slice(&option_len.to_be_bytes());
            out.extend_from_slice(&subnet.family.to_be_bytes());
            out.push(subnet.source_prefix);
            out.push(scope);
            out.extend_from_slice(raw);
        }
    }
}

#[cfg(test)]
mod tests;
