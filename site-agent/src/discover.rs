//! Member discovery by DNS: a member group names a DNS name (a storage cluster's VIP pool,
//! say) instead of addresses. The agent resolves it every `discover_interval` and assigns
//! the addresses to the group's slots stably (an address keeps its slot while it is
//! resolved), so VIPs that come and go are followed without editing the configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use portico_client::dns::{Answer, Question, ask};

/// Resolves `name` (absolute, with the final dot) to its A and AAAA addresses, through
/// `resolver` when given (the shared DNS client: random ids, replies checked, TCP when
/// truncated), else the system's resolver.
pub async fn resolve(
    name: &str,
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let lookup = async {
        match resolver {
            Some(server) => {
                let mut addresses = Vec::new();
                for aaaa in [false, true] {
                    let question = Question {
                        name: name.to_owned(),
                        aaaa,
                        subnet: None,
                        recursive: true,
                    };
                    let answer = ask(server, &question, timeout)
                        .await
                        .map_err(|e| format!("resolve {name}: {e}"))?;
                    match answer.rcode {
                        Answer::NOERROR | Answer::NXDOMAIN => addresses.extend(answer.addresses),
                        _ => {
                            return Err(format!("resolve {name}: {}", answer.rcode_name()));
                        }
                    }
                }
                Ok(addresses)
            }
            None => tokio::net::lookup_host((name.trim_end_matches('.'), 0))
                .await
                .map(|found| found.map(|a| a.ip()).collect())
                .map_err(|e| format!("resolve {name}: {e}")),
        }
    };
    let mut addresses = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| format!("resolve {name}: timeout"))??;
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

/// Assigns `found` to `slots` (current assignment in, new one out): an address still found
/// keeps its slot; new addresses fill free slots in order; addresses beyond the slots wait.
pub fn assign(current: &[Option<IpAddr>], found: &[IpAddr]) -> Vec<Option<IpAddr>> {
    let mut next: Vec<Option<IpAddr>> = current
        .iter()
        .map(|slot| slot.filter(|a| found.contains(a)))
        .collect();
    let placed: Vec<IpAddr> = next.iter().flatten().copied().collect();
    let mut waiting = found.iter().filter(|a| !placed.contains(a));
    for slot in next.iter_mut().filter(|s| s.is_none()) {
        *slot = waiting.next().copied();
    }
    next
}

/// Groups to resolve: (service, discover name) -> the group's slot node names, in order.
pub type Groups = BTreeMap<(String, String), Vec<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn assignment_is_stable() {
        let (a, b, c, d) = (
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
            ip("10.0.0.4"),
        );
        let first = assign(&[None, None, None], &[a, b]);
        assert_eq!(first, vec![Some(a), Some(b), None]);
        // b goes away, c and d appear: a keeps slot 0, c takes b's slot, d the free one.
        let second = assign(&first, &[a, c, d]);
        assert_eq!(second, vec![Some(a), Some(c), Some(d)]);
        // More addresses than slots: the extra one waits.
        let third = assign(&second, &[a, b, c, d]);
        assert_eq!(third, vec![Some(a), Some(c), Some(d)]);
        assert_eq!(assign(&third, &[]), vec![None, None, None]);
    }
}
