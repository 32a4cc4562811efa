//! Golden tests of DNS responses: a query in, the reply parsed back with hickory-proto (an
//! independent decoder) and compared field by field.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::opt::EdnsOption;

use super::*;
use crate::control::Control;

const CONFIG: &str = r#"
[zone]
origin = "storage.example."
ns = ["ns1", "ns2"]
soa = { rname = "hostmaster", serial = 42, minimum = 5, ttl = 3600 }
records = [
    "ns1 3600 IN A 127.0.0.1",
    "static 300 IN A 127.0.0.53",
    "www 300 IN CNAME s3",
    "alias 60 IN CNAME www",
    "out 60 IN CNAME example.net.",
    "_s3._tcp 300 IN SRV 0 100 80 s3",
    "big 60 IN TXT \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
    "big 60 IN TXT \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"",
    "big 60 IN TXT \"ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"",
    "big 60 IN TXT \"ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\"",
    "big 60 IN TXT \"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"",
]

[dns]
debug_queries = true

[[site]]
name = "fra"
location = { lat = 50.1109, lon = 8.6821 }
client_networks = ["127.1.0.0/16"]

[[site]]
name = "iad"
location = { lat = 39.0438, lon = -77.4874 }
client_networks = ["127.2.0.0/16"]

[[service]]
name = "s3"
members = [
    { site = "fra", node = "fra-1", address = "127.0.10.1" },
    { site = "fra", node = "fra-2", address = "127.0.10.2" },
    { site = "fra", node = "fra-v6", address = "2001:db8:10::1" },
    { site = "iad", node = "iad-1", address = "127.0.20.1" },
    { site = "iad", node = "iad-2", address = "127.0.20.2" },
]

[[service]]
name = "zero"
ttl = 0
policy = "failover"
failover_order = ["iad"]
members = [
    { site = "fra", address = "127.0.10.1" },
    { site = "iad", address = "127.0.20.1" },
]
"#;

fn control(ecs: bool) -> Control {
    let mut config = topology::Config::from_toml(CONFIG, 1).expect("test config");
    config.node.dns.ecs = ecs;
    Control::new(
        Arc::new(config.deployment),
        Arc::new(config.node.dns),
        Arc::new(geoip_data::GeoDb::test_database()),
        Default::default(),
        topology::Timestamp(1_000),
    )
    .expect("control")
}

/// Builds a query: `name`, `qtype`, and optionally an OPT record (payload, version, ECS).
struct QueryBuilder {
    id: u16,
    flags: u16,
    name: String,
    qtype: u16,
    qclass: u16,
    opt: Option<(u16, u8)>,
    ecs: Option<Vec<u8>>,
}

fn q(name: &str, qtype: u16) -> QueryBuilder {
    QueryBuilder {
        id: 0x1234,
        flags: flags::RD,
        name: name.to_owned(),
        qtype,
        qclass: 1,
        opt: None,
        ecs: None,
    }
}

impl QueryBuilder {
    fn edns(mut self, payload: u16) -> Self {
        self.opt = Some((payload, 0));
        self
    }
    fn version(mut self, version: u8) -> Self {
        self.opt = Some((1232, version));
        self
    }
    /// ECS with `subnet` like "198.51.100.0/24".
    fn ecs(mut self, subnet: &str) -> Self {
        let net: ipnet::IpNet = subnet.parse().unwrap();
        let (family, octets) = match net.addr() {
            IpAddr::V4(a) => (1u16, a.octets().to_vec()),
            IpAddr::V6(a) => (2u16, a.octets().to_vec()),
        };
        let mut data = family.to_be_bytes().to_vec();
        data.push(net.prefix_len());
        data.push(0);
        data.extend_from_slice(&octets[..(net.prefix_len() as usize).div_ceil(8)]);
        self.ecs = Some(data);
        self.opt.get_or_insert((1232, 0));
        self
    }
    fn raw_ecs(mut self, data: Vec<u8>) -> Self {
        self.ecs = Some(data);
        self.opt.get_or_insert((1232, 0));
        self
    }
    fn class(mut self, qclass: u16) -> Self {
        self.qclass = qclass;
        self
    }
    fn build(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&self.id.to_be_bytes());
        p.extend_from_slice(&self.flags.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.opt.is_some())]);
        for label in self.name.trim_end_matches('.').split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&self.qtype.to_be_bytes());
        p.extend_from_slice(&self.qclass.to_be_bytes());
        if let Some((payload, version)) = self.opt {
            p.push(0);
            p.extend_from_slice(&41u16.to_be_bytes());
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, version, 0, 0]);
            match &self.ecs {
                None => p.extend_from_slice(&[0, 0]),
                Some(data) => {
                    p.extend_from_slice(&((data.len() + 4) as u16).to_be_bytes());
                    p.extend_from_slice(&8u16.to_be_bytes());
                    p.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    p.extend_from_slice(data);
                }
            }
        }
        p
    }
}

fn ask_raw(
    control: &Control,
    packet: &[u8],
    peer: &str,
    transport: Transport,
    rotation: u32,
) -> Option<Vec<u8>> {
    let snapshot = control.snapshot();
    let mut out = Vec::new();
    let outcome = respond(
        &snapshot,
        packet,
        peer.parse().unwrap(),
        transport,
        rotation,
        &mut out,
    );
    outcome.reply.then_some(out)
}

fn ask(control: &Control, query: &QueryBuilder, peer: &str) -> Message {
    let bytes = ask_raw(control, &query.build(), peer, Transport::Udp, 0).expect("a reply");
    Message::from_vec(&bytes).expect("the reply decodes")
}

fn answers(message: &Message) -> Vec<String> {
    let mut out: Vec<String> = message
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::CNAME(c) => format!("CNAME {}", c.0),
            RData::TXT(t) => format!("TXT {}", t),
            RData::SOA(s) => format!("SOA {}", s.mname),
            RData::NS(n) => format!("NS {}", n.0),
            RData::SRV(s) => format!("SRV {} {}", s.port, s.target),
            other => format!("{other:?}"),
        })
        .collect();
    out.sort();
    out
}

fn ecs_scope(message: &Message) -> Option<(u8, u8)> {
    message
        .edns
        .as_ref()?
        .options()
        .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
        .map(|o| match o {
            EdnsOption::Subnet(s) => (s.source_prefix(), s.scope_prefix()),
            _ => unreachable!(),
        })
}

#[allow(clippy::too_many_arguments)] // one row of the golden table
/// One golden case: query, source address, expected rcode, AA bit, sorted answers,
/// authority count, ECS (source, scope).
fn check(
    control: &Control,
    query: QueryBuilder,
    peer: &str,
    rcode: ResponseCode,
    aa: bool,
    expected: &[&str],
    authorities: usize,
    ecs: Option<(u8, u8)>,
) {
    let message = ask(control, &query, peer);
    let what = format!("{} {} from {peer}", query.name, query.qtype);
    assert_eq!(message.metadata.response_code, rcode, "{what}: rcode");
    assert_eq!(message.metadata.authoritative, aa, "{what}: AA");
    assert_eq!(message.metadata.id, 0x1234, "{what}: id");
    assert!(message.metadata.recursion_desired, "{what}: RD copied");
    assert!(!message.metadata.recursion_available, "{what}: no RA");
    assert_eq!(answers(&message), expected, "{what}: answers");
    assert_eq!(
        message.authorities.len(),
        authorities,
        "{what}: authority count"
    );
    assert_eq!(ecs_scope(&message), ecs, "{what}: ECS");
}

use ResponseCode::*;

#[test]
fn golden_answers() {
    let c = control(true);
    let fra = &["127.0.10.1", "127.0.10.2"];
    let iad = &["127.0.20.1", "127.0.20.2"];
    // Service name: by source address (site network), by ECS (site network, GeoIP).
    check(
        &c,
        q("s3.storage.example", 1),
        "127.1.0.5",
        NoError,
        true,
        fra,
        0,
        None,
    );
    check(
        &c,
        q("s3.storage.example", 1),
        "127.2.9.9",
        NoError,
        true,
        iad,
        0,
        None,
    );
    check(
        &c,
        q("s3.storage.example", 1).ecs("127.2.0.0/24"),
        "127.1.0.5",
        NoError,
        true,
        iad,
        0,
        Some((24, 16)),
    );
    check(
        &c,
        q("s3.storage.example", 1).ecs("198.51.100.0/24"),
        "127.1.0.5",
        NoError,
        true,
        iad,
        0,
        Some((24, 24)),
    );
    check(
        &c,
        q("s3.storage.example", 1).ecs("192.0.2.0/24"),
        "127.2.0.5",
        NoError,
        true,
        fra,
        0,
        Some((24, 24)),
    );
    // A /0 source: use the resolver's address, scope 0.
    check(
        &c,
        q("s3.storage.example", 1).ecs("0.0.0.0/0"),
        "127.2.0.5",
        NoError,
        true,
        iad,
        0,
        Some((0, 0)),
    );
    // IPv6 ECS from GeoIP: Ashburn; AAAA from fra's network: the v6 member.
    check(
        &c,
        q("s3.storage.example", 1).ecs("2001:db8:2::/56"),
        "127.1.0.5",
        NoError,
        true,
        iad,
        0,
        Some((56, 48)),
    );
    check(
        &c,
        q("s3.storage.example", 28),
        "127.1.0.5",
        NoError,
        true,
        &["2001:db8:10::1"],
        0,
        None,
    );
    // iad has no IPv6 member: AAAA goes to fra, the next site that has one.
    check(
        &c,
        q("s3.storage.example", 28),
        "127.2.0.5",
        NoError,
        true,
        &["2001:db8:10::1"],
        0,
        None,
    );
    // Other types at a service name: NODATA with the SOA.
    check(
        &c,
        q("s3.storage.example", 16),
        "127.1.0.5",
        NoError,
        true,
        &[],
        1,
        None,
    );
    // A failover service does not depend on the client: ECS scope 0.
    check(
        &c,
        q("zero.storage.example", 1).ecs("127.1.0.0/24"),
        "127.1.0.5",
        NoError,
        true,
        &["127.0.20.1"],
        0,
        Some((24, 0)),
    );
    // Static data, CNAME chains into a service, empty non-terminals, NXDOMAIN.
    check(
        &c,
        q("static.storage.example", 1),
        "127.1.0.5",
        NoError,
        true,
        &["127.0.0.53"],
        0,
        None,
    );
    check(
        &c,
        q("www.storage.example", 1),
        "127.2.0.5",
        NoError,
        true,
        &["127.0.20.1", "127.0.20.2", "CNAME s3.storage.example."],
        0,
        None,
    );
    check(
        &c,
        q("alias.storage.example", 1),
        "127.1.0.5",
        NoError,
        true,
        &[
            "127.0.10.1",
            "127.0.10.2",
            "CNAME s3.storage.example.",
            "CNAME www.storage.example.",
        ],
        0,
        None,
    );
    check(
        &c,
        q("www.storage.example", 5),
        "127.1.0.5",
        NoError,
        true,
        &["CNAME s3.storage.example."],
        0,
        None,
    );
    check(
        &c,
        q("out.storage.example", 1),
        "127.1.0.5",
        NoError,
        true,
        &["CNAME example.net."],
        0,
        None,
    );
    check(
        &c,
        q("_tcp.storage.example", 1),
        "127.1.0.5",
        NoError,
        true,
        &[],
        1,
        None,
    );
    check(
        &c,
        q("_s3._tcp.storage.example", 33),
        "127.1.0.5",
        NoError,
        true,
        &["SRV 80 s3.storage.example."],
        0,
        None,
    );
    check(
        &c,
        q("nope.storage.example", 1),
        "127.1.0.5",
        NXDomain,
        true,
        &[],
        1,
        None,
    );
    check(
        &c,
        q("deep.nope.storage.example", 1).edns(1232),
        "127.1.0.5",
        NXDomain,
        true,
        &[],
        1,
        None,
    );
    check(
        &c,
        q("storage.example", 6),
        "127.1.0.5",
        NoError,
        true,
        &["SOA ns1.storage.example."],
        0,
        None,
    );
    check(
        &c,
        q("storage.example", 2),
        "127.1.0.5",
        NoError,
        true,
        &["NS ns1.storage.example.", "NS ns2.storage.example."],
        0,
        None,
    );
    // ANY: one RRset (RFC 8482).
    check(
        &c,
        q("storage.example", 255),
        "127.1.0.5",
        NoError,
        true,
        &["SOA ns1.storage.example."],
        0,
        None,
    );
    check(
        &c,
        q("s3.storage.example", 255),
        "127.1.0.5",
        NoError,
        true,
        fra,
        0,
        None,
    );
    // Outside the zone, other classes, zone transfers: REFUSED, not authoritative.
    check(
        &c,
        q("example.com", 1),
        "127.1.0.5",
        Refused,
        false,
        &[],
        0,
        None,
    );
    check(
        &c,
        q("xstorage.example", 1),
        "127.1.0.5",
        Refused,
        false,
        &[],
        0,
        None,
    );
    check(
        &c,
        q("static.storage.example", 1).class(3),
        "127.1.0.5",
        Refused,
        false,
        &[],
        0,
        None,
    );
    check(
        &c,
        q("storage.example", 252),
        "127.1.0.5",
        Refused,
        false,
        &[],
        0,
        None,
    );
}

#[test]
fn negative_answers_carry_the_soa_with_the_negative_ttl() {
    let c = control(true);
    let message = ask(&c, &q("nope.storage.example", 1), "127.1.0.5");
    let soa = &message.authorities[0];
    assert_eq!(soa.name.to_string(), "storage.example.");
    assert_eq!(soa.ttl, 5, "min(SOA TTL 3600, minimum 5) per RFC 2308");
}

#[test]
fn ttls_come_from_the_service() {
    let c = control(true);
    let message = ask(&c, &q("s3.storage.example", 1), "127.1.0.5");
    assert!(message.answers.iter().all(|r| r.ttl == 1));
    let message = ask(&c, &q("zero.storage.example", 1), "127.1.0.5");
    assert_eq!(message.answers[0].ttl, 0);
}

#[test]
fn case_of_the_question_is_preserved() {
    let c = control(true);
    let message = ask(&c, &q("S3.Storage.EXAMPLE", 1), "127.1.0.5");
    assert_eq!(message.queries[0].name().to_string(), "S3.Storage.EXAMPLE.");
    assert_eq!(message.answers.len(), 2);
}

#[test]
fn rotations_spread_the_first_answer() {
    let c = control(true);
    let packet = q("s3.storage.example", 1).build();
    let mut firsts = std::collections::BTreeSet::new();
    for rotation in 0..4 {
        let bytes = ask_raw(&c, &packet, "127.1.0.5", Transport::Udp, rotation).unwrap();
        let message = Message::from_vec(&bytes).unwrap();
        firsts.insert(format!("{:?}", message.answers[0].data));
    }
    assert_eq!(firsts.len(), 2, "both members come first in some rotation");
}

#[test]
fn udp_truncation_keeps_the_question_and_the_opt_record() {
    let c = control(true);
    // Without EDNS the limit is 512 octets.
    let message = ask(&c, &q("big.storage.example", 16), "127.1.0.5");
    assert!(message.metadata.truncation);
    assert!(message.answers.is_empty());
    assert_eq!(message.queries.len(), 1);
    assert!(message.edns.is_none());
    // EDNS 512: still too big; TC with the OPT record kept.
    let message = ask(&c, &q("big.storage.example", 16).edns(512), "127.1.0.5");
    assert!(message.metadata.truncation);
    assert!(message.edns.is_some(), "OPT kept on TC");
    // EDNS 4096 is capped at 1232, which fits.
    let message = ask(&c, &q("big.storage.example", 16).edns(4096), "127.1.0.5");
    assert!(!message.metadata.truncation);
    assert_eq!(message.answers.len(), 5);
    assert_eq!(message.edns.as_ref().unwrap().max_payload(), 1232);
    // TCP is never truncated.
    let bytes = ask_raw(
        &c,
        &q("big.storage.example", 16).build(),
        "127.1.0.5",
        Transport::Tcp,
        0,
    )
    .unwrap();
    let message = Message::from_vec(&bytes).unwrap();
    assert!(!message.metadata.truncation);
    assert_eq!(message.answers.len(), 5);
}

#[test]
fn edns_errors() {
    let c = control(true);
    // BADVERS: extended rcode 16, OPT in the reply, version 0.
    let message = ask(&c, &q("s3.storage.example", 1).version(1), "127.1.0.5");
    // 16 is both BADVERS and BADSIG to a decoder; the OPT record makes it BADVERS.
    assert_eq!(u16::from(message.metadata.response_code), 16);
    assert_eq!(message.edns.as_ref().unwrap().version(), 0);
    // ECS with bits set beyond the source prefix, or a scope in the query: FORMERR.
    for data in [
        vec![0, 1, 16, 0, 127, 1, 5],
        vec![0, 1, 24, 8, 198, 51, 100],
        vec![0, 3, 0, 0],
        vec![0, 1, 33, 0, 1, 2, 3, 4, 5],
    ] {
        let message = ask(
            &c,
            &q("s3.storage.example", 1).raw_ecs(data.clone()),
            "127.1.0.5",
        );
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::FormErr,
            "{data:?}"
        );
    }
}

#[test]
fn ecs_disabled_ignores_the_option_and_does_not_echo_it() {
    let c = control(false);
    let message = ask(
        &c,
        &q("s3.storage.example", 1).ecs("127.2.0.0/24"),
        "127.1.0.5",
    );
    assert_eq!(answers(&message), ["127.0.10.1", "127.0.10.2"]);
    assert_eq!(ecs_scope(&message), None);
}

#[test]
fn explain_txt_names_the_site() {
    let c = control(true);
    let message = ask(
        &c,
        &q("_explain.s3.storage.example", 16).ecs("198.51.100.0/24"),
        "127.1.0.5",
    );
    let text = answers(&message).join(" ");
    assert!(text.contains("answer: site iad"), "{text}");
    assert!(text.contains("geoip NA/US"), "{text}");
}

#[test]
fn explain_and_status_only_to_debug_networks() {
    let c = control(true);
    // The default debug_networks are loopback: a resolver elsewhere is refused, whatever
    // client subnet it speaks for, and the normal names still answer it.
    for name in ["_explain.s3.storage.example", "_status.storage.example"] {
        let message = ask(&c, &q(name, 16).ecs("127.1.0.0/24"), "198.51.100.7");
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::Refused,
            "{name}"
        );
        assert!(message.answers.is_empty(), "{name}");
        let message = ask(&c, &q(name, 16), "::1");
        assert_eq!(
            message.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(!message.answers.is_empty(), "{name}");
    }
    let message = ask(&c, &q("s3.storage.example", 1), "198.51.100.7");
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&message).len(), 2);
}

#[test]
fn admin_drain_moves_answers_on_the_next_snapshot() {
    let c = control(true);
    let mut machine = state_store::Machine::default();
    Arc::make_mut(&mut machine.sites)
        .entry("fra".into())
        .or_default()
        .admin = topology::AdminState::Drained;
    c.apply_machine(Arc::new(machine), topology::Timestamp(2_000));
    let message = ask(&c, &q("s3.storage.example", 1), "127.1.0.5");
    assert_eq!(answers(&message), ["127.0.20.1", "127.0.20.2"]);
}

#[test]
fn rejected_packets() {
    let c = control(true);
    let good = q("s3.storage.example", 1).build();
    let rcode_of = |packet: &[u8]| -> Option<u8> {
        ask_raw(&c, packet, "127.1.0.5", Transport::Udp, 0).map(|reply| reply[3] & 0x0F)
    };
    // A response (QR set) and runts get no reply at all.
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(rcode_of(&response), None);
    assert_eq!(rcode_of(&good[..11]), None);
    assert_eq!(rcode_of(&[]), None);
    // Unknown opcode: NOTIMP.
    let mut status = good.clone();
    status[2] |= 2 << 3;
    assert_eq!(rcode_of(&status), Some(4));
    // Zero or two questions: FORMERR.
    let mut none = good.clone();
    none[5] = 0;
    assert_eq!(rcode_of(&none), Some(1));
    let mut two = good.clone();
    two[5] = 2;
    assert_eq!(rcode_of(&two), Some(1));
}
