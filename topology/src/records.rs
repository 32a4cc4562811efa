//! Static zone records, parsed from their one-line presentation form
//! (`owner [ttl] [IN] TYPE rdata`, as in a zone file).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::name::{DomainName, NameError};

/// DNS record type codes used by the model.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const ANY: u16 = 255;
    pub const CAA: u16 = 257;
}

/// The data of one static record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
pub enum RecordData {
    A {
        address: Ipv4Addr,
    },
    Aaaa {
        address: Ipv6Addr,
    },
    Cname {
        target: DomainName,
    },
    Ns {
        host: DomainName,
    },
    Ptr {
        target: DomainName,
    },
    Mx {
        preference: u16,
        exchange: DomainName,
    },
    /// Character strings, each at most 255 octets.
    Txt {
        strings: Vec<String>,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: DomainName,
    },
    Caa {
        flags: u8,
        tag: String,
        value: String,
    },
    Soa {
        mname: DomainName,
        rname: DomainName,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

impl RecordData {
    /// The record type's mnemonic (`A`, `CNAME`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            RecordData::A { .. } => "A",
            RecordData::Aaaa { .. } => "AAAA",
            RecordData::Cname { .. } => "CNAME",
            RecordData::Ns { .. } => "NS",
            RecordData::Ptr { .. } => "PTR",
            RecordData::Mx { .. } => "MX",
            RecordData::Txt { .. } => "TXT",
            RecordData::Srv { .. } => "SRV",
            RecordData::Caa { .. } => "CAA",
            RecordData::Soa { .. } => "SOA",
        }
    }

    /// The record type code.
    pub fn rtype(&self) -> u16 {
        match self {
            RecordData::A { .. } => rtype::A,
            RecordData::Aaaa { .. } => rtype::AAAA,
            RecordData::Cname { .. } => rtype::CNAME,
            RecordData::Ns { .. } => rtype::NS,
            RecordData::Ptr { .. } => rtype::PTR,
            RecordData::Mx { .. } => rtype::MX,
            RecordData::Txt { .. } => rtype::TXT,
            RecordData::Srv { .. } => rtype::SRV,
            RecordData::Caa { .. } => rtype::CAA,
            RecordData::Soa { .. } => rtype::SOA,
        }
    }
}

/// One record of the zone's static data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaticRecord {
    pub owner: DomainName,
    pub ttl: u32,
    pub data: RecordData,
}

/// Why a record line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("expected `owner [ttl] [IN] TYPE data`")]
    Shape,
    #[error("bad owner name: {0}")]
    Owner(NameError),
    #[error("unsupported record type {0:?} (A, AAAA, CNAME, NS, PTR, MX, TXT, SRV, CAA)")]
    UnsupportedType(String),
    #[error("class {0:?} is not IN")]
    Class(String),
    #[error("bad {rtype} data {data:?}: {why}")]
    Data {
        rtype: &'static str,
        data: String,
        why: String,
    },
}

/// Parses one record line; relative names are completed with `origin`; a record without a
/// TTL gets `default_ttl`.
pub fn parse_record(
    line: &str,
    origin: &DomainName,
    default_ttl: u32,
) -> Result<StaticRecord, RecordError> {
    let mut words = line.split_whitespace();
    let owner_text = words.next().ok_or(RecordError::Shape)?;
    let owner = DomainName::parse(owner_text, Some(origin)).map_err(RecordError::Owner)?;
    let mut ttl = default_ttl;
    let mut word = words.next().ok_or(RecordError::Shape)?;
    if let Ok(value) = word.parse::<u32>() {
        ttl = value;
        word = words.next().ok_or(RecordError::Shape)?;
    }
    if word.eq_ignore_ascii_case("IN") {
        word = words.next().ok_or(RecordError::Shape)?;
    } else if ["CH", "HS", "CS"]
        .iter()
        .any(|c| word.eq_ignore_ascii_case(c))
    {
        return Err(RecordError::Class(word.to_owned()));
    }
    let type_text = word.to_ascii_uppercase();
    let rest: Vec<&str> = words.collect();
    let data = parse_data(&type_text, &rest, line, origin)?;
    Ok(StaticRecord { owner, ttl, data })
}

fn parse_data(
    type_text: &str,
    rest: &[&str],
    line: &str,
    origin: &DomainName,
) -> Result<RecordData, RecordError> {
    let joined = rest.join(" ");
    let bad = |rtype: &'static str, why: String| RecordError::Data {
        rtype,
        data: joined.clone(),
        why,
    };
    let name = |rtype: &'static str, text: Option<&&str>| {
        let text = text.ok_or_else(|| bad(rtype, "missing name".into()))?;
        DomainName::parse(text, Some(origin)).map_err(|e| bad(rtype, e.to_string()))
    };
    let number = |rtype: &'static str, text: Option<&&str>| -> Result<u16, RecordError> {
        text.ok_or_else(|| bad(rtype, "missing number".into()))?
            .parse::<u16>()
            .map_err(|e| bad(rtype, e.to_string()))
    };
    let exact = |rtype: &'static str, count: usize| {
        if rest.len() == count {
            Ok(())
        } else {
            Err(bad(rtype, format!("expected {count} fields")))
        }
    };
    let data = match type_text {
        "A" => {
            exact("A", 1)?;
            RecordData::A {
                address: rest[0]
                    .parse()
                    .map_err(|_| bad("A", "not an IPv4 address".into()))?,
            }
        }
        "AAAA" => {
            exact("AAAA", 1)?;
            RecordData::Aaaa {
                address: rest[0]
                    .parse()
                    .map_err(|_| bad("AAAA", "not an IPv6 address".into()))?,
            }
        }
        "CNAME" => {
            exact("CNAME", 1)?;
            RecordData::Cname {
                target: name("CNAME", rest.first())?,
            }
        }
        "NS" => {
            exact("NS", 1)?;
            RecordData::Ns {
                host: name("NS", rest.first())?,
            }
        }
        "PTR" => {
            exact("PTR", 1)?;
            RecordData::Ptr {
                target: name("PTR", rest.first())?,
            }
        }
        "MX" => {
            exact("MX", 2)?;
            RecordData::Mx {
                preference: number("MX", rest.first())?,
                exchange: name("MX", rest.get(1))?,
            }
        }
        "SRV" => {
            exact("SRV", 4)?;
            RecordData::Srv {
                priority: number("SRV", rest.first())?,
                weight: number("SRV", rest.get(1))?,
                port: number("SRV", rest.get(2))?,
                target: name("SRV", rest.get(3))?,
            }
        }
        "TXT" => RecordData::Txt {
            strings: parse_character_strings(txt_data(line)).map_err(|why| bad("TXT", why))?,
        },
        "CAA" => {
            if rest.len() < 3 {
                return Err(bad("CAA", "expected `flags tag value`".into()));
            }
            let flags = rest[0]
                .parse::<u8>()
                .map_err(|e| bad("CAA", e.to_string()))?;
            let tag = rest[1].to_owned();
            if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad("CAA", "tag must be letters and digits".into()));
            }
            let mut value =
                parse_character_strings(&rest[2..].join(" ")).map_err(|why| bad("CAA", why))?;
            if value.len() != 1 {
                return Err(bad("CAA", "expected one value".into()));
            }
            RecordData::Caa {
                flags,
                tag,
                value: value.remove(0),
            }
        }
        other => return Err(RecordError::UnsupportedType(other.to_owned())),
    };
    Ok(data)
}

/// The text after the TXT keyword, kept verbatim so quoted spaces survive.
fn txt_data(line: &str) -> &str {
    let upper = line.to_ascii_uppercase();
    let mut search_from = 0;
    while let Some(found) = upper[search_from..].find("TXT") {
        let start = search_from + found;
        let end = start + 3;
        let before_ok = start == 0 || upper.as_bytes()[start - 1].is_ascii_whitespace();
        let after_ok = end == upper.len() || upper.as_bytes()[end].is_ascii_whitespace();
        if before_ok && after_ok {
            return line[end..].trim();
        }
        search_from = end;
    }
    ""
}

/// Splits presentation-form character strings: `"quoted with \" escapes"` or bare words.
/// Strings longer than 255 octets are refused.
pub fn parse_character_strings(text: &str) -> Result<Vec<String>, String> {
    let mut strings = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut current = String::new();
        if c == '"' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => current.push(chars.next().ok_or("dangling backslash")?),
                    other => current.push(other),
                }
            }
            if !closed {
                return Err("unterminated quoted string".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                current.push(c);
                chars.next();
            }
        }
        if current.len() > 255 {
            return Err("a character string is longer than 255 octets".into());
        }
        strings.push(current);
    }
    if strings.is_empty() {
        return Err("no character string".into());
    }
    Ok(strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> DomainName {
        DomainName::parse("storage.example.", None).unwrap()
    }

    fn check(line: &str, expected: Result<(&str, u32, RecordData), &str>) {
        let got = parse_record(line, &origin(), 300);
        match (got, expected) {
            (Ok(record), Ok((owner, ttl, data))) => {
                assert_eq!(record.owner.as_str(), owner, "{line}");
                assert_eq!(record.ttl, ttl, "{line}");
                assert_eq!(record.data, data, "{line}");
            }
            (Err(err), Err(fragment)) => {
                assert!(err.to_string().contains(fragment), "{line}: {err}")
            }
            (got, expected) => panic!("{line}: got {got:?}, expected {expected:?}"),
        }
    }

    fn n(text: &str) -> DomainName {
        DomainName::parse(text, Some(&origin())).unwrap()
    }

    #[test]
    fn golden_record_lines() {
        check(
            "static 60 IN A 127.0.0.53",
            Ok((
                "static.storage.example.",
                60,
                RecordData::A {
                    address: [127, 0, 0, 53].into(),
                },
            )),
        );
        check(
            "v6 AAAA 2001:db8::1",
            Ok((
                "v6.storage.example.",
                300,
                RecordData::Aaaa {
                    address: "2001:db8::1".parse().unwrap(),
                },
            )),
        );
        check(
            "www 300 CNAME s3",
            Ok((
                "www.storage.example.",
                300,
                RecordData::Cname { target: n("s3") },
            )),
        );
        check(
            "@ 3600 IN MX 10 mail.example.net.",
            Ok((
                "storage.example.",
                3600,
                RecordData::Mx {
                    preference: 10,
                    exchange: n("mail.example.net."),
                },
            )),
        );
        check(
            "_s3._tcp SRV 0 5 443 s3",
            Ok((
                "_s3._tcp.storage.example.",
                300,
                RecordData::Srv {
                    priority: 0,
                    weight: 5,
                    port: 443,
                    target: n("s3"),
                },
            )),
        );
        check(
            r#"info TXT "hello world" plain "say \"hi\"""#,
            Ok((
                "info.storage.example.",
                300,
                RecordData::Txt {
                    strings: vec!["hello world".into(), "plain".into(), "say \"hi\"".into()],
                },
            )),
        );
        check(
            r#"@ CAA 0 issue "letsencrypt.org""#,
            Ok((
                "storage.example.",
                300,
                RecordData::Caa {
                    flags: 0,
                    tag: "issue".into(),
                    value: "letsencrypt.org".into(),
                },
            )),
        );
        check("x IN A 300.1.1.1", Err("not an IPv4 address"));
        check("x CH A 1.2.3.4", Err("class"));
        check("x HINFO a b", Err("unsupported record type"));
        check("x", Err("expected `owner"));
        check("x MX 10", Err("expected 2 fields"));
        check(r#"x TXT "open"#, Err("unterminated"));
        check("a..b A 1.2.3.4", Err("empty label"));
    }
}
