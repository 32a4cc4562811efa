//! What the agent probes and how one check runs: the [`Target`]s of a site (a member with
//! its address, check and transport), [`run_probe`] for the check's protocol, bounded by its
//! timeout, and [`hedged_probe`], the whole check hedged. Shared by the member loops
//! (`agent`) and the cross-site probes (`vantage`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use topology::{Check, CheckKind, Deployment, Member};

use crate::probe::http::Transport;
use crate::probe::{self, Verdict, bounded};
use crate::sigv4::Credentials;

/// One member to probe.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    pub node: String,
    pub addr: SocketAddr,
    pub agent: Option<SocketAddr>,
    pub check: Check,
    /// Plain or TLS, for the `s3` and `http` kinds.
    pub transport: Transport,
    /// For a slot of a discovered group: the name whose addresses fill the group.
    pub discover: Option<String>,
}

/// The members of `site` that have a check, with where and how to probe them. Fails on a
/// TLS setup that cannot work (a missing CA file, a bad server name).
pub fn targets(deployment: &Deployment, site: &str) -> Result<Vec<Target>, String> {
    let Some(site) = deployment.site_by_name(site) else {
        return Ok(Vec::new());
    };
    let mut targets = Vec::new();
    for m in deployment
        .members
        .iter()
        .filter(|m: &&Member| m.site == site)
    {
        let service = deployment.service(m.service);
        let Some(check) = service.check.clone() else {
            continue;
        };
        let transport = if check.tls {
            let name = check
                .server_name
                .clone()
                .unwrap_or_else(|| m.address.to_string());
            crate::tls::transport(check.ca_file.as_deref(), &name)
                .map_err(|e| format!("service {}: {e}", service.name))?
        } else {
            Transport::Plain
        };
        targets.push(Target {
            service: service.name.clone(),
            node: m.node.clone(),
            addr: SocketAddr::new(m.address, m.port.unwrap_or_else(|| check.default_port())),
            agent: m.agent_port.map(|p| SocketAddr::new(m.address, p)),
            check,
            transport,
            discover: m.discover.as_ref().map(|n| n.as_str().to_owned()),
        });
    }
    Ok(targets)
}

pub(crate) fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs the probe the target's check asks for.
pub(crate) async fn run_probe(target: &Target, credentials: Option<&Credentials>) -> Verdict {
    let check = &target.check;
    let work = async {
        match check.kind {
            CheckKind::Tcp => probe::tcp::probe(target.addr).await,
            CheckKind::Smb if check.deep => {
                let server = check
                    .server_name
                    .clone()
                    .unwrap_or_else(|| target.addr.ip().to_string());
                let share = check
                    .path
                    .as_deref()
                    .unwrap_or("share")
                    .trim_start_matches('/');
                probe::smb::deep_probe(target.addr, &server, share).await
            }
            CheckKind::Smb => probe::smb::probe(target.addr).await,
            CheckKind::Nfs if check.deep => {
                let mount = SocketAddr::new(
                    target.addr.ip(),
                    check.mount_port.unwrap_or(target.addr.port()),
                );
                let export = check.path.as_deref().unwrap_or("/");
                probe::nfs::deep_probe(target.addr, mount, export).await
            }
            CheckKind::Nfs => {
                probe::nfs::probe(target.addr, probe::nfs::NFS_PROGRAM, check.version).await
            }
            CheckKind::Http => {
                let http = probe::http::HttpCheck {
                    path: check.path.clone().unwrap_or_else(|| "/".into()),
                    host: None,
                    body_contains: check.body.clone(),
                };
                probe::http::probe(target.addr, &target.transport, &http).await
            }
            CheckKind::S3 => {
                let s3 = probe::s3::S3Check {
                    bucket: check
                        .bucket
                        .clone()
                        .unwrap_or_else(|| "portico-health".into()),
                    region: check.region.clone(),
                    credentials: credentials.cloned().unwrap_or(Credentials {
                        access_key: String::new(),
                        secret_key: String::new(),
                        session_token: None,
                    }),
                    virtual_host: check.virtual_host.clone(),
                };
                probe::s3::probe(target.addr, &target.transport, &s3, unix_now().as_secs()).await
            }
        }
    };
    bounded(check.timeout, work).await
}

/// A hedge attempt still running when its probe's verdict was given: the member's next
/// probe (it started half a timeout after the failed one, on a fresh connection).
pub(crate) type Carried = tokio::task::JoinHandle<Verdict>;

/// Runs the check with a hedge: when the first attempt has not finished by half the
/// timeout, a second starts beside it on a fresh connection, and the first success wins.
/// One lost segment (a retransmission after 200 ms or more, a second for a SYN) then delays
/// a probe instead of failing it, so loss on the probe path does not remove a healthy
/// member. A member that says no (a hard failure) is believed at once. When the first
/// attempt times out with the hedge still waiting, the timeout is the verdict and the hedge
/// is handed back to be the next probe: a hung member then fails its second probe half a
/// timeout after its first, each attempt having waited a whole timeout.
pub(crate) async fn hedged_probe(
    target: &Target,
    credentials: Option<&Credentials>,
) -> (Verdict, Option<Carried>) {
    let first = run_probe(target, credentials);
    tokio::pin!(first);
    tokio::select! {
        verdict = &mut first => return (verdict, None),
        _ = tokio::time::sleep(target.check.timeout / 2) => {}
    }
    let mut hedge: Carried = {
        let (target, credentials) = (target.clone(), credentials.cloned());
        tokio::spawn(async move { run_probe(&target, credentials.as_ref()).await })
    };
    tokio::select! {
        verdict = &mut first => {
            if verdict.ok || verdict.hard {
                hedge.abort();
                return (verdict, None);
            }
            // The first failed softly (a timeout, say) and the hedge is still out.
            (verdict, Some(hedge))
        }
        joined = &mut hedge => {
            let verdict = joined.unwrap_or_else(|_| Verdict::fail(Instant::now(), "probe task ended"));
            if verdict.ok || verdict.hard {
                return (verdict, None);
            }
            // The hedge failed softly first: the first attempt decides.
            (first.await, None)
        }
    }
}

/// The probe after one whose first attempt timed out with its hedge still out: the hedge
/// (started half a timeout before) races a fresh attempt started now, bounded by half the
/// timeout plus `fast_interval`; the first success wins, a hard failure is believed at
/// once, and it fails only when both do. The hedge alone would be no second opinion: under
/// loss it is as likely as the first attempt to be the delayed one (a lost handshake), and
/// two failures in a row bring a member down. A hung member fails both, the fresh one
/// `fast_interval` after the hedge.
pub(crate) async fn carried_probe(
    hedge: Carried,
    target: &Target,
    credentials: Option<&Credentials>,
) -> Verdict {
    let budget = target.check.timeout / 2 + target.check.fast_interval;
    let fresh = bounded(budget, run_probe(target, credentials));
    tokio::pin!(fresh);
    let mut hedge = hedge;
    tokio::select! {
        joined = &mut hedge => {
            let verdict = joined.unwrap_or_else(|_| Verdict::fail(Instant::now(), "probe task ended"));
            if verdict.ok || verdict.hard {
                return verdict;
            }
            fresh.await
        }
        verdict = &mut fresh => {
            if verdict.ok || verdict.hard {
                hedge.abort();
                return verdict;
            }
            hedge
                .await
                .unwrap_or_else(|_| Verdict::fail(Instant::now(), "probe task ended"))
        }
    }
}

/// A one-member deployment's target at 127.0.0.1:`port` with `check` (TOML), for tests.
#[cfg(test)]
pub(crate) fn one_member(check: &str, port: u16) -> Target {
    let config = format!(
        r#"
[zone]
origin = "storage.example."
ns = ["ns1"]
[[site]]
name = "fra"
[[service]]
name = "web"
check = {check}
members = [{{ site = "fra", node = "a", address = "127.0.0.1", port = {port} }}]
"#
    );
    let deployment = topology::Config::from_toml(&config, 1)
        .expect("the test deployment")
        .deployment;
    targets(&deployment, "fra").expect("its targets").remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP member on loopback that never answers the connections `stall` picks (by
    /// their number, from 1) and answers 200 on the others.
    async fn member(stall: fn(usize) -> bool) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            for n in 1.. {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                if stall(n) {
                    held.push(stream);
                    continue;
                }
                tokio::spawn(async move {
                    let mut head = [0u8; 1024];
                    let _ = stream.read(&mut head).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        one_member(r#"{ kind = "http", timeout = "400ms" }"#, port)
    }

    #[tokio::test]
    async fn a_probe_stalled_on_its_first_connection_is_answered_by_its_hedge() {
        let target = member(|n| n == 1).await;
        let (verdict, carried) = hedged_probe(&target, None).await;
        assert!(verdict.ok, "{verdict:?}");
        assert!(carried.is_none());
        let alone = bounded(target.check.timeout, run_probe(&target, None)).await;
        assert!(alone.ok, "later connections are answered: {alone:?}");
    }

    #[tokio::test]
    async fn a_carried_hedge_that_is_the_slow_one_is_answered_by_a_fresh_attempt() {
        // The first attempt and its hedge both stall (two lost handshakes); the next
        // probe's fresh attempt is answered.
        let target = member(|n| n <= 2).await;
        let (verdict, carried) = hedged_probe(&target, None).await;
        assert_eq!(verdict.reason, "timeout");
        let started = Instant::now();
        let next = carried_probe(carried.expect("the hedge is handed back"), &target, None).await;
        assert!(next.ok, "{next:?}");
        assert!(
            started.elapsed() < target.check.timeout / 2,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_hung_member_fails_the_carried_probe_too() {
        let target = member(|_| true).await;
        let (_, carried) = hedged_probe(&target, None).await;
        let started = Instant::now();
        let next = carried_probe(carried.unwrap(), &target, None).await;
        assert_eq!((next.ok, next.hard), (false, false), "{next:?}");
        let budget = target.check.timeout / 2 + target.check.fast_interval;
        let took = started.elapsed();
        assert!(took >= budget && took < budget * 5 / 4, "{took:?}");
    }

    #[tokio::test]
    async fn a_hung_member_fails_at_the_timeout_and_its_hedge_is_the_next_probe() {
        let target = member(|_| true).await;
        let timeout = target.check.timeout;
        let started = Instant::now();
        let (verdict, carried) = hedged_probe(&target, None).await;
        let took = started.elapsed();
        assert_eq!((verdict.reason.as_str(), verdict.hard), ("timeout", false));
        assert!(
            took >= timeout && took < timeout * 5 / 4,
            "the first attempt's timeout decides: {took:?}"
        );
        let next = carried.expect("the hedge is handed back").await.unwrap();
        let took = started.elapsed();
        assert_eq!(next.reason, "timeout");
        assert!(
            took >= timeout * 3 / 2 && took < timeout * 7 / 4,
            "the hedge waited a whole timeout from half a timeout in: {took:?}"
        );
    }
}
