//! A small MaxMind DB writer: an IPv6 search tree of 28-bit records, a data section and
//! metadata, as the MaxMind DB format 2.0 specifies. Output depends only on the input.
//!
//! Enough for test databases: each distinct record is stored once, no pointers inside the
//! data section, IPv4 networks live in `::/96` and `::ffff:0:0/96` and `2002::/16` alias
//! that subtree (as in MaxMind's own files).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// A value of the MaxMind DB data section (the subset the generator needs).
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Str(String),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(BTreeMap<String, Value>),
    Array(Vec<Value>),
}

/// Builds a map value from `(key, value)` pairs.
pub(crate) fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Separator between the search tree and the data section: 16 zero bytes.
const DATA_SEPARATOR: usize = 16;
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
const RECORD_LIMIT: usize = 1 << 28;

/// One record of a tree node.
#[derive(Debug, Clone, Copy)]
enum Record {
    Empty,
    Node(u32),
    Data(u32),
}

/// The metadata fields a writer's caller chooses (readers require all of them).
#[derive(Debug, Clone)]
pub(crate) struct Metadata<'a> {
    pub(crate) database_type: &'a str,
    /// English description.
    pub(crate) description: &'a str,
    pub(crate) languages: &'a [&'a str],
    /// Seconds since the Unix epoch.
    pub(crate) build_epoch: u64,
}

/// Writes an IPv6 (`ip_version` 6) database. `networks` are `(address, prefix length,
/// data)` over the 128-bit space; where they overlap the more specific network wins.
pub(crate) fn write(networks: &[(u128, u8, Value)], metadata: &Metadata<'_>) -> Vec<u8> {
    let records: Vec<&Value> = networks.iter().map(|(_, _, value)| value).collect();
    let leaves: Vec<(u128, u8, u32)> = networks
        .iter()
        .enumerate()
        .map(|(i, &(addr, prefix, _))| (addr, prefix, i as u32))
        .collect();
    write_indexed(leaves, &records, metadata)
}

/// [`write`] for networks that share records: `leaves` are `(address, prefix length, index
/// into records)`, so each record is encoded once however many networks use it (a
/// real-size database has millions of networks and a few hundred thousand records).
pub(crate) fn write_indexed(
    mut leaves: Vec<(u128, u8, u32)>,
    records: &[&Value],
    metadata: &Metadata<'_>,
) -> Vec<u8> {
    // Data section: each distinct encoded record once, in order of first use.
    let mut data = Vec::new();
    let mut offsets: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut record_offsets = Vec::with_capacity(records.len());
    for value in records {
        let mut bytes = Vec::new();
        encode(&mut bytes, value);
        let offset = match offsets.entry(bytes) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let start = data.len();
                data.extend_from_slice(e.key());
                *e.insert(start)
            }
        };
        record_offsets.push(offset);
    }
    for leaf in &mut leaves {
        leaf.2 = record_offsets[leaf.2 as usize] as u32;
    }

    // Search tree: shorter prefixes first, so more specific ones split them afterwards.
    leaves.sort_by_key(|&(addr, prefix, _)| (prefix, addr));
    let mut nodes = vec![[Record::Empty; 2]];
    for (addr, prefix, offset) in leaves {
        assert!(prefix > 0, "a network of prefix length 0 cannot be stored");
        let node = descend(&mut nodes, addr, prefix - 1);
        nodes[node][bit(addr, prefix - 1)] = Record::Data(offset);
    }
    let ipv4_root = descend(&mut nodes, 0, 96);
    for (alias, prefix) in [(0xffff_u128 << 32, 96u8), (0x2002_u128 << 112, 16)] {
        let node = descend(&mut nodes, alias, prefix - 1);
        nodes[node][bit(alias, prefix - 1)] = Record::Node(ipv4_root as u32);
    }

    let nodes = depth_first(&nodes);
    let node_count = nodes.len();
    let mut out = Vec::with_capacity(node_count * 7 + DATA_SEPARATOR + data.len() + 512);
    for [left, right] in &nodes {
        let value = |record: &Record| {
            let v = match *record {
                Record::Empty => node_count,
                Record::Node(n) => n as usize,
                Record::Data(offset) => node_count + DATA_SEPARATOR + offset as usize,
            };
            assert!(v < RECORD_LIMIT, "database too large for 28-bit records");
            v as u32
        };
        out.extend_from_slice(&pack_node(value(left), value(right)));
    }
    out.extend_from_slice(&[0; DATA_SEPARATOR]);
    out.extend_from_slice(&data);
    out.extend_from_slice(METADATA_MARKER);

    let count = u32::try_from(node_count).expect("node count below 2^28");
    let languages = metadata.languages.iter().map(|&l| Value::Str(l.into()));
    let metadata = map([
        ("binary_format_major_version", Value::U16(2)),
        ("binary_format_minor_version", Value::U16(0)),
        ("build_epoch", Value::U64(metadata.build_epoch)),
        ("database_type", Value::Str(metadata.database_type.into())),
        (
            "description",
            map([("en", Value::Str(metadata.description.into()))]),
        ),
        ("ip_version", Value::U16(6)),
        ("languages", Value::Array(languages.collect())),
        ("node_count", Value::U32(count)),
        ("record_size", Value::U16(28)),
    ]);
    encode(&mut out, &metadata);
    out
}

/// A node of two 28-bit records: left[23..0], left[27..24] << 4 | right[27..24],
/// right[23..0].
fn pack_node(left: u32, right: u32) -> [u8; 7] {
    let (l, r) = (left.to_be_bytes(), right.to_be_bytes());
    [l[1], l[2], l[3], (l[0] << 4) | r[0], r[1], r[2], r[3]]
}

/// The nodes renumbered in depth-first order from the root, so a walk of the tree (and a
/// lookup) reads the file front to back as MaxMind's own writer lays it out. A node reached
/// twice (the IPv4 subtree through its aliases) keeps its first number.
fn depth_first(nodes: &[[Record; 2]]) -> Vec<[Record; 2]> {
    const UNSEEN: u32 = u32::MAX;
    let mut number = vec![UNSEEN; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    let mut stack = vec![0usize];
    while let Some(node) = stack.pop() {
        if number[node] != UNSEEN {
            continue;
        }
        number[node] = order.len() as u32;
        order.push(node);
        for record in nodes[node].iter().rev() {
            if let Record::Node(next) = *record
                && number[next as usize] == UNSEEN
            {
                stack.push(next as usize);
            }
        }
    }
    let renumber = |record: Record| match record {
        Record::Node(n) => Record::Node(number[n as usize]),
        other => other,
    };
    order
        .into_iter()
        .map(|old| [renumber(nodes[old][0]), renumber(nodes[old][1])])
        .collect()
}

/// Bit `i` (0 = most significant) of a 128-bit address.
fn bit(addr: u128, i: u8) -> usize {
    usize::from((addr >> (127 - i)) & 1 == 1)
}

/// The node reached after following the first `depth` bits of `addr`, creating nodes on
/// the way; a data record met on the way is pushed down into both children.
fn descend(nodes: &mut Vec<[Record; 2]>, addr: u128, depth: u8) -> usize {
    let mut node = 0;
    for i in 0..depth {
        let side = bit(addr, i);
        node = match nodes[node][side] {
            Record::Node(next) => next as usize,
            other => {
                nodes.push([other; 2]);
                let next = nodes.len() - 1;
                assert!(next < RECORD_LIMIT, "database too large for 28-bit records");
                nodes[node][side] = Record::Node(next as u32);
                next
            }
        };
    }
    node
}

/// Appends the encoding of `value` (big-endian, minimal-length integers).
fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Double(d) => {
            control(out, 3, 8);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::U16(v) => unsigned(out, 5, &v.to_be_bytes()),
        Value::U32(v) => unsigned(out, 6, &v.to_be_bytes()),
        Value::U64(v) => unsigned(out, 9, &v.to_be_bytes()),
        Value::Map(entries) => {
            control(out, 7, entries.len());
            for (key, value) in entries {
                encode(out, &Value::Str(key.clone()));
                encode(out, value);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for item in items {
                encode(out, item);
            }
        }
    }
}

fn unsigned(out: &mut Vec<u8>, type_num: u8, be_bytes: &[u8]) {
    let skip = be_bytes.iter().take_while(|&&b| b == 0).count();
    control(out, type_num, be_bytes.len() - skip);
    out.extend_from_slice(&be_bytes[skip..]);
}

/// Control byte (type in the top 3 bits, or 0 plus an extended-type byte for types above
/// 7) followed by the size, with 1-3 extra size bytes from 29 on.
fn control(out: &mut Vec<u8>, type_num: u8, size: usize) {
    let (size_bits, extra, extra_len) = match size {
        0..29 => (size as u8, 0, 0),
        29..285 => (29, size - 29, 1),
        285..65_821 => (30, size - 285, 2),
        _ => (31, size - 65_821, 3),
    };
    let extra = u32::try_from(extra).expect("value size fits the format");
    assert!(extra < 1 << 24, "value size fits the format");
    if type_num <= 7 {
        out.push((type_num << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend_from_slice(&extra.to_be_bytes()[4 - extra_len..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(type_num: u8, size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        control(&mut out, type_num, size);
        out
    }

    #[test]
    fn control_bytes_follow_the_spec() {
        assert_eq!(header(2, 0), [0x40]);
        assert_eq!(header(2, 28), [0x5c]);
        assert_eq!(header(2, 29), [0x5d, 0]);
        assert_eq!(header(2, 284), [0x5d, 255]);
        assert_eq!(header(2, 285), [0x5e, 0, 0]);
        assert_eq!(header(2, 65_820), [0x5e, 255, 255]);
        assert_eq!(header(2, 65_821), [0x5f, 0, 0, 0]);
        assert_eq!(header(11, 3), [0x03, 4], "extended type: array");
        assert_eq!(header(9, 300), [0x1e, 2, 0, 15], "extended type: uint64");
    }

    #[test]
    fn nodes_put_the_high_nibbles_in_the_middle_byte() {
        // The example of the MaxMind DB spec, section "28 bits".
        let node = pack_node(0x0123_4567, 0x089A_BCDE);
        assert_eq!(node, [0x23, 0x45, 0x67, 0x18, 0x9A, 0xBC, 0xDE]);
    }

    #[test]
    fn integers_are_minimal_big_endian() {
        let encoded = |v: &Value| {
            let mut out = Vec::new();
            encode(&mut out, v);
            out
        };
        assert_eq!(encoded(&Value::U16(0)), [0xa0]);
        assert_eq!(encoded(&Value::U32(0x0102)), [0xc2, 1, 2]);
        assert_eq!(encoded(&Value::U64(1)), [0x01, 2, 1]);
        assert_eq!(
            encoded(&Value::Double(1.0)),
            [0x68, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn long_strings_round_trip_through_the_reader() {
        let long = "x".repeat(70_000);
        let meta = Metadata {
            database_type: "Test",
            description: "long strings",
            languages: &[],
            build_epoch: 0,
        };
        for len in [28, 29, 284, 285, 65_820, 65_821, 70_000] {
            let value = map([("s", Value::Str(long[..len].to_owned()))]);
            let bytes = write(&[(1 << 127, 1, value)], &meta);
            let reader = maxminddb::Reader::from_source(bytes).expect("parse");
            let found = reader
                .lookup("8000::1".parse().expect("ip"))
                .expect("lookup");
            let map: BTreeMap<String, String> = found.decode().expect("decode").expect("data");
            assert_eq!(map["s"].len(), len);
        }
    }
}
