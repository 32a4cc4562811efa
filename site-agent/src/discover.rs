//! Member discovery by DNS: a member group names a DNS name (a storage cluster's VIP pool,
//! say) instead of addresses. The agent resolves it every `discover_interval` and assigns
//! the addresses to the group's slots stably (an address keeps its slot while it is
//! resolved), so VIPs that come and go are followed without editing the configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Resolves `name` (absolute, with the final dot) to its A and AAAA addresses, through
/// `resolver` when given, else the system's resolver.
pub async fn resolve(
    name: &str,
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let lookup = async {
        match resolver {
            Some(server) => {
                let mut addresses = query(server, name, 1).await?;
                addresses.extend(query(server, name, 28).await?);
                Ok(addresses)
            }
            None => tokio::net::lookup_host((name.trim_end_matches('.'), 0))
                .await
                .map(|found| found.map(|a| a.ip()).collect())
                .map_err(|e| format!("resolve {name}: {e}")),
        }
    };
    let mut addresses = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| format!("resolve {name}: timeout"))??;
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

/// One DNS query over UDP for `qtype` (1 = A, 28 = AAAA); the addresses in the answer.
async fn query(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<IpAddr>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal");
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("resolver socket: {e}"))?;
    let id = (std::process::id() as u16) ^ qtype;
    let mut packet = id.to_be_bytes().to_vec();
    packet.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad name {name:?}"));
        }
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    socket
        .send_to(&packet, server)
        .await
        .map_err(|e| format!("resolver send: {e}"))?;
    let mut reply = [0u8; 4096];
    loop {
        let (len, from) = socket
            .recv_from(&mut reply)
            .await
            .map_err(|e| format!("resolver receive: {e}"))?;
        if from == server && len >= 12 && reply[..2] == id.to_be_bytes() {
            return parse_answers(&reply[..len], qtype);
        }
    }
}

/// The A or AAAA records of a reply (NXDOMAIN and NODATA give none).
fn parse_answers(reply: &[u8], qtype: u16) -> Result<Vec<IpAddr>, String> {
    let rcode = reply[3] & 0x0F;
    if rcode != 0 && rcode != 3 {
        return Err(format!("resolver rcode {rcode}"));
    }
    let count = |at: usize| u16::from_be_bytes([reply[at], reply[at + 1]]) as usize;
    let (questions, answers) = (count(4), count(6));
    let mut at = 12;
    let skip_name = |mut at: usize| -> Result<usize, String> {
        loop {
            let len = *reply.get(at).ok_or("truncated name")? as usize;
            match len {
                0 => return Ok(at + 1),
                0xC0..=0xFF => return Ok(at + 2),
                _ => at += 1 + len,
            }
        }
    };
    for _ in 0..questions {
        at = skip_name(at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(at)?;
        let header = reply.get(at..at + 10).ok_or("truncated record")?;
        let rtype = u16::from_be_bytes([header[0], header[1]]);
        let rdlen = u16::from_be_bytes([header[8], header[9]]) as usize;
        let data = reply
            .get(at + 10..at + 10 + rdlen)
            .ok_or("truncated record")?;
        match (rtype, rdlen) {
            (1, 4) if qtype == 1 => addresses.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (28, 16) if qtype == 28 => {
                let octets: [u8; 16] = data.try_into().map_err(|_| "bad AAAA")?;
                addresses.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            _ => {}
        }
        at += 10 + rdlen;
    }
    Ok(addresses)
}

/// Assigns `found` to `slots` (current assignment in, new one out): an address still found
/// keeps its slot; new addresses fill free slots in order; addresses beyond the slots wait.
pub fn assign(current: &[Option<IpAddr>], found: &[IpAddr]) -> Vec<Option<IpAddr>> {
    let mut next: Vec<Option<IpAddr>> = current
        .iter()
        .map(|slot| slot.filter(|a| found.contains(a)))
        .collect();
    let placed: Vec<IpAddr> = next.iter().flatten().copied().collect();
    let mut waiting = found.iter().filter(|a| !placed.contains(a));
    for slot in next.iter_mut().filter(|s| s.is_none()) {
        *slot = waiting.next().copied();
    }
    next
}

/// Groups to resolve: (service, discover name) -> the group's slot node names, in order.
pub type Groups = BTreeMap<(String, String), Vec<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn assignment_is_stable() {
        let (a, b, c, d) = (
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
            ip("10.0.0.4"),
        );
        let first = assign(&[None, None, None], &[a, b]);
        assert_eq!(first, vec![Some(a), Some(b), None]);
        // b goes away, c and d appear: a keeps slot 0, c takes b's slot, d the free one.
        let second = assign(&first, &[a, c, d]);
        assert_eq!(second, vec![Some(a), Some(c), Some(d)]);
        // More addresses than slots: the extra one waits.
        let third = assign(&second, &[a, b, c, d]);
        assert_eq!(third, vec![Some(a), Some(c), Some(d)]);
        assert_eq!(assign(&third, &[]), vec![None, None, None]);
    }

    #[test]
    fn parses_answers_with_compression() {
        // Header (1 question, 2 answers), question s.x. A, two A records owned by a pointer.
        let mut reply = vec![0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        reply.extend_from_slice(b"\x01s\x01x\x00\x00\x01\x00\x01");
        for last in [5u8, 6] {
            reply.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 40, last]);
        }
        assert_eq!(
            parse_answers(&reply, 1).unwrap(),
            vec![ip("127.0.40.5"), ip("127.0.40.6")]
        );
        assert!(parse_answers(&reply, 28).unwrap().is_empty());
    }
}
