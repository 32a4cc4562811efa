//! The query reader against hand-made packets: well-formed ones, and every malformed shape
//! we know of (each must be classified, never panic).

use super::*;

/// A query for `s3.storage.example. A` with `arcount` records appended raw.
fn packet(flags: u16, qd: u16, an: u16, ar: u16, question: &[u8], additional: &[u8]) -> Vec<u8> {
    let mut p = vec![0xAB, 0xCD];
    p.extend_from_slice(&flags.to_be_bytes());
    for count in [qd, an, 0, ar] {
        p.extend_from_slice(&count.to_be_bytes());
    }
    p.extend_from_slice(question);
    p.extend_from_slice(additional);
    p
}

const QUESTION: &[u8] = b"\x02s3\x07storage\x07example\x00\x00\x01\x00\x01";
const OPT: &[u8] = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";

fn rcode_of(result: Result<Query<'_>, Rejection>) -> Option<u16> {
    match result {
        Ok(_) => Some(rcode::NOERROR),
        Err(Rejection::Drop) => None,
        Err(Rejection::Reply { rcode, .. }) => Some(rcode),
    }
}

#[test]
fn parses_a_plain_query_and_one_with_edns() {
    let p = packet(0x0100, 1, 0, 0, QUESTION, &[]);
    let query = parse_query(&p).unwrap();
    assert_eq!(query.id, 0xABCD);
    assert_eq!(query.qname, &QUESTION[..QUESTION.len() - 4]);
    assert_eq!((query.qtype, query.qclass), (1, 1));
    assert_eq!(query.edns, None);
    let p = packet(0, 1, 0, 1, QUESTION, OPT);
    let edns = parse_query(&p).unwrap().edns.unwrap();
    assert_eq!(edns.udp_payload, 1232);
    assert_eq!(edns.client_subnet, None);
}

#[test]
fn parses_client_subnet() {
    let mut opt = OPT[..OPT.len() - 2].to_vec();
    opt.extend_from_slice(&[0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 198, 51, 100]);
    let p = packet(0, 1, 0, 1, QUESTION, &opt);
    let subnet = parse_query(&p)
        .unwrap()
        .edns
        .unwrap()
        .client_subnet
        .unwrap();
    assert_eq!(subnet.family, 1);
    assert_eq!(subnet.source_prefix, 24);
    assert_eq!(subnet.address, "198.51.100.0".parse::<IpAddr>().unwrap());
    assert_eq!(subnet.raw_len, 3);
}

#[test]
fn malformed_packets_are_classified() {
    let pointer_loop = b"\xc0\x0c\x00\x01\x00\x01";
    let self_pointer_in_opt = b"\xc0\x1c\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
    let long_label = [&[64u8][..], &[b'a'; 64], b"\x00\x00\x01\x00\x01"].concat();
    let mut long_name = Vec::new();
    for _ in 0..26 {
        long_name.extend_from_slice(b"\x09abcdefghi");
    }
    long_name.extend_from_slice(b"\x00\x00\x01\x00\x01");
    let bad_label_type = b"\x80abc\x00\x00\x01\x00\x01";
    let truncated_question = b"\x02s3\x07stor";
    let two_opts = [OPT, OPT].concat();
    let opt_with_name = b"\x01x\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
    let opt_rdata_overrun = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x09\x00\x08";
    let option_overrun = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x04\x00\x08\x00\x09";
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("empty", vec![], None),
        ("runt header", vec![0; 11], None),
        ("response", packet(0x8000, 1, 0, 0, QUESTION, &[]), None),
        (
            "notify opcode",
            packet(4 << 11, 1, 0, 0, QUESTION, &[]),
            Some(rcode::NOTIMP),
        ),
        (
            "update opcode",
            packet(5 << 11, 1, 0, 0, QUESTION, &[]),
            Some(rcode::NOTIMP),
        ),
        (
            "no question",
            packet(0, 0, 0, 0, &[], &[]),
            Some(rcode::FORMERR),
        ),
        (
            "two questions",
            packet(0, 2, 0, 0, &[QUESTION, QUESTION].concat(), &[]),
            Some(rcode::FORMERR),
        ),
        (
            "answer section in a query",
            packet(0, 1, 1, 0, QUESTION, &[]),
            Some(rcode::FORMERR),
        ),
        (
            "question says 1, has none",
            packet(0, 1, 0, 0, &[], &[]),
            Some(rcode::FORMERR),
        ),
        (
            "pointer loop in the question",
            packet(0, 1, 0, 0, pointer_loop, &[]),
            Some(rcode::FORMERR),
        ),
        (
            "label of 64 octets",
            packet(0, 1, 0, 0, &long_label, &[]),
            Some(rcode::FORMERR),
        ),
        (
            "name over 255 octets",
            packet(0, 1, 0, 0, &long_name, &[]),
            Some(rcode::FORMERR),
        ),
        (
            "reserved label type",
            packet(0, 1, 0, 0, bad_label_type, &[]),
            Some(rcode::FORMERR),
        ),
        (
            "truncated question",
            packet(0, 1, 0, 0, truncated_question, &[]),
            Some(rcode::FORMERR),
        ),
        (
            "missing qtype",
            packet(0, 1, 0, 0, &QUESTION[..QUESTION.len() - 3], &[]),
            Some(rcode::FORMERR),
        ),
        (
            "two OPT records",
            packet(0, 1, 0, 2, QUESTION, &two_opts),
            Some(rcode::FORMERR),
        ),
        (
            "OPT not at the root",
            packet(0, 1, 0, 1, QUESTION, opt_with_name),
            Some(rcode::FORMERR),
        ),
        (
            "OPT owner is a pointer",
            packet(0, 1, 0, 1, QUESTION, self_pointer_in_opt),
            Some(rcode::FORMERR),
        ),
        (
            "arcount larger than the records",
            packet(0, 1, 0, 2, QUESTION, OPT),
            Some(rcode::FORMERR),
        ),
        (
            "OPT rdata past the end",
            packet(0, 1, 0, 1, QUESTION, opt_rdata_overrun),
            Some(rcode::FORMERR),
        ),
        (
            "option past the rdata",
            packet(0, 1, 0, 1, QUESTION, option_overrun),
            Some(rcode::FORMERR),
        ),
        (
            "trailing octets are ignored",
            [packet(0, 1, 0, 0, QUESTION, &[]), vec![1, 2, 3]].concat(),
            Some(rcode::NOERROR),
        ),
    ];
    for (what, bytes, expected) in cases {
        assert_eq!(rcode_of(parse_query(&bytes)), expected, "{what}");
    }
}

#[test]
fn every_prefix_and_every_single_byte_flip_is_handled() {
    let mut opt = OPT[..OPT.len() - 2].to_vec();
    opt.extend_from_slice(&[0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 198, 51, 100]);
    let p = packet(0x0100, 1, 0, 1, QUESTION, &opt);
    for len in 0..p.len() {
        let _ = parse_query(&p[..len]);
    }
    for at in 0..p.len() {
        for value in [0u8, 1, 0x3F, 0x40, 0x80, 0xC0, 0xFF] {
            let mut q = p.clone();
            q[at] = value;
            let _ = parse_query(&q);
        }
    }
}

#[test]
fn lowercases_names_in_wire_form() {
    let mut out = [0u8; 255];
    let len = lowercase_name(b"\x02S3\x07StOrAgE\x00", &mut out);
    assert_eq!(&out[..len], b"\x02s3\x07storage\x00");
}
