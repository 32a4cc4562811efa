//! DNS protocol behaviour of the running binary, seen through `dig` and `kdig`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tests::{DnsNode, flags, kdig_at, status};

use crate::CONFIG;

const FRA: [&str; 2] = ["127.0.10.1", "127.0.10.2"];
const IAD: [&str; 2] = ["127.0.20.1", "127.0.20.2"];
const SIN: [&str; 2] = ["127.0.30.1", "127.0.30.2"];

#[test]
fn the_embedded_default_answers_the_readme_example() {
    let node = DnsNode::start_default();
    assert_eq!(
        node.short(&["s3.storage.example", "A", "+subnet=198.51.100.0/24"]),
        IAD
    );
    assert_eq!(
        node.short(&["s3.storage.example", "A", "+subnet=127.1.0.0/16"]),
        FRA
    );
    assert_eq!(node.short(&["static.storage.example", "A"]), ["127.0.0.53"]);
}

#[test]
fn answers_by_source_address_and_by_client_subnet() {
    let node = DnsNode::start(CONFIG, false);
    for (args, expected) in [
        (vec!["-b", "127.1.0.9", "s3.storage.example"], FRA),
        (vec!["-b", "127.2.0.9", "s3.storage.example"], IAD),
        (vec!["-b", "127.3.0.9", "s3.storage.example"], SIN),
        (vec!["s3.storage.example", "+subnet=192.0.2.0/24"], FRA),
        (vec!["s3.storage.example", "+subnet=198.51.100.0/24"], IAD),
        (vec!["s3.storage.example", "+subnet=203.0.113.0/24"], SIN),
        (
            vec![
                "-b",
                "127.1.0.9",
                "s3.storage.example",
                "+subnet=127.2.0.0/24",
            ],
            IAD,
        ),
    ] {
        assert_eq!(node.short(&args), expected, "dig {args:?}");
    }
    assert_eq!(
        node.short(&["s3.storage.example", "AAAA", "+subnet=127.2.0.0/24"]),
        ["2001:db8:20::1"]
    );
    assert_eq!(
        node.short(&["s3.storage.example", "AAAA", "+subnet=2001:db8:1::/48"]),
        ["2001:db8:10::1"]
    );
}

#[test]
fn ecs_scope_is_the_length_of_the_deciding_network() {
    let node = DnsNode::start(CONFIG, false);
    let out = node.dig(&["s3.storage.example", "+subnet=127.2.0.0/24"]);
    assert!(
        out.contains("CLIENT-SUBNET: 127.2.0.0/24/16"),
        "site network /16:\n{out}"
    );
    let out = node.dig(&["s3.storage.example", "+subnet=198.51.100.0/24"]);
    assert!(
        out.contains("CLIENT-SUBNET: 198.51.100.0/24/24"),
        "GeoIP /24:\n{out}"
    );
    let out = node.dig(&["static.storage.example", "+subnet=198.51.100.0/24"]);
    assert!(
        out.contains("CLIENT-SUBNET: 198.51.100.0/24/0"),
        "static data does not depend on the client:\n{out}"
    );
    let out = node.dig(&["s3.storage.example"]);
    assert!(
        !out.contains("CLIENT-SUBNET"),
        "no ECS in a reply to a query without one:\n{out}"
    );
    let out = kdig_at(
        node.dns,
        &["s3.storage.example", "A", "+subnet=203.0.113.0/24"],
    );
    assert!(
        out.contains("203.0.113.0/24/24"),
        "kdig sees the scope:\n{out}"
    );
}

#[test]
fn ttls_are_the_services() {
    let node = DnsNode::start(CONFIG, false);
    let one = node.dig(&["s3.storage.example", "+noall", "+answer"]);
    assert!(
        one.lines().count() == 2
            && one
                .lines()
                .all(|l| l.split_whitespace().nth(1) == Some("1")),
        "{one}"
    );
    let zero = node.dig(&["nfs.storage.example", "+noall", "+answer"]);
    assert!(
        zero.lines().count() == 1
            && zero
                .lines()
                .all(|l| l.split_whitespace().nth(1) == Some("0")),
        "{zero}"
    );
}

#[test]
fn rcodes_and_flags() {
    let node = DnsNode::start(CONFIG, false);
    let out = node.dig(&["s3.storage.example"]);
    assert_eq!(status(&out), "NOERROR");
    assert!(flags(&out).contains(&"aa".to_owned()), "AA set: {out}");
    let out = node.dig(&["nope.storage.example"]);
    assert_eq!(status(&out), "NXDOMAIN");
    assert!(
        out.contains("AUTHORITY: 1") && out.contains("SOA"),
        "SOA in authority: {out}"
    );
    let out = node.dig(&["s3.storage.example", "TXT"]);
    assert_eq!(status(&out), "NOERROR");
    assert!(
        out.contains("ANSWER: 0") && out.contains("AUTHORITY: 1"),
        "NODATA with SOA: {out}"
    );
    let out = node.dig(&["example.com"]);
    assert_eq!(status(&out), "REFUSED");
    assert!(
        !flags(&out).contains(&"aa".to_owned()),
        "no AA outside the zone: {out}"
    );
    let out = node.dig(&["version.bind", "TXT", "CH"]);
    assert_eq!(status(&out), "REFUSED", "class CH: {out}");
    let out = node.dig(&["static.storage.example", "+opcode=status"]);
    assert_eq!(status(&out), "NOTIMP", "{out}");
    let out = node.dig(&["s3.storage.example", "+edns=1", "+noednsnegotiation"]);
    assert_eq!(status(&out), "BADVERS", "{out}");
    let out = kdig_at(node.dns, &["nope.storage.example"]);
    assert!(out.contains("NXDOMAIN"), "kdig: {out}");
    let out = kdig_at(node.dns, &["storage.example", "ANY"]);
    assert!(
        out.contains("ANSWER: 1"),
        "ANY gets one RRset (RFC 8482): {out}"
    );
}

#[test]
fn truncation_keeps_the_opt_record_and_tcp_carries_it_all() {
    let node = DnsNode::start(CONFIG, false);
    let out = node.dig(&["big.storage.example", "TXT", "+ignore", "+bufsize=512"]);
    assert!(flags(&out).contains(&"tc".to_owned()), "TC set: {out}");
    assert!(out.contains("OPT PSEUDOSECTION"), "OPT kept: {out}");
    assert!(out.contains("ANSWER: 0"), "records dropped: {out}");
    let out = node.dig(&["big.storage.example", "TXT", "+ignore", "+noedns"]);
    assert!(
        flags(&out).contains(&"tc".to_owned()),
        "512 without EDNS: {out}"
    );
    let out = node.dig(&["big.storage.example", "TXT", "+tcp"]);
    assert!(
        out.contains("ANSWER: 5") && !flags(&out).contains(&"tc".to_owned()),
        "TCP: {out}"
    );
    let out = node.dig(&["big.storage.example", "TXT"]);
    assert!(
        out.contains("ANSWER: 5"),
        "dig retries over TCP after TC: {out}"
    );
    let out = kdig_at(node.dns, &["big.storage.example", "TXT", "+tcp"]);
    assert!(out.contains("ANSWER: 5"), "kdig over TCP: {out}");
}

#[test]
fn ipv6_transport() {
    let node = DnsNode::start(CONFIG, true);
    let v6 = node.dns_v6.expect("listening on ::1");
    assert_eq!(
        tests::dig_at(v6, &["+short", "-b", "::1", "static.storage.example"]).trim(),
        "127.0.0.53"
    );
    let out = tests::dig_at(
        v6,
        &[
            "s3.storage.example",
            "AAAA",
            "+subnet=2001:db8:2::/48",
            "+tcp",
        ],
    );
    assert!(out.contains("2001:db8:20::1"), "{out}");
}

/// A query in TCP framing.
fn framed_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    framed
}

#[test]
fn tcp_pipelining_and_idle_timeout() {
    let node = DnsNode::start(CONFIG, false);
    let mut stream = TcpStream::connect(node.dns).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Three queries in one write; three replies in order, matching ids.
    let mut batch = Vec::new();
    for (id, name) in [
        (1u16, "s3.storage.example"),
        (2, "static.storage.example"),
        (3, "nope.storage.example"),
    ] {
        batch.extend(framed_query(id, name));
    }
    stream.write_all(&batch).unwrap();
    for expected_id in [1u16, 2, 3] {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), expected_id);
    }
    // Idle for longer than tcp_idle_timeout (1 s): the server closes the connection.
    std::thread::sleep(Duration::from_millis(1500));
    let mut rest = Vec::new();
    let closed = matches!(stream.read_to_end(&mut rest), Ok(0));
    assert!(closed, "idle connection closed by the server");
}
