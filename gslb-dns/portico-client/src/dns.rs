//! The DNS stub client of drills and member discovery (hickory-proto does the wire format):
//! one A or AAAA question, optionally with an EDNS Client Subnet, over UDP with a random id;
//! a reply counts only if it comes from the server asked, carries the id, has QR set and
//! repeats the question; a truncated reply is asked again over TCP.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest UDP reply accepted (EDNS payload size offered).
const PAYLOAD: u16 = 1232;

/// One question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Absolute (`s3.storage.example.`) or not; asked as absolute.
    pub name: String,
    /// AAAA rather than A.
    pub aaaa: bool,
    /// Ask as a resolver in this subnet would (EDNS Client Subnet).
    pub subnet: Option<IpNet>,
    /// Recursion desired: set when asking a resolver, clear when asking an authority.
    pub recursive: bool,
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code (0 NOERROR, 3 NXDOMAIN, ...).
    pub rcode: u16,
    /// The A or AAAA records of the answer section, in order.
    pub addresses: Vec<IpAddr>,
}

impl Answer {
    pub const NOERROR: u16 = 0;
    pub const NXDOMAIN: u16 = 3;

    /// The response code's name (`NOERROR`, `SERVFAIL`, ...).
    pub fn rcode_name(&self) -> String {
        <ResponseCode as From<u16>>::from(self.rcode)
            .to_str()
            .to_owned()
    }
}

/// Why no usable reply came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("{0:?} is not a domain name")]
    BadName(String),
    #[error("no reply from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("{0}")]
    Io(String),
    #[error("malformed reply from {0}: {1}")]
    Malformed(SocketAddr, String),
}

impl Question {
    fn message(&self) -> Result<Message, DnsError> {
        let absolute = if self.name.ends_with('.') {
            self.name.clone()
        } else {
            format!("{}.", self.name)
        };
        let name = Name::from_ascii(&absolute).map_err(|_| DnsError::BadName(self.name.clone()))?;
        let mut message = Message::query();
        message.metadata.recursion_desired = self.recursive;
        message.add_query(Query::query(name, self.record_type()));
        let mut edns = Edns::new();
        edns.set_max_payload(PAYLOAD);
        if let Some(subnet) = self.subnet {
            let subnet = subnet.trunc();
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(
                    subnet.addr(),
                    subnet.prefix_len(),
                    0,
                )));
        }
        message.set_edns(edns);
        Ok(message)
    }

    fn record_type(&self) -> RecordType {
        if self.aaaa {
            RecordType::AAAA
        } else {
            RecordType::A
        }
    }
}

/// Asks `server` one question, within `timeout` in all (UDP, then TCP if truncated).
pub async fn ask(
    server: SocketAddr,
    question: &Question,
    timeout: Duration,
) -> Result<Answer, DnsError> {
    let query = question.message()?;
    let packet = query.to_vec().map_err(|e| DnsError::Io(e.to_string()))?;
    let exchange = async {
        let reply = udp(server, &query, &packet).await?;
        let reply = if reply.metadata.truncation {
            tcp(server, &query, &packet).await?
        } else {
            reply
        };
        Ok(Answer {
            rcode: u16::from(reply.metadata.response_code),
            addresses: reply
                .answers
                .iter()
                .filter_map(|record| match &record.data {
                    RData::A(a) if !question.aaaa => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) if question.aaaa => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DnsError::Timeout(server, timeout))?
}

/// The reply to `query` if `bytes` is one: QR set, the same id and the same question.
fn reply_to(query: &Message, bytes: &[u8]) -> Option<Message> {
    let reply = Message::from_vec(bytes).ok()?;
    let same_question = match (reply.queries.first(), query.queries.first()) {
        (Some(got), Some(asked)) => {
            got.name() == asked.name()
                && got.query_type() == asked.query_type()
                && got.query_class() == asked.query_class()
        }
        _ => false,
    };
    (reply.metadata.id == query.metadata.id
        && reply.metadata.message_type == MessageType::Response
        && same_question)
        .then_some(reply)
}

async fn udp(server: SocketAddr, query: &Message, packet: &[u8]) -> Result<Message, DnsError> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let io = |e: std::io::Error| DnsError::Io(format!("{server}: {e}"));
    let socket = tokio::net::UdpSocket::bind(bind).await.map_err(io)?;
    socket.send_to(packet, server).await.map_err(io)?;
    let mut buffer = vec![0u8; usize::from(PAYLOAD).max(4096)];
    loop {
        let (n, from) = socket.recv_from(&mut buffer).await.map_err(io)?;
        // Anything else (another source, another id, not a reply) is not ours: wait on.
        if from != server {
            continue;
        }
        if let Some(reply) = reply_to(query, &buffer[..n]) {
            return Ok(reply);
        }
    }
}

async fn tcp(server: SocketAddr, query: &Message, packet: &[u8]) -> Result<Message, DnsError> {
    let io = |e: std::io::Error| DnsError::Io(format!("{server} (TCP): {e}"));
    let mut stream = tokio::net::TcpStream::connect(server).await.map_err(io)?;
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await.map_err(io)?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.map_err(io)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut reply).await.map_err(io)?;
    reply_to(query, &reply)
        .ok_or_else(|| DnsError::Malformed(server, "not a reply to the question asked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question() -> Question {
        Question {
            name: "s3.storage.example".into(),
            aaaa: false,
            subnet: Some("127.1.2.9/24".parse().unwrap()),
            recursive: false,
        }
    }

    #[test]
    fn the_query_carries_the_question_and_the_client_subnet() {
        let message = question().message().unwrap();
        let again = question().message().unwrap();
        assert_ne!(message.metadata.id, again.metadata.id, "random ids");
        assert!(!message.metadata.recursion_desired);
        assert_eq!(message.queries[0].name().to_string(), "s3.storage.example.");
        let packet = message.to_vec().unwrap();
        let read = Message::from_vec(&packet).unwrap();
        let edns = read.edns.as_ref().unwrap();
        let subnet = edns
            .options()
            .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
            .unwrap();
        assert!(format!("{subnet:?}").contains("127.1.2.0"), "{subnet:?}");
        assert!(
            Question {
                name: "a..b".into(),
                ..question()
            }
            .message()
            .is_err()
        );
    }

    #[test]
    fn only_a_reply_to_the_question_asked_counts() {
        let query = question().message().unwrap();
        let mut reply = query.clone();
        reply.metadata.message_type = MessageType::Response;
        let bytes = reply.to_vec().unwrap();
        assert!(reply_to(&query, &bytes).is_some());
        // The query itself (QR clear), another id, another question: not replies.
        assert!(reply_to(&query, &query.to_vec().unwrap()).is_none());
        let mut other_id = reply.clone();
        other_id.metadata.id = reply.metadata.id.wrapping_add(1);
        assert!(reply_to(&query, &other_id.to_vec().unwrap()).is_none());
        let mut other_question = reply.clone();
        other_question.queries[0] =
            Query::query(Name::from_ascii("evil.example.").unwrap(), RecordType::A);
        assert!(reply_to(&query, &other_question.to_vec().unwrap()).is_none());
        assert!(reply_to(&query, b"\x00\x01garbage").is_none());
    }
}
