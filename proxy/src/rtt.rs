//! Client RTT sampling: the kernel's smoothed RTT of each client connection (read when the
//! connection ends, so it reflects the whole exchange) is folded into a per-prefix average
//! (/24 and /56 by default) and posted to the store as the `latency` policy's input.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use ipnet::IpNet;
use topology::wire::{RttReport, RttSample};

#[derive(Debug)]
pub struct RttTable {
    prefix_v4: u8,
    prefix_v6: u8,
    /// Per prefix: the smoothed RTT (µs) and the samples since the last post.
    prefixes: Mutex<HashMap<IpNet, (f64, u32)>>,
}

/// At most this many prefixes are tracked; more new ones are dropped until the next post.
const MAX_PREFIXES: usize = 65_536;

impl RttTable {
    pub fn new(prefix_v4: u8, prefix_v6: u8) -> RttTable {
        RttTable {
            prefix_v4,
            prefix_v6,
            prefixes: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the connection's smoothed RTT and folds it into the client's prefix.
    pub fn sample(&self, client: IpAddr, socket: &impl AsRawFd) {
        if let Ok(Some(rtt_us)) = crate::sys::smoothed_rtt_us(socket) {
            self.record(client, rtt_us);
        }
    }

    pub fn record(&self, client: IpAddr, rtt_us: u32) {
        let len = match client {
            IpAddr::V4(_) => self.prefix_v4,
            IpAddr::V6(_) => self.prefix_v6,
        };
        let Ok(prefix) = IpNet::new(client, len).map(|net| net.trunc()) else {
            return;
        };
        let mut prefixes = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        if prefixes.len() >= MAX_PREFIXES && !prefixes.contains_key(&prefix) {
            return;
        }
        let entry = prefixes.entry(prefix).or_insert((f64::from(rtt_us), 0));
        // An exponentially weighted average, like the kernel's own srtt (gain 1/8).
        entry.0 += (f64::from(rtt_us) - entry.0) / 8.0;
        entry.1 += 1;
    }

    /// The prefixes sampled since the last call, as a report; counts start again.
    pub fn take_report(&self, site: &str) -> Option<RttReport> {
        let mut prefixes = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        let mut samples: Vec<RttSample> = prefixes
            .iter()
            .filter(|(_, (_, count))| *count > 0)
            .map(|(prefix, (rtt, count))| RttSample {
                prefix: *prefix,
                rtt_us: rtt.round().max(1.0) as u32,
                samples: *count,
            })
            .collect();
        prefixes.retain(|_, (_, count)| {
            let keep = *count > 0;
            *count = 0;
            keep
        });
        if samples.is_empty() {
            return None;
        }
        samples.sort_by_key(|s| s.prefix);
        Some(RttReport {
            site: site.to_string(),
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fold_into_their_prefix_and_reports_carry_only_new_ones() {
        let table = RttTable::new(24, 56);
        table.record("127.1.0.5".parse().unwrap(), 800);
        table.record("127.1.0.200".parse().unwrap(), 1600);
        table.record("2001:db8:0:1::5".parse().unwrap(), 3000);
        let report = table.take_report("fra").unwrap();
        assert_eq!(report.site, "fra");
        assert_eq!(report.samples.len(), 2);
        let v4 = &report.samples[0];
        assert_eq!(v4.prefix.to_string(), "127.1.0.0/24");
        assert_eq!(v4.samples, 2);
        assert_eq!(v4.rtt_us, 900, "800 then 1/8 of the way to 1600");
        assert_eq!(report.samples[1].prefix.to_string(), "2001:db8::/56");
        assert!(
            table.take_report("fra").is_none(),
            "nothing new since the last report"
        );
        table.record("127.1.0.9".parse().unwrap(), 900);
        let again = table.take_report("fra").unwrap();
        assert_eq!(again.samples.len(), 1);
        assert_eq!(again.samples[0].samples, 1);
    }
}
