//! A longest-prefix table flattened into disjoint CIDR blocks that cover the whole address
//! space: a lookup is one binary search and also yields the block's prefix length, which is
//! exactly the EDNS Client Subnet scope of an answer decided by it (RFC 7871 section 7.2.1).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Builds a [`PrefixMap`] from two layers. The base layer takes networks in ascending
/// order ([`push`](Self::push), as a GeoIP database lists them) and costs a few octets per
/// range; painted networks ([`paint`](Self::paint)) go on top, a later paint winning inside
/// its network. Adjacent ranges with equal values are merged, so the blocks are as large as
/// the data allows.
#[derive(Debug, Clone)]
pub struct PrefixMapBuilder<T> {
    v4: Layers<T>,
    v6: Layers<T>,
}

impl<T: Copy + Eq> Default for PrefixMapBuilder<T> {
    fn default() -> Self {
        PrefixMapBuilder {
            v4: Layers::default(),
            v6: Layers::default(),
        }
    }
}

/// One family's layers: inclusive ranges `(first, last, value)`.
#[derive(Debug, Clone)]
struct Layers<T> {
    /// Pushed ranges; ascending and disjoint while `in_order`.
    base: Vec<(u128, u128, T)>,
    /// Whether every push so far came after the previous one.
    in_order: bool,
    /// Painted ranges, in the order painted.
    paints: Vec<(u128, u128, T)>,
}

impl<T> Default for Layers<T> {
    fn default() -> Self {
        Layers {
            base: Vec::new(),
            in_order: true,
            paints: Vec::new(),
        }
    }
}

fn bounds(net: IpNet) -> (u128, u128, bool) {
    match net.trunc() {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
            true,
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast()), false),
    }
}

impl<T: Copy + Eq> PrefixMapBuilder<T> {
    /// Gives every address of `net` the value `value`, over whatever was there.
    pub fn paint(&mut self, net: IpNet, value: T) {
        let (lo, hi, v4) = bounds(net);
        let layers = if v4 { &mut self.v4 } else { &mut self.v6 };
        layers.paints.push((lo, hi, value));
    }

    /// Adds `net` to the base layer, under every painted network. Networks pushed in
    /// ascending order without overlapping (a database's networks) are appended in place;
    /// any other push still works, where networks overlap the more specific one wins.
    pub fn push(&mut self, net: IpNet, value: T) {
        let (lo, hi, v4) = bounds(net);
        let layers = if v4 { &mut self.v4 } else { &mut self.v6 };
        match layers.base.last_mut() {
            Some(last) if layers.in_order && last.1 < lo => {
                if last.2 == value && last.1 + 1 == lo {
                    last.1 = hi;
                } else {
                    layers.base.push((lo, hi, value));
                }
            }
            Some(_) => {
                layers.in_order = false;
                layers.base.push((lo, hi, value));
            }
            None => layers.base.push((lo, hi, value)),
        }
    }

    pub fn build(self) -> PrefixMap<T> {
        PrefixMap {
            v4: self.v4.into_blocks(32),
            v6: self.v6.into_blocks(128),
        }
    }
}

impl<T: Copy + Eq> Layers<T> {
    fn into_blocks<K: BlockStart>(self, bits: u32) -> Blocks<K, T> {
        let base = if self.in_order {
            self.base
        } else {
            // Widest first, so more specific networks cut into them.
            let mut ranges = self.base;
            ranges.sort_by_key(|&(lo, hi, _)| (std::cmp::Reverse(hi - lo), lo));
            let mut painted = IntervalMap::default();
            for (lo, hi, value) in ranges {
                painted.assign(lo, hi, value);
            }
            painted.into_sorted()
        };
        let mut top = IntervalMap::default();
        for (lo, hi, value) in self.paints {
            top.assign(lo, hi, value);
        }
        let top = top.into_sorted();
        let max = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        let mut blocks = Blocks::default();
        let mut pending: Option<(u128, u128, Option<T>)> = None;
        let mut emit = |lo: u128, hi: u128, value: Option<T>| {
            if let Some(last) = &mut pending {
                if last.2 == value && last.1.checked_add(1) == Some(lo) {
                    last.1 = hi;
                    return;
                }
                let (l, h, v) = *last;
                split_cidr(l, h, bits, |start, prefix_len| {
                    blocks.push(start, prefix_len, v)
                });
            }
            pending = Some((lo, hi, value));
        };
        overlay(&base, &top, max, &mut emit);
        if let Some((l, h, v)) = pending {
            split_cidr(l, h, bits, |start, prefix_len| {
                blocks.push(start, prefix_len, v)
            });
        }
        blocks.shrink();
        blocks
    }
}

/// Calls `emit` for consecutive ranges covering `0..=max`: `top`'s ranges where it has
/// them, `base`'s elsewhere, `None` in the gaps of both. Both inputs are ascending and
/// disjoint.
fn overlay<T: Copy>(
    base: &[(u128, u128, T)],
    top: &[(u128, u128, T)],
    max: u128,
    emit: &mut impl FnMut(u128, u128, Option<T>),
) {
    let (mut b, mut t) = (0, 0);
    let mut cur = 0u128;
    loop {
        while b < base.len() && base[b].1 < cur {
            b += 1;
        }
        while t < top.len() && top[t].1 < cur {
            t += 1;
        }
        let next_top = top.get(t).copied();
        let end = match next_top {
            Some((lo, hi, value)) if lo <= cur => {
                emit(cur, hi, Some(value));
                hi
            }
            _ => {
                // Up to the next top range, whichever of base or gap holds `cur`.
                let (mut end, value) = match base.get(b) {
                    Some(&(lo, hi, value)) if lo <= cur => (hi, Some(value)),
                    Some(&(lo, _, _)) => (lo - 1, None),
                    None => (max, None),
                };
                if let Some((lo, _, _)) = next_top {
                    end = end.min(lo - 1);
                }
                emit(cur, end, value);
                end
            }
        };
        if end >= max {
            return;
        }
        cur = end + 1;
    }
}

/// The start of a block: `u32` for IPv4, `u128` for IPv6.
trait BlockStart: Copy + Ord {
    fn from_u128(value: u128) -> Self;
}

impl BlockStart for u32 {
    fn from_u128(value: u128) -> Self {
        value as u32
    }
}

impl BlockStart for u128 {
    fn from_u128(value: u128) -> Self {
        value
    }
}

/// Disjoint CIDR blocks covering a family's whole space, sorted by start, stored column by
/// column (an IPv4 block of a client-class table costs 13 octets: a GeoIP City database
/// makes millions of them).
#[derive(Debug, Clone)]
struct Blocks<K, T> {
    starts: Vec<K>,
    prefix_lens: Vec<u8>,
    values: Vec<Option<T>>,
}

impl<K, T> Default for Blocks<K, T> {
    fn default() -> Self {
        Blocks {
            starts: Vec::new(),
            prefix_lens: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<K: BlockStart, T: Copy> Blocks<K, T> {
    fn push(&mut self, start: u128, prefix_len: u8, value: Option<T>) {
        self.starts.push(K::from_u128(start));
        self.prefix_lens.push(prefix_len);
        self.values.push(value);
    }

    fn shrink(&mut self) {
        self.starts.shrink_to_fit();
        self.prefix_lens.shrink_to_fit();
        self.values.shrink_to_fit();
    }

    fn lookup(&self, key: K) -> (Option<T>, u8) {
        let index = self.starts.partition_point(|s| *s <= key).saturating_sub(1);
        (self.values[index], self.prefix_lens[index])
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    /// Octets held.
    fn size(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<K>()
            + self.prefix_lens.capacity()
            + self.values.capacity() * std::mem::size_of::<Option<T>>()
    }
}

/// Disjoint CIDR blocks covering all of IPv4 and all of IPv6, sorted by start.
#[derive(Debug, Clone)]
pub struct PrefixMap<T> {
    v4: Blocks<u32, T>,
    v6: Blocks<u128, T>,
}

impl<T: Copy> PrefixMap<T> {
    /// The value of the block holding `ip` (`None` where nothing was painted) and the block's
    /// prefix length.
    pub fn lookup(&self, ip: IpAddr) -> (Option<T>, u8) {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// Number of blocks (IPv4 plus IPv6), a measure of the table's size.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Octets the blocks hold.
    pub fn size(&self) -> usize {
        self.v4.size() + self.v6.size()
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

    /// The ranges, ascending.
    fn into_sorted(self) -> Vec<(u128, u128, T)> {
        self.ranges
            .into_iter()
            .map(|(lo, (hi, value))| (lo, hi, value))
            .collect()
    }
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
    fn pushed_networks_lie_under_painted_ones() {
        let mut b = PrefixMapBuilder::default();
        b.paint(net("10.1.0.0/16"), 9);
        b.push(net("10.0.0.0/16"), 1);
        b.push(net("10.1.0.0/16"), 1);
        b.push(net("10.2.0.0/16"), 1);
        b.push(net("10.3.0.0/24"), 2);
        b.push(net("2001:db8::/32"), 3);
        let map = b.build();
        assert_eq!(map.lookup(ip("10.0.9.9")), (Some(1), 16));
        assert_eq!(map.lookup(ip("10.1.9.9")), (Some(9), 16));
        assert_eq!(map.lookup(ip("10.2.9.9")), (Some(1), 16));
        assert_eq!(map.lookup(ip("10.3.0.1")), (Some(2), 24));
        assert_eq!(map.lookup(ip("10.3.1.1")), (None, 24));
        assert_eq!(map.lookup(ip("2001:db8:5::1")), (Some(3), 32));
        assert_eq!(map.lookup(ip("::1")).0, None);
    }

    #[test]
    fn pushes_out_of_order_or_overlapping_still_let_the_most_specific_win() {
        let mut b = PrefixMapBuilder::default();
        b.push(net("10.2.0.0/16"), 1);
        b.push(net("10.0.0.0/8"), 2);
        b.push(net("10.2.3.0/24"), 3);
        b.push(net("9.0.0.0/8"), 4);
        let map = b.build();
        assert_eq!(map.lookup(ip("10.2.3.4")), (Some(3), 24));
        assert_eq!(map.lookup(ip("10.2.4.4")).0, Some(1));
        assert_eq!(map.lookup(ip("10.9.0.1")).0, Some(2));
        assert_eq!(map.lookup(ip("9.9.9.9")), (Some(4), 8));
    }

    /// Pushing a database's networks in order and painting them give the same map.
    #[test]
    fn pushing_in_order_matches_painting() {
        let mut seed = 0x1234_5678_9abc_def0_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut pushed, mut painted) = (PrefixMapBuilder::default(), PrefixMapBuilder::default());
        let mut addr: u64 = 1 << 24;
        for _ in 0..2_000 {
            let len = 20 + (next() % 9) as u8;
            let size = 1u64 << (32 - len);
            addr = addr.div_ceil(size) * size + (next() % 3) * size;
            let network = IpNet::new(IpAddr::from((addr as u32).to_be_bytes()), len).unwrap();
            let value = (next() % 3) as u8;
            pushed.push(network, value);
            painted.paint(network, value);
            addr += size;
        }
        for (site_net, value) in [("1.0.8.0/22", 7), ("1.3.0.0/16", 8)] {
            pushed.paint(net(site_net), value);
            painted.paint(net(site_net), value);
        }
        let (pushed, painted) = (pushed.build(), painted.build());
        assert_eq!(pushed.len(), painted.len());
        for _ in 0..20_000 {
            let probe =
                IpAddr::from(((1u32 << 24) + (next() as u32 % (addr as u32))).to_be_bytes());
            assert_eq!(pushed.lookup(probe), painted.lookup(probe), "{probe}");
        }
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
