//! The zone's static data, encoded to wire form once per configuration: every owner name
//! maps to its record sets as ready-to-copy bytes. The only place the DNS front uses
//! hickory-proto: to encode record data.

use std::collections::HashMap;

use hickory_proto::rr::rdata::{self, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use topology::records::{RecordData, rtype};
use topology::{Deployment, DnsSettings, DomainName, ServiceId};

/// Records of one type at one name, each without its owner name: TYPE CLASS TTL RDLENGTH
/// RDATA. The owner is written as a compression pointer when the answer is assembled.
#[derive(Debug, Clone, Default)]
pub struct RrSet {
    pub rtype: u16,
    pub count: u16,
    pub tails: Vec<u8>,
}

/// What a name in the zone holds.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub rrsets: Vec<RrSet>,
    /// The GSLB service answered at this name.
    pub service: Option<ServiceId>,
    /// The canonical name's target (lower-case wire form) when the node is a CNAME.
    pub cname_target: Option<Vec<u8>>,
    /// `_explain.<service>`: answers TXT with the selection's reasoning.
    pub explain: Option<ServiceId>,
    /// `_status.<origin>`: answers TXT with the store's state (degraded or not).
    pub status: bool,
}

impl Node {
    pub fn rrset(&self, rtype: u16) -> Option<&RrSet> {
        self.rrsets.iter().find(|set| set.rtype == rtype)
    }
}

/// The zone, ready to answer from.
#[derive(Debug, Clone)]
pub struct ZoneData {
    /// The origin in lower-case wire form.
    pub origin: Vec<u8>,
    pub origin_labels: usize,
    /// Every name that exists (including empty non-terminals), keyed by lower-case wire form.
    pub nodes: HashMap<Box<[u8]>, Node>,
    /// The SOA record's tail for negative answers, TTL = min(SOA TTL, minimum) (RFC 2308).
    pub negative_soa: Vec<u8>,
}

/// Why the zone could not be encoded (a bug or an unsupported name: config validation
/// should have caught it).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {owner}: {message}")]
pub struct ZoneError {
    owner: String,
    message: String,
}

fn name(domain: &DomainName) -> Result<Name, ZoneError> {
    Name::from_ascii(domain.as_str()).map_err(|e| ZoneError {
        owner: domain.to_string(),
        message: e.to_string(),
    })
}

/// RDATA bytes, names uncompressed (they are copied into messages at arbitrary offsets).
fn encode_rdata(owner: &DomainName, data: &RecordData) -> Result<Vec<u8>, ZoneError> {
    let rdata = match data {
        RecordData::A { address } => RData::A(rdata::A(*address)),
        RecordData::Aaaa { address } => RData::AAAA(rdata::AAAA(*address)),
        RecordData::Cname { target } => RData::CNAME(CNAME(name(target)?)),
        RecordData::Ns { host } => RData::NS(NS(name(host)?)),
        RecordData::Ptr { target } => RData::PTR(PTR(name(target)?)),
        RecordData::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, name(exchange)?)),
        RecordData::Txt { strings } => RData::TXT(TXT::new(strings.clone())),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        RecordData::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => RData::SOA(SOA::new(
            name(mname)?,
            name(rname)?,
            *serial,
            *refresh as i32,
            *retry as i32,
            *expire as i32,
            *minimum,
        )),
        RecordData::Caa { flags, tag, value } => {
            // flags, tag length, tag, value (RFC 8659 section 4.1), encoded directly.
            let mut bytes = vec![*flags, tag.len() as u8];
            bytes.extend_from_slice(tag.as_bytes());
            bytes.extend_from_slice(value.as_bytes());
            return Ok(bytes);
        }
    };
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    rdata.emit(&mut encoder).map_err(|e| ZoneError {
        owner: owner.to_string(),
        message: e.to_string(),
    })?;
    Ok(bytes)
}

/// TYPE CLASS(IN) TTL RDLENGTH RDATA.
pub fn rr_tail(rtype: u16, ttl: u32, rdata: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// The name as a lookup key: lower-case wire form.
pub fn key(domain: &DomainName) -> Box<[u8]> {
    domain.to_wire().into_boxed_slice()
}

impl ZoneData {
    /// Encodes the zone of `deployment`: SOA and NS at the apex, the static records, the
    /// service names, and (with `dns.debug_queries`) the `_explain.<service>` names.
    pub fn build(deployment: &Deployment, dns: &DnsSettings) -> Result<ZoneData, ZoneError> {
        let zone = &deployment.zone;
        let soa = &zone.soa;
        let soa_data = RecordData::Soa {
            mname: soa.mname.clone(),
            rname: soa.rname.clone(),
            serial: soa.serial,
            refresh: soa.refresh,
            retry: soa.retry,
            expire: soa.expire,
            minimum: soa.minimum,
        };
        let soa_rdata = encode_rdata(&zone.origin, &soa_data)?;
        let mut records: Vec<(DomainName, u16, u32, Vec<u8>)> = Vec::new();
        records.push((zone.origin.clone(), rtype::SOA, soa.ttl, soa_rdata.clone()));
        for ns in &zone.ns {
            let data = RecordData::Ns { host: ns.clone() };
            records.push((
                zone.origin.clone(),
                rtype::NS,
                zone.ns_ttl,
                encode_rdata(&zone.origin, &data)?,
            ));
        }
        for record in &zone.records {
            records.push((
                record.owner.clone(),
                record.data.rtype(),
                record.ttl,
                encode_rdata(&record.owner, &record.data)?,
            ));
        }
        let mut nodes: HashMap<Box<[u8]>, Node> = HashMap::new();
        for (owner, rtype, ttl, rdata) in &records {
            let node = nodes.entry(key(owner)).or_default();
            let set = match node.rrsets.iter_mut().position(|s| s.rtype == *rtype) {
                Some(i) => &mut node.rrsets[i],
                None => {
                    node.rrsets.push(RrSet {
                        rtype: *rtype,
                        ..RrSet::default()
                    });
                    node.rrsets.last_mut().expect("just pushed")
                }
            };
            set.count += 1;
            rr_tail(*rtype, *ttl, rdata, &mut set.tails);
        }
        for record in &zone.records {
            if let RecordData::Cname { target } = &record.data
                && let Some(node) = nodes.get_mut(&key(&record.owner))
            {
                node.cname_target = Some(target.to_wire());
            }
        }
        for id in deployment.service_ids() {
            let service = deployment.service(id);
            nodes.entry(key(&service.fqdn)).or_default().service = Some(id);
            if dns.debug_queries {
                let explain =
                    DomainName::parse("_explain", Some(&service.fqdn)).map_err(|e| ZoneError {
                        owner: service.fqdn.to_string(),
                        message: e.to_string(),
                    })?;
                nodes.entry(key(&explain)).or_default().explain = Some(id);
            }
        }
        if dns.debug_queries {
            let status =
                DomainName::parse("_status", Some(&zone.origin)).map_err(|e| ZoneError {
                    owner: zone.origin.to_string(),
                    message: e.to_string(),
                })?;
            nodes.entry(key(&status)).or_default().status = true;
        }
        add_empty_non_terminals(&mut nodes, zone.origin.label_count());
        let mut negative_soa = Vec::new();
        rr_tail(
            rtype::SOA,
            soa.ttl.min(soa.minimum),
            &soa_rdata,
            &mut negative_soa,
        );
        Ok(ZoneData {
            origin: zone.origin.to_wire(),
            origin_labels: zone.origin.label_count(),
            nodes,
            negative_soa,
        })
    }
}

/// Names between the apex and an owner exist even without records (RFC 8020: NODATA, not
/// NXDOMAIN, for `_tcp.storage.example.` when `_s3._tcp.storage.example.` exists).
fn add_empty_non_terminals(nodes: &mut HashMap<Box<[u8]>, Node>, origin_labels: usize) {
    let owners: Vec<Box<[u8]>> = nodes.keys().cloned().collect();
    for owner in owners {
        let mut at = 0;
        let mut labels = label_count(&owner);
        while labels > origin_labels + 1 {
            at += 1 + owner[at] as usize;
            labels -= 1;
            nodes.entry(owner[at..].into()).or_default();
        }
    }
}

/// Labels in a wire-form name, not counting the root.
pub fn label_count(wire: &[u8]) -> usize {
    let mut at = 0;
    let mut count = 0;
    while at < wire.len() && wire[at] != 0 {
        at += 1 + wire[at] as usize;
        count += 1;
    }
    count
}
