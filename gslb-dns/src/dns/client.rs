//! A small DNS client for drills: one A or AAAA query over UDP with an EDNS Client Subnet
//! option, asked of any gslb-dns node, as a resolver in that subnet would ask it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use ipnet::IpNet;

/// The query packet: `name` (absolute or not), type A or AAAA, RD clear, EDNS with ECS.
pub fn query_packet(id: u16, name: &str, aaaa: bool, subnet: IpNet) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        packet.push(label.len().min(63) as u8);
        packet.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    packet.push(0);
    packet.extend_from_slice(&(if aaaa { 28u16 } else { 1u16 }).to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    // OPT: root name, type 41, payload 1232, no extended rcode, version 0, no flags.
    let subnet = subnet.trunc();
    let (family, octets) = match subnet.addr() {
        IpAddr::V4(a) => (1u16, a.octets().to_vec()),
        IpAddr::V6(a) => (2u16, a.octets().to_vec()),
    };
    let address = &octets[..usize::from(subnet.prefix_len()).div_ceil(8)];
    let option_len = 4 + address.len();
    packet.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    packet.extend_from_slice(&((4 + option_len) as u16).to_be_bytes());
    packet.extend_from_slice(&8u16.to_be_bytes());
    packet.extend_from_slice(&(option_len as u16).to_be_bytes());
    packet.extend_from_slice(&family.to_be_bytes());
    packet.push(subnet.prefix_len());
    packet.push(0);
    packet.extend_from_slice(address);
    packet
}

/// The addresses `server` answers for `name` to a client in `subnet`, within `timeout`.
/// An empty answer (NODATA) is an empty list; other failures are errors.
pub async fn addresses(
    server: SocketAddr,
    name: &str,
    aaaa: bool,
    subnet: IpNet,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    let id = rand_id();
    let packet = query_packet(id, name, aaaa, subnet);
    let exchange = async {
        socket
            .send_to(&packet, server)
            .await
            .map_err(|e| e.to_string())?;
        let mut buffer = vec![0u8; 4096];
        loop {
            let (n, from) = socket
                .recv_from(&mut buffer)
                .await
                .map_err(|e| e.to_string())?;
            if from != server || n < 2 || u16::from_be_bytes([buffer[0], buffer[1]]) != id {
                continue;
            }
            let message = Message::from_vec(&buffer[..n]).map_err(|e| e.to_string())?;
            if message.metadata.response_code != ResponseCode::NoError {
                return Err(format!("{:?}", message.metadata.response_code));
            }
            return Ok(message
                .answers
                .iter()
                .filter_map(|record| match &record.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect());
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| "timeout".to_string())?
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    hasher.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_what_our_own_reader_accepts() {
        let packet = query_packet(
            7,
            "s3.storage.example.",
            false,
            "127.1.2.0/24".parse().unwrap(),
        );
        let message = Message::from_vec(&packet).unwrap();
        assert_eq!(message.metadata.id, 7);
        assert_eq!(message.queries[0].name().to_string(), "s3.storage.example.");
        let edns = message.edns.as_ref().unwrap();
        let subnet = edns
            .options()
            .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
            .unwrap();
        assert!(format!("{subnet:?}").contains("127.1.2.0"), "{subnet:?}");
    }
}
