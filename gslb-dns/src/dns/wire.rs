//! A strict, zero-copy reader of DNS queries: the header, exactly one question and the OPT
//! record with its EDNS Client Subnet option. It borrows the packet and allocates nothing,
//! so the hot path is parse, classify, copy. Anything it cannot accept is classified into
//! the reply it deserves (FORMERR, NOTIMP, BADVERS) or into silence.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Header flag bits (RFC 1035 section 4.1.1).
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const OPCODE_MASK: u16 = 0x7800;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const CD: u16 = 0x0010;
}

/// Response codes (RFC 1035, RFC 6891 for the extended BADVERS).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    /// Extended: 16, carried as 1 in the OPT record's upper bits and 0 in the header.
    pub const BADVERS: u16 = 16;
}

/// EDNS option code of Client Subnet (RFC 7871).
pub const OPTION_ECS: u16 = 8;
/// Header length.
pub const HEADER_LEN: usize = 12;

/// The EDNS Client Subnet option of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// 1 = IPv4, 2 = IPv6.
    pub family: u16,
    pub source_prefix: u8,
    /// The address, zero beyond the source prefix.
    pub address: IpAddr,
    /// The address octets exactly as sent (`ceil(source_prefix / 8)` of them).
    pub raw_len: usize,
}

/// The OPT record of a query (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    pub client_subnet: Option<ClientSubnet>,
}

/// A well-formed standard query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub id: u16,
    pub flags: u16,
    /// The question name in wire form, exactly as sent (case preserved).
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    /// The question section (name, type, class) as sent, copied into every reply.
    pub question: &'a [u8],
    pub edns: Option<Edns>,
}

/// What a packet that is not a well-formed standard query deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No reply: too short to hold a header, or a response (QR set).
    Drop,
    /// Reply with only the header (and the question when `question_len` > 0), this rcode,
    /// and an OPT record when the query had a usable one.
    Reply {
        id: u16,
        flags: u16,
        rcode: u16,
        question_len: usize,
        edns: bool,
    },
}

/// Parses a query. `Err` says how to answer a packet that is not an acceptable query.
pub fn parse_query(packet: &[u8]) -> Result<Query<'_>, Rejection> {
    if packet.len() < HEADER_LEN {
        return Err(Rejection::Drop);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & flags::QR != 0 {
        return Err(Rejection::Drop);
    }
    let count = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
    let (qdcount, ancount, nscount, arcount) = (count(4), count(6), count(8), count(10));
    let reject = |rcode, question_len, edns| Rejection::Reply {
        id,
        flags,
        rcode,
        question_len,
        edns,
    };
    if flags & flags::OPCODE_MASK != 0 {
        return Err(reject(rcode::NOTIMP, 0, false));
    }
    if qdcount != 1 || ancount != 0 || nscount != 0 {
        return Err(reject(rcode::FORMERR, 0, false));
    }
    let name_end = name_end_uncompressed(packet, HEADER_LEN)
        .ok_or_else(|| reject(rcode::FORMERR, 0, false))?;
    let question_end = name_end + 4;
    if packet.len() < question_end {
        return Err(reject(rcode::FORMERR, 0, false));
    }
    let qtype = u16::from_be_bytes([packet[name_end], packet[name_end + 1]]);
    let qclass = u16::from_be_bytes([packet[name_end + 2], packet[name_end + 3]]);
    let question_len = question_end - HEADER_LEN;
    let mut edns = None;
    let mut at = question_end;
    for _ in 0..arcount {
        let owner_end =
            skip_name(packet, at).ok_or_else(|| reject(rcode::FORMERR, question_len, false))?;
        if packet.len() < owner_end + 10 {
            return Err(reject(rcode::FORMERR, question_len, false));
        }
        let rtype = u16::from_be_bytes([packet[owner_end], packet[owner_end + 1]]);
        let rdlen = u16::from_be_bytes([packet[owner_end + 8], packet[owner_end + 9]]) as usize;
        let rdata_start = owner_end + 10;
        let rdata_end = rdata_start + rdlen;
        if packet.len() < rdata_end {
            return Err(reject(rcode::FORMERR, question_len, false));
        }
        if rtype == topology::records::rtype::OPT {
            // RFC 6891 6.1.1: one OPT, owned by the root.
            if edns.is_some() || owner_end != at + 1 || packet[at] != 0 {
                return Err(reject(rcode::FORMERR, question_len, false));
            }
            let class = u16::from_be_bytes([packet[owner_end + 2], packet[owner_end + 3]]);
            let ttl = &packet[owner_end + 4..owner_end + 8];
            let version = ttl[1];
            let dnssec_ok = ttl[2] & 0x80 != 0;
            if version > 0 {
                return Err(reject(rcode::BADVERS, question_len, true));
            }
            let client_subnet = parse_options(&packet[rdata_start..rdata_end])
                .map_err(|_| reject(rcode::FORMERR, question_len, true))?;
            edns = Some(Edns {
                udp_payload: class,
                version,
                dnssec_ok,
                client_subnet,
            });
        }
        at = rdata_end;
    }
    Ok(Query {
        id,
        flags,
        qname: &packet[HEADER_LEN..name_end],
        qtype,
        qclass,
        question: &packet[HEADER_LEN..question_end],
        edns,
    })
}

/// End of an uncompressed name starting at `at` (a question name may not use pointers: it is
/// the first name of the message, so there is nothing earlier to point to).
fn name_end_uncompressed(packet: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    loop {
        let len = *packet.get(at)? as usize;
        if len == 0 {
            let end = at + 1;
            return (end - start <= 255).then_some(end);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if at - start > 255 {
            return None;
        }
    }
}

/// End of a possibly compressed name starting at `at` (pointers are not followed: only the
/// bytes at `at` are skipped).
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            1..=63 => at += 1 + len as usize,
            0xC0..=0xFF => {
                packet.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
        if at - start > 255 {
            return None;
        }
    }
}

/// Reads the options of an OPT record; returns the Client Subnet option if there is one.
fn parse_options(mut options: &[u8]) -> Result<Option<ClientSubnet>, ()> {
    let mut subnet = None;
    while !options.is_empty() {
        if options.len() < 4 {
            return Err(());
        }
        let code = u16::from_be_bytes([options[0], options[1]]);
        let len = u16::from_be_bytes([options[2], options[3]]) as usize;
        let data = options.get(4..4 + len).ok_or(())?;
        if code == OPTION_ECS {
            if subnet.is_some() {
                return Err(());
            }
            subnet = Some(parse_client_subnet(data)?);
        }
        options = &options[4 + len..];
    }
    Ok(subnet)
}

/// RFC 7871 section 6: family, source prefix, scope prefix (0 in queries), and exactly
/// `ceil(source / 8)` address octets with no bits set beyond the source prefix.
fn parse_client_subnet(data: &[u8]) -> Result<ClientSubnet, ()> {
    if data.len() < 4 {
        return Err(());
    }
    let family = u16::from_be_bytes([data[0], data[1]]);
    let source_prefix = data[2];
    let scope_prefix = data[3];
    let raw = &data[4..];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return Err(()),
    };
    if source_prefix > max || scope_prefix != 0 || raw.len() != (source_prefix as usize).div_ceil(8)
    {
        return Err(());
    }
    if let Some(last) = raw.last() {
        let used_bits = source_prefix as u32 - 8 * (raw.len() as u32 - 1);
        if used_bits < 8 && last & (0xFFu8 >> used_bits) != 0 {
            return Err(());
        }
    }
    let address = if family == 1 {
        let mut octets = [0u8; 4];
        octets[..raw.len()].copy_from_slice(raw);
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        let mut octets = [0u8; 16];
        octets[..raw.len()].copy_from_slice(raw);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    Ok(ClientSubnet {
        family,
        source_prefix,
        address,
        raw_len: raw.len(),
    })
}

/// Lower-cases a wire-form name into `out` (ASCII only; label lengths are left alone).
pub fn lowercase_name(name: &[u8], out: &mut [u8; 255]) -> usize {
    let mut at = 0;
    while at < name.len() {
        let len = name[at] as usize;
        out[at] = name[at];
        for i in at + 1..(at + 1 + len).min(name.len()) {
            out[i] = name[i].to_ascii_lowercase();
        }
        at += 1 + len;
    }
    name.len()
}

#[cfg(test)]
mod tests;
