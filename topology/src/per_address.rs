//! Open connections counted per client address: the bound the DNS front's TCP side, the
//! proxy's listeners and the raft transport share, so one address cannot hold every
//! connection slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client address, each at most `max`.
#[derive(Debug)]
pub struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in a [`PerAddress`] table, given back when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    table: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    pub fn new(max: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `address` (an IPv4-mapped IPv6 address counts as
    /// the IPv4 one), or `None` when that address holds `max` already.
    pub fn enter(table: &Arc<PerAddress>, address: IpAddr) -> Option<AddressSlot> {
        let address = address.to_canonical();
        let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(address).or_insert(0);
        if *count >= table.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: table.clone(),
            address,
        })
    }

    /// Connections open from `address` now.
    pub fn open(&self, address: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&address.to_canonical()).copied().unwrap_or(0)
    }

    /// Addresses with at least one connection open.
    pub fn addresses(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_capped_and_slots_come_back() {
        let table = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = PerAddress::enter(&table, a).expect("first");
        let second = PerAddress::enter(&table, mapped).expect("the same address, mapped");
        assert!(PerAddress::enter(&table, a).is_none(), "a third is refused");
        assert!(
            PerAddress::enter(&table, b).is_some(),
            "another address is not"
        );
        assert_eq!(table.open(a), 2);
        drop(first);
        assert_eq!(table.open(a), 1);
        let _third = PerAddress::enter(&table, a).expect("a slot came back");
        drop(second);
        assert_eq!(table.addresses(), 1, "b's slot was dropped at once");
    }
}
