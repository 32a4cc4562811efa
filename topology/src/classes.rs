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

impl ClassTable {
    /// Builds the table from GeoIP networks (as the database lists them) and the sites'
    /// client networks, which beat GeoIP wherever they apply (longest site network wins among
    /// themselves).
    pub fn build(
        deployment: &Deployment,
        geo_networks: impl IntoIterator<Item = (IpNet, GeoLocation)>,
    ) -> ClassTable {
        let mut classes = vec![ClientClass { order: None }];
        let mut ids: HashMap<ClientClass, ClassId> = HashMap::new();
        ids.insert(classes[0].clone(), UNKNOWN_CLASS);
        let mut intern = |class: ClientClass| -> ClassId {
            *ids.entry(class.clone()).or_insert_with(|| {
                classes.push(class);
                (classes.len() - 1) as ClassId
            })
        };
        let mut builder = PrefixMapBuilder::default();
        for (net, location) in geo_networks {
            let class = classify(deployment, &ClientLocation::Geoip { location });
            builder.paint(net, intern(class));
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
            builder.paint(net, intern(class));
        }
        ClassTable {
            map: builder.build(),
            classes,
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
