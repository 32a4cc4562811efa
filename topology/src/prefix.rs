//! A longest-prefix table flattened into disjoint CIDR blocks that cover the whole address
//! space: a lookup is one binary search and also yields the block's prefix length, which is
//! exactly the EDNS Client Subnet scope of an answer decided by it (RFC 7871 section 7.2.1).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Builds a [`PrefixMap`] by painting networks over each other: a later `paint` wins inside
/// its network. Adjacent ranges with equal values are merged, so the blocks are as large as
/// the data allows.
#[derive(Debug, Clone)]
pub struct PrefixMapBuilder<T> {
    v4: IntervalMap<T>,
    v6: IntervalMap<T>,
}

impl<T: Copy + Eq> Default for PrefixMapBuilder<T> {
    fn default() -> Self {
        PrefixMapBuilder {
            v4: IntervalMap::default(),
            v6: IntervalMap::default(),
        }
    }
}

impl<T: Copy + Eq> PrefixMapBuilder<T> {
    /// Gives every address of `net` the value `value`, over whatever was there.
    pub fn paint(&mut self, net: IpNet, value: T) {
        let net = net.trunc();
        match net {
            IpNet::V4(n) => {
                let lo = u32::from(n.network()) as u128;
                let hi = u32::from(n.broadcast()) as u128;
                self.v4.assign(lo, hi, value);
            }
            IpNet::V6(n) => {
                let lo = u128::from(n.network());
                let hi = u128::from(n.broadcast());
                self.v6.assign(lo, hi, value);
            }
        }
    }

    pub fn build(self) -> PrefixMap<T> {
        PrefixMap {
            v4: self.v4.into_blocks(32),
            v6: self.v6.into_blocks(128),
        }
    }
}

/// Disjoint CIDR blocks covering all of IPv4 and all of IPv6, sorted by start.
#[derive(Debug, Clone)]
pub struct PrefixMap<T> {
    v4: Vec<Block<T>>,
    v6: Vec<Block<T>>,
}

#[derive(Debug, Clone, Copy)]
struct Block<T> {
    start: u128,
    prefix_len: u8,
    value: Option<T>,
}

impl<T: Copy> PrefixMap<T> {
    /// The value of the block holding `ip` (`None` where nothing was painted) and the block's
    /// prefix length.
    pub fn lookup(&self, ip: IpAddr) -> (Option<T>, u8) {
        let (blocks, key) = match ip {
            IpAddr::V4(a) => (&self.v4, u32::from(a) as u128),
            IpAddr::V6(a) => (&self.v6, u128::from(a)),
        };
        let index = blocks.partition_point(|b| b.start <= key).saturating_sub(1);
        let block = blocks[index];
        (block.value, block.prefix_len)
    }

    /// Number of blocks (IPv4 plus IPv6), a measure of the table's size.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Inclusive ranges `start -> (end, value)`, disjoint.
#[derive(Debug, Clone)]
struct IntervalMap<T> {
    ranges: BTreeMap<u128, (u128, T)>,
}

impl<T> Default for IntervalMap<T> {
    fn default() -> Self {
        IntervalMap {
            ranges: BTreeMap::new(),
        }
    }
}

impl<T: Copy + Eq> IntervalMap<T> {
    fn assign(&mut self, lo: u128, hi: u128, value: T) {
        // A range starting before `lo` that reaches into it is cut at `lo`, keeping its tail.
        if let Some((&start, &(end, old))) = self.ranges.range(..lo).next_back()
            && end >= lo
        {
            self.ranges.insert(start, (lo - 1, old));
            if end > hi {
                self.ranges.insert(hi + 1, (end, old));
            }
        }
        let inside: Vec<u128> = self.ranges.range(lo..=hi).map(|(s, _)| *s).collect();
        for start in inside {
            if let Some((end, old)) = self.ranges.remove(&start)
                && end > hi
            {
                self.ranges.insert(hi + 1, (end, old));
            }
        }
        self.ranges.insert(lo, (hi, value));
    }

    /// Merges neighbours with equal values, fills gaps with `None`, splits into CIDR blocks.
    fn into_blocks(self, bits: u32) -> Vec<Block<T>> {
        let max = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        let mut merged: Vec<(u128, u128, Option<T>)> = Vec::new();
        let mut next = 0u128;
        let mut covered_all = false;
        for (start, (end, value)) in self.ranges {
            if start > next {
                push_merged(&mut merged, next, start - 1, None);
            }
            push_merged(&mut merged, start, end, Some(value));
            if end == max {
                covered_all = true;
                break;
            }
            next = end + 1;
        }
        if !covered_all {
            push_merged(&mut merged, next, max, None);
        }
        let mut blocks = Vec::new();
        for (lo, hi, value) in merged {
            split_cidr(lo, hi, bits, |start, prefix_len| {
                blocks.push(Block {
                    start,
                    prefix_len,
                    value,
                })
            });
        }
        blocks
    }
}

fn push_merged<T: Eq>(
    merged: &mut Vec<(u128, u128, Option<T>)>,
    lo: u128,
    hi: u128,
    value: Option<T>,
) {
    if let Some(last) = merged.last_mut()
        && last.2 == value
        && last.1.checked_add(1) == Some(lo)
    {
        last.1 = hi;
        return;
    }
    merged.push((lo, hi, value));
}

/// The last address of the block of `2^size_bits` addresses starting at `lo`.
fn block_last(lo: u128, size_bits: u32) -> Option<u128> {
    if size_bits >= 128 {
        (lo == 0).then_some(u128::MAX)
    } else {
        lo.checked_add((1u128 << size_bits) - 1)
    }
}

/// Calls `emit(start, prefix_len)` for the fewest CIDR blocks exactly covering `lo..=hi`.
fn split_cidr(mut lo: u128, hi: u128, bits: u32, mut emit: impl FnMut(u128, u8)) {
    loop {
        let mut size_bits = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        while size_bits > 0 && block_last(lo, size_bits).is_none_or(|last| last > hi) {
            size_bits -= 1;
        }
        emit(lo, (bits - size_bits) as u8);
        let last = block_last(lo, size_bits).unwrap_or(lo);
        if last >= hi {
            return;
        }
        lo = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }
    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn empty_map_covers_everything_with_one_block_per_family() {
        let map = PrefixMapBuilder::<u8>::default().build();
        assert_eq!(map.lookup(ip("10.1.2.3")), (None, 0));
        assert_eq!(map.lookup(ip("2001:db8::1")), (None, 0));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn later_paint_wins_and_scopes_are_block_lengths() {
        let mut b = PrefixMapBuilder::default();
        b.paint(net("127.1.5.0/24"), 'g');
        b.paint(net("127.2.0.0/16"), 'g');
        b.paint(net("127.1.0.0/16"), 's');
        b.paint(net("2001:db8:1::/48"), 'e');
        let map = b.build();
        assert_eq!(map.lookup(ip("127.1.5.9")), (Some('s'), 16));
        assert_eq!(map.lookup(ip("127.2.200.1")), (Some('g'), 16));
        assert_eq!(map.lookup(ip("127.0.0.1")).0, None);
        assert_eq!(
            map.lookup(ip("127.0.0.1")).1,
            16,
            "gap 127.0.0.0/16 is one block"
        );
        assert_eq!(map.lookup(ip("2001:db8:1:ffff::1")), (Some('e'), 48));
        assert_eq!(map.lookup(ip("255.255.255.255")).0, None);
        assert_eq!(map.lookup(ip("0.0.0.0")).0, None);
    }

    #[test]
    fn adjacent_equal_values_merge_into_larger_blocks() {
        let mut b = PrefixMapBuilder::default();
        b.paint(net("192.0.2.0/25"), 1);
        b.paint(net("192.0.2.128/25"), 1);
        b.paint(net("192.0.3.0/24"), 2);
        let map = b.build();
        assert_eq!(map.lookup(ip("192.0.2.200")), (Some(1), 24));
        assert_eq!(map.lookup(ip("192.0.3.1")), (Some(2), 24));
    }

    #[test]
    fn painting_inside_splits_the_outer_range() {
        let mut b = PrefixMapBuilder::default();
        b.paint(net("10.0.0.0/8"), 1);
        b.paint(net("10.1.0.0/16"), 2);
        let map = b.build();
        assert_eq!(map.lookup(ip("10.0.255.1")), (Some(1), 16));
        assert_eq!(map.lookup(ip("10.1.2.3")), (Some(2), 16));
        assert_eq!(map.lookup(ip("10.2.0.1")), (Some(1), 15));
        assert_eq!(map.lookup(ip("10.128.0.1")), (Some(1), 9));
    }

    #[test]
    fn whole_space_paints() {
        let mut b = PrefixMapBuilder::default();
        b.paint(net("0.0.0.0/0"), 7);
        b.paint(net("::/0"), 8);
        let map = b.build();
        assert_eq!(map.lookup(ip("1.2.3.4")), (Some(7), 0));
        assert_eq!(map.lookup(ip("ffff::1")), (Some(8), 0));
        assert_eq!(map.len(), 2);
    }
}
