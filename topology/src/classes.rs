//! The client-class table: every address maps to the [`ClientClass`] that decides its
//! answers, with the prefix length of the deciding network. Built off the query path from
//! the GeoIP networks with the sites' `client_networks` painted over them.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::geo::{ClientLocation, GeoLocation};
use crate::model::{Deployment, SiteId};
use crate::prefix::{PrefixMap, PrefixMapBuilder};
use crate::select::{ClientClass, classify};

/// Index of a class in [`ClassTable::classes`].
pub type ClassId = u32;

/// Address to class, and the classes themselves (deduplicated).
#[derive(Debug, Clone)]
pub struct ClassTable {
    map: PrefixMap<ClassId>,
    classes: Vec<ClientClass>,
}

/// The class of unknown clients is always the first.
pub const UNKNOWN_CLASS: ClassId = 0;

/// Classes deduplicated as they are made.
struct Interner {
    classes: Vec<ClientClass>,
    ids: HashMap<ClientClass, ClassId>,
}

impl Interner {
    fn new() -> Interner {
        let unknown = ClientClass {
            order: None,
            latency: None,
        };
        Interner {
            ids: HashMap::from([(unknown.clone(), UNKNOWN_CLASS)]),
            classes: vec![unknown],
        }
    }

    fn intern(&mut self, class: ClientClass) -> ClassId {
        if let Some(id) = self.ids.get(&class) {
            return *id;
        }
        self.classes.push(class.clone());
        let id = (self.classes.len() - 1) as ClassId;
        self.ids.insert(class, id);
        id
    }
}

impl ClassTable {
    /// Builds the table from GeoIP networks (as the database lists them) and the sites'
    /// client networks, which beat GeoIP wherever they apply (longest site network wins among
    /// themselves).
    pub fn build(
        deployment: &Deployment,
        geo_networks: impl IntoIterator<Item = (IpNet, GeoLocation)>,
    ) -> ClassTable {
        Self::build_with_rtt(deployment, geo_networks, std::iter::empty())
    }

    /// [`ClassTable::build`], plus client prefixes with RTT samples: each becomes its own
    /// class whose `latency` order puts the sites by measured RTT first (lowest first), then
    /// the rest in the prefix's location order.
    pub fn build_with_rtt(
        deployment: &Deployment,
        geo_networks: impl IntoIterator<Item = (IpNet, GeoLocation)>,
        rtt: impl IntoIterator<Item = (IpNet, Vec<(SiteId, u32)>)>,
    ) -> ClassTable {
        let mut interner = Interner::new();
        let mut builder = PrefixMapBuilder::default();
        for (net, location) in geo_networks {
            let class = classify(deployment, &ClientLocation::Geoip { location });
            builder.paint(net, interner.intern(class));
        }
        let mut site_networks: Vec<(IpNet, SiteId)> = deployment
            .site_ids()
            .flat_map(|site| {
                deployment
                    .site(site)
                    .client_networks
                    .iter()
                    .map(move |net| (*net, site))
            })
            .collect();
        site_networks.sort_by_key(|(net, _)| net.prefix_len());
        for (net, site) in site_networks {
            let class = classify(deployment, &ClientLocation::SiteNetwork { site });
            builder.paint(net, interner.intern(class));
        }
        let mut measured: Vec<(IpNet, Vec<(SiteId, u32)>)> = rtt.into_iter().collect();
        if !measured.is_empty() {
            measured.sort_by_key(|(prefix, _)| prefix.prefix_len());
            let base = builder.clone().build();
            for (prefix, mut samples) in measured {
                let prefix = prefix.trunc();
                let (base_class, _) = base.lookup(prefix.addr());
                let order = interner.classes[base_class.unwrap_or(UNKNOWN_CLASS) as usize]
                    .order
                    .clone();
                samples.sort_by_key(|(site, rtt)| (*rtt, *site));
                let mut latency: Vec<SiteId> = Vec::new();
                for (site, _) in samples {
                    if !latency.contains(&site) {
                        latency.push(site);
                    }
                }
                let rest = order
                    .clone()
                    .unwrap_or_else(|| deployment.site_ids().collect());
                latency.extend(
                    rest.into_iter()
                        .filter(|s| !latency.contains(s))
                        .collect::<Vec<_>>(),
                );
                let class = ClientClass {
                    order,
                    latency: Some(latency),
                };
                builder.paint(prefix, interner.intern(class));
            }
        }
        ClassTable {
            map: builder.build(),
            classes: interner.classes,
        }
    }

    /// The class of `ip` and the prefix length of the network that decided it.
    pub fn lookup(&self, ip: IpAddr) -> (ClassId, u8) {
        let (class, scope) = self.map.lookup(ip);
        (class.unwrap_or(UNKNOWN_CLASS), scope)
    }

    pub fn classes(&self) -> &[ClientClass] {
        &self.classes
    }

    pub fn class(&self, id: ClassId) -> &ClientClass {
        &self.classes[id as usize]
    }

    /// Number of prefix blocks in the table.
    pub fn blocks(&self) -> usize {
        self.map.len()
    }
}

/// The longest site client network holding `ip`, if any (for explanations; the hot path uses
/// the [`ClassTable`]).
pub fn site_network_of(deployment: &Deployment, ip: IpAddr) -> Option<(SiteId, IpNet)> {
    deployment
        .site_ids()
        .flat_map(|site| {
            deployment
                .site(site)
                .client_networks
                .iter()
                .filter(move |net| net.contains(&ip))
                .map(move |net| (site, *net))
        })
        .max_by_key(|(_, net)| net.prefix_len())
}
