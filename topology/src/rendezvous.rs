//! Rendezvous (highest random weight) hashing of a client over members: every proxy of a
//! site picks the same member for a client with no shared state, and losing a member moves
//! only that member's clients. Weighted by the logarithmic method, so a member's share is
//! proportional to its weight. Pure.

use std::net::IpAddr;

/// A 64-bit mix of the client and the member key (SplitMix64 over both, deterministic
/// across processes and builds).
fn mix(client: IpAddr, key: u64) -> u64 {
    let client_bits = match client {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    };
    let mut z = (client_bits as u64)
        ^ ((client_bits >> 64) as u64).rotate_left(17)
        ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The member `client` goes to among `candidates` (`(key, weight)`, weight 0 = never), or
/// `None` when none can take it. `key` identifies a member stably (e.g. a hash of its name).
pub fn pick(client: IpAddr, candidates: &[(u64, u32)]) -> Option<u64> {
    candidates
        .iter()
        .filter(|(_, weight)| *weight > 0)
        .map(|(key, weight)| {
            // A uniform value in (0, 1]; the score -w / ln(u) orders members so that each
            // wins in proportion to its weight.
            let u = ((mix(client, *key) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            (*key, -(*weight as f64) / u.ln())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(key, _)| key)
}

/// A stable key for a member name (FNV-1a), for [`pick`].
pub fn key_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(n: u32) -> impl Iterator<Item = IpAddr> {
        (0..n).map(|i| IpAddr::V4((0x0A00_0000 + i * 7919).into()))
    }

    #[test]
    fn same_answer_everywhere_and_only_the_lost_members_clients_move() {
        let members: Vec<(u64, u32)> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| (key_of(n), 100))
            .collect();
        let without_c: Vec<(u64, u32)> = members
            .iter()
            .copied()
            .filter(|(k, _)| *k != key_of("c"))
            .collect();
        let mut moved = 0;
        for client in clients(10_000) {
            let before = pick(client, &members).unwrap();
            assert_eq!(pick(client, &members), Some(before), "deterministic");
            let after = pick(client, &without_c).unwrap();
            if before == key_of("c") {
                moved += 1;
            } else {
                assert_eq!(before, after, "a client of a surviving member stayed");
            }
        }
        assert!(
            (2_000..3_000).contains(&moved),
            "about a quarter were c's: {moved}"
        );
    }

    #[test]
    fn shares_follow_weights() {
        let members = [
            (key_of("heavy"), 300),
            (key_of("light"), 100),
            (key_of("off"), 0),
        ];
        let heavy = clients(20_000)
            .filter(|c| pick(*c, &members) == Some(key_of("heavy")))
            .count();
        assert!((14_000..16_000).contains(&heavy), "about 75%: {heavy}");
        assert!(
            clients(1000).all(|c| pick(c, &members) != Some(key_of("off"))),
            "weight 0 never picked"
        );
        assert_eq!(pick(clients(1).next().unwrap(), &[(1, 0)]), None);
        assert_eq!(pick(clients(1).next().unwrap(), &[]), None);
    }
}
