//! Malformed packets at the running binary: each gets a proper error or silence, never a
//! crash or a stall, and the server keeps answering.

use std::time::Duration;

use tests::{DnsNode, udp_exchange};

use crate::CONFIG;

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    for v in [flags, qd, an, ns, ar] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    p
}

const QUESTION: &[u8] = b"\x02s3\x07storage\x07example\x00\x00\x01\x00\x01";
const OPT: &[u8] = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";

#[test]
fn malformed_packets_get_an_error_or_silence_and_the_server_survives() {
    let node = DnsNode::start(CONFIG, false);
    let long_label = [&[64u8][..], &[b'x'; 64], b"\x00\x00\x01\x00\x01"].concat();
    let long_name: Vec<u8> = (0..30)
        .flat_map(|_| b"\x09abcdefghi".to_vec())
        .chain(*b"\x00\x00\x01\x00\x01")
        .collect();
    // (what, packet, expected reply rcode or None for silence)
    let cases: Vec<(&str, Vec<u8>, Option<u8>)> = vec![
        ("empty datagram", vec![], None),
        ("truncated header", vec![0x12, 0x34, 0x01], None),
        (
            "header only, no question",
            header(1, 0, 0, 0, 0, 0),
            Some(1),
        ),
        (
            "two questions",
            [
                header(2, 0, 2, 0, 0, 0),
                QUESTION.to_vec(),
                QUESTION.to_vec(),
            ]
            .concat(),
            Some(1),
        ),
        (
            "question count without a question",
            header(3, 0, 1, 0, 0, 0),
            Some(1),
        ),
        (
            "pointer loop",
            [
                header(4, 0, 1, 0, 0, 0),
                b"\xc0\x0c\x00\x01\x00\x01".to_vec(),
            ]
            .concat(),
            Some(1),
        ),
        (
            "forward pointer",
            [
                header(5, 0, 1, 0, 0, 0),
                b"\x01a\xc0\x20\x00\x01\x00\x01".to_vec(),
            ]
            .concat(),
            Some(1),
        ),
        (
            "label of 64 octets",
            [header(6, 0, 1, 0, 0, 0), long_label].concat(),
            Some(1),
        ),
        (
            "name longer than 255",
            [header(7, 0, 1, 0, 0, 0), long_name].concat(),
            Some(1),
        ),
        (
            "two OPT records",
            [
                header(8, 0, 1, 0, 0, 2),
                QUESTION.to_vec(),
                OPT.to_vec(),
                OPT.to_vec(),
            ]
            .concat(),
            Some(1),
        ),
        (
            "OPT cut short",
            [
                header(9, 0, 1, 0, 0, 1),
                QUESTION.to_vec(),
                OPT[..6].to_vec(),
            ]
            .concat(),
            Some(1),
        ),
        (
            "a response (QR set)",
            [header(10, 0x8000, 1, 0, 0, 0), QUESTION.to_vec()].concat(),
            None,
        ),
        (
            "unknown opcode 3",
            [header(11, 3 << 11, 1, 0, 0, 0), QUESTION.to_vec()].concat(),
            Some(4),
        ),
        (
            "random bytes",
            (0..200u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            None,
        ),
    ];
    for (what, packet, expected) in cases {
        let reply = udp_exchange(node.dns, &packet, Duration::from_millis(400));
        match (expected, reply) {
            (None, None) => {}
            (Some(rcode), Some(reply)) => {
                assert!(reply.len() >= 12, "{what}: a full header");
                assert_eq!(&reply[..2], &packet[..2], "{what}: id echoed");
                assert_eq!(reply[2] & 0x80, 0x80, "{what}: QR set");
                assert_eq!(reply[3] & 0x0F, rcode, "{what}: rcode");
            }
            (None, Some(reply)) if what == "random bytes" => {
                // Random bytes may happen to look like a query; any reply must be well formed.
                assert!(reply.len() >= 12);
            }
            (expected, reply) => panic!("{what}: expected {expected:?}, got {reply:?}"),
        }
        assert_eq!(
            node.short(&["static.storage.example"]),
            ["127.0.0.53"],
            "still answering after: {what}"
        );
    }
}
