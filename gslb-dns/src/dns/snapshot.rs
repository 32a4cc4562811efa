//! The immutable snapshot the DNS front answers from: deployment, state, client classes, the
//! encoded zone and every service answer precomputed per (service, family, client class).
//! Built off the query path whenever anything changes and published with `ArcSwap`.

use std::net::IpAddr;
use std::sync::Arc;

use geoip_data::GeoDb;
use topology::wire::views::{RttEntry, StoreView};
use topology::{
    BaseClasses, BaseClassesBuilder, ClassTable, ClientLocation, Deployment, DnsSettings, Family,
    GeoLocation, Policy, ServiceId, SiteId, State, Timestamp,
};

use super::zone::{ZoneData, rr_tail};

/// One rotation of a service answer, encoded: `count` records without owner names.
#[derive(Debug, Clone)]
pub struct PackedVariant {
    pub count: u16,
    pub tails: Vec<u8>,
    /// The site the answer sends the client to (for metrics).
    pub site: Option<SiteId>,
}

/// Every rotation of one answer; none means NODATA.
#[derive(Debug, Clone, Default)]
pub struct PackedAnswer {
    pub variants: Vec<PackedVariant>,
}

/// Answers indexed by (service, family, class).
#[derive(Debug, Clone)]
pub struct AnswerTable {
    answers: Vec<PackedAnswer>,
    classes: usize,
    /// Per service: whether the answer depends on where the client is (the ECS scope is then
    /// the deciding network's length, otherwise 0).
    location_scoped: Vec<bool>,
}

impl AnswerTable {
    pub fn build(
        deployment: &Deployment,
        state: &State,
        classes: &ClassTable,
        now: Timestamp,
    ) -> AnswerTable {
        let class_count = classes.classes().len();
        let mut answers = Vec::with_capacity(deployment.services.len() * 2 * class_count);
        for service_id in deployment.service_ids() {
            let service = deployment.service(service_id);
            for family in [Family::V4, Family::V6] {
                for class in classes.classes() {
                    let selection =
                        topology::select(deployment, state, service_id, family, class, now);
                    let variants = selection
                        .variants
                        .iter()
                        .map(|variant| {
                            let mut tails = Vec::new();
                            for member in &variant.members {
                                match state.address_of(deployment, *member) {
                                    IpAddr::V4(a) => {
                                        rr_tail(1, service.ttl, &a.octets(), &mut tails)
                                    }
                                    IpAddr::V6(a) => {
                                        rr_tail(28, service.ttl, &a.octets(), &mut tails)
                                    }
                                }
                            }
                            PackedVariant {
                                count: variant.members.len() as u16,
                                tails,
                                site: variant.site,
                            }
                        })
                        .collect();
                    answers.push(PackedAnswer { variants });
                }
            }
        }
        AnswerTable {
            answers,
            classes: class_count,
            location_scoped: deployment
                .services
                .iter()
                .map(|s| {
                    matches!(
                        s.policy,
                        Policy::Topology | Policy::Latency | Policy::LeastLoad
                    )
                })
                .collect(),
        }
    }

    pub fn get(
        &self,
        service: ServiceId,
        family: Family,
        class: topology::ClassId,
    ) -> &PackedAnswer {
        let family = match family {
            Family::V4 => 0,
            Family::V6 => 1,
        };
        &self.answers[(service.0 as usize * 2 + family) * self.classes + class as usize]
    }

    pub fn location_scoped(&self, service: ServiceId) -> bool {
        self.location_scoped[service.0 as usize]
    }
}

/// Where a deployment's services and sites are counted: slot per `ServiceId` and `SiteId`
/// (`None`: beyond the slots there are).
#[derive(Debug, Clone, Default)]
pub struct MetricSlots {
    pub services: Vec<Option<u16>>,
    pub sites: Vec<Option<u16>>,
}

/// Everything a query needs, immutable.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub generation: u64,
    pub built_at: Timestamp,
    /// The deployment version the answers come from (0: the node's own file).
    pub config_version: u64,
    pub deployment: Arc<Deployment>,
    /// This node's DNS settings (ECS, payload size, debug queries).
    pub dns: Arc<DnsSettings>,
    pub state: Arc<State>,
    pub classes: Arc<ClassTable>,
    pub geo: Arc<GeoDb>,
    pub zone: Arc<ZoneData>,
    pub answers: AnswerTable,
    pub store: StoreView,
    /// Where this deployment's services and sites are counted.
    pub metric_slots: MetricSlots,
}

impl Snapshot {
    /// Where `ip` is: a site client network first, then GeoIP, else unknown; with the network
    /// that decided (as text) for explanations.
    pub fn locate(&self, ip: IpAddr) -> (ClientLocation, Option<String>) {
        if let Some((site, net)) = topology::classes::site_network_of(&self.deployment, ip) {
            return (ClientLocation::SiteNetwork { site }, Some(net.to_string()));
        }
        match self.geo.lookup(ip) {
            Ok(Some((location, prefix_len))) => {
                let network = ipnet::IpNet::new(ip, prefix_len)
                    .map(|n| n.trunc().to_string())
                    .ok();
                (
                    ClientLocation::Geoip {
                        location: geo_location(location),
                    },
                    network,
                )
            }
            _ => (ClientLocation::Unknown, None),
        }
    }
}

/// The GeoIP database's location in the model's terms.
pub fn geo_location(location: geoip_data::Location) -> GeoLocation {
    GeoLocation {
        continent: location.continent,
        country: location.country,
        subdivision: location.subdivision,
        city: location.city,
        coordinates: location
            .coordinates
            .map(|(lat, lon)| topology::Coordinates { lat, lon }),
    }
}

/// RTT samples from the store, per client prefix: the sites that measured it and their RTT.
pub type RttTable =
    std::collections::BTreeMap<String, std::collections::BTreeMap<ipnet::IpNet, RttEntry>>;

/// The client classes of a GeoIP database's networks and the deployment's site networks.
/// Walks the database once, decoding each distinct record once (a City database has
/// millions of networks sharing a few hundred thousand records), and hands the file's pages
/// back as it goes.
pub fn build_base_classes(
    deployment: &Deployment,
    geo: &GeoDb,
) -> Result<BaseClasses, geoip_data::GeoError> {
    let started = std::time::Instant::now();
    let mut builder = BaseClassesBuilder::new(deployment);
    let mut networks = 0usize;
    geo.for_each_network(|network| {
        networks += 1;
        builder.add(network.net, network.record, || {
            network.location().map(geo_location)
        })
    })?;
    let base = builder.finish();
    tracing::info!(
        networks,
        blocks = base.blocks(),
        octets = base.size(),
        ms = started.elapsed().as_millis() as u64,
        "client classes built from the GeoIP database"
    );
    Ok(base)
}

/// The client-class table: `base` with the RTT samples proxies reported laid over it
/// (prefixes with samples get `latency` orders). Samples older than `max_age` at `now` are
/// left out.
pub fn measured_classes(
    base: &Arc<BaseClasses>,
    deployment: &Deployment,
    rtt: &RttTable,
    now: Timestamp,
    max_age: std::time::Duration,
) -> ClassTable {
    let mut by_prefix: std::collections::BTreeMap<ipnet::IpNet, Vec<(SiteId, u32)>> =
        std::collections::BTreeMap::new();
    for (site, prefixes) in rtt {
        let Some(site) = deployment.site_by_name(site) else {
            continue;
        };
        for (prefix, entry) in prefixes {
            if rtt_fresh(entry, now, max_age) {
                by_prefix
                    .entry(*prefix)
                    .or_default()
                    .push((site, entry.rtt_us));
            }
        }
    }
    ClassTable::with_rtt(base.clone(), deployment, by_prefix)
}

fn rtt_fresh(entry: &RttEntry, now: Timestamp, max_age: std::time::Duration) -> bool {
    now.0 < rtt_expiry(entry, max_age).0
}

fn rtt_expiry(entry: &RttEntry, max_age: std::time::Duration) -> Timestamp {
    Timestamp(entry.at.0.saturating_add(max_age.as_millis() as u64))
}

/// The next moment an RTT sample in use expires (the classes must be rebuilt then).
pub fn next_rtt_expiry(
    rtt: &RttTable,
    now: Timestamp,
    max_age: std::time::Duration,
) -> Option<Timestamp> {
    rtt.values()
        .flat_map(|prefixes| prefixes.values())
        .map(|entry| rtt_expiry(entry, max_age))
        .filter(|expiry| *expiry > now)
        .min()
}

/// The next moment a site's telemetry turns stale, or another site's cross-site probe of
/// a member (which keeps it answered while its own agent is silent) grows too old: when
/// answers must be rebuilt.
pub fn next_staleness_deadline(
    deployment: &Deployment,
    state: &State,
    now: Timestamp,
) -> Option<Timestamp> {
    let after = |t: Timestamp, service: &topology::Service| {
        Timestamp(t.0 + service.stale_after.as_millis() as u64 + 1)
    };
    let sites = deployment
        .services
        .iter()
        .filter(|s| s.check.is_some())
        .flat_map(|service| {
            state
                .sites
                .iter()
                .filter_map(move |site| site.last_report.map(|t| after(t, service)))
        });
    let vantage = deployment.members.iter().flat_map(|m| {
        let service = deployment.service(m.service);
        state
            .member(m.id)
            .vantage
            .iter()
            .map(move |v| after(v.at, service))
    });
    sites
        .chain(vantage)
        .filter(|deadline| *deadline > now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rtt_samples_steer_until_they_are_older_than_the_max_age() {
        let deployment = topology::Config::from_toml(topology::DEFAULT_CONFIG, 0)
            .expect("the default configuration")
            .deployment;
        let geo = GeoDb::test_database();
        let base = Arc::new(build_base_classes(&deployment, &geo).expect("classes"));
        let site = deployment.sites[1].name.clone();
        let prefix: ipnet::IpNet = "192.0.2.0/24".parse().unwrap();
        let entry = RttEntry {
            rtt_us: 500,
            samples: 10,
            at: Timestamp(10_000),
        };
        let rtt: RttTable = [(site, [(prefix, entry)].into_iter().collect())]
            .into_iter()
            .collect();
        let max_age = Duration::from_secs(60);
        let client = "192.0.2.7".parse().unwrap();

        let fresh = measured_classes(&base, &deployment, &rtt, Timestamp(69_999), max_age);
        let (class, scope) = fresh.lookup(client);
        assert_eq!(scope, 24);
        assert_eq!(
            fresh.class(class).latency.as_ref().map(|l| l[0]),
            Some(SiteId(1)),
            "the measured site first"
        );
        assert_eq!(
            next_rtt_expiry(&rtt, Timestamp(69_999), max_age),
            Some(Timestamp(70_000))
        );

        let expired = measured_classes(&base, &deployment, &rtt, Timestamp(70_000), max_age);
        let (class, _) = expired.lookup(client);
        assert_eq!(
            expired.class(class).latency,
            None,
            "back to the GeoIP order"
        );
        assert_eq!(expired.classes().len(), fresh.classes().len() - 1);
        assert_eq!(next_rtt_expiry(&rtt, Timestamp(70_000), max_age), None);
    }
}
