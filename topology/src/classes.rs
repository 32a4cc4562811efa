//! The client-class table: every address maps to the [`ClientClass`] that decides its
//! answers, with the prefix length of the deciding network. Built off the query path from
//! the GeoIP networks with the sites' `client_networks` painted over them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::geo::{ClientLocation, GeoLocation};
use crate::model::{Deployment, SiteId};
use crate::prefix::{PrefixMap, PrefixMapBuilder};
use crate::select::{ClientClass, classify};

/// Index of a class in [`ClassTable::classes`].
pub type ClassId = u32;

/// Address to class, and the classes themselves (deduplicated): the [`BaseClasses`] of a
/// deployment and a GeoIP database, with the client prefixes that have RTT samples laid
/// over them.
#[derive(Debug, Clone)]
pub struct ClassTable {
    base: Arc<BaseClasses>,
    /// Prefixes with RTT samples; `None` when there are none. Its gaps are maximal blocks
    /// free of measured prefixes, so their length bounds the scope of a base answer.
    measured: Option<PrefixMap<ClassId>>,
    /// The base classes, then the measured ones.
    classes: Vec<ClientClass>,
}

/// The class of unknown clients is always the first.
pub const UNKNOWN_CLASS: ClassId = 0;

/// The client classes of GeoIP networks and site client networks: built once per deployment
/// and database (the expensive part: a City database has millions of networks), shared by
/// every [`ClassTable`] made from new RTT samples.
#[derive(Debug)]
pub struct BaseClasses {
    map: PrefixMap<ClassId>,
    interner: Interner,
}

/// Classes deduplicated as they are made.
#[derive(Debug, Clone)]
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

/// Builds [`BaseClasses`] from a database's networks, in the database's order.
#[derive(Debug)]
pub struct BaseClassesBuilder<'a> {
    deployment: &'a Deployment,
    interner: Interner,
    builder: PrefixMapBuilder<ClassId>,
    /// The class of each database record seen: networks sharing a record are classified
    /// once.
    by_record: HashMap<usize, ClassId>,
}

impl<'a> BaseClassesBuilder<'a> {
    pub fn new(deployment: &'a Deployment) -> BaseClassesBuilder<'a> {
        BaseClassesBuilder {
            deployment,
            interner: Interner::new(),
            builder: PrefixMapBuilder::default(),
            by_record: HashMap::new(),
        }
    }

    /// Adds a network whose record is `record` (networks with the same record share a
    /// location); `locate` is called only for a record not seen before.
    pub fn add<E>(
        &mut self,
        net: IpNet,
        record: usize,
        locate: impl FnOnce() -> Result<GeoLocation, E>,
    ) -> Result<(), E> {
        let class = match self.by_record.get(&record) {
            Some(class) => *class,
            None => {
                let location = locate()?;
                let class = self.interner.intern(classify(
                    self.deployment,
                    &ClientLocation::Geoip { location },
                ));
                self.by_record.insert(record, class);
                class
            }
        };
        self.builder.push(net, class);
        Ok(())
    }

    /// Adds a network with its location (each one classified).
    pub fn add_location(&mut self, net: IpNet, location: GeoLocation) {
        let class = classify(self.deployment, &ClientLocation::Geoip { location });
        let class = self.interner.intern(class);
        self.builder.push(net, class);
    }

    /// Paints the sites' client networks over the GeoIP networks (they beat GeoIP wherever
    /// they apply; the longest site network wins among themselves).
    pub fn finish(mut self) -> BaseClasses {
        let deployment = self.deployment;
        let mut site_networks: Vec<(IpNet, SiteId)> = site_networks(deployment).collect();
        site_networks.sort_by_key(|(net, _)| net.prefix_len());
        for (net, site) in site_networks {
            let class = classify(deployment, &ClientLocation::SiteNetwork { site });
            let class = self.interner.intern(class);
            self.builder.paint(net, class);
        }
        BaseClasses {
            map: self.builder.build(),
            interner: self.interner,
        }
    }
}

impl BaseClasses {
    /// Number of prefix blocks.
    pub fn blocks(&self) -> usize {
        self.map.len()
    }

    /// Octets the address-to-class blocks hold.
    pub fn size(&self) -> usize {
        self.map.size()
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

    /// [`ClassTable::build`], plus client prefixes with RTT samples (see
    /// [`ClassTable::with_rtt`]).
    pub fn build_with_rtt(
        deployment: &Deployment,
        geo_networks: impl IntoIterator<Item = (IpNet, GeoLocation)>,
        rtt: impl IntoIterator<Item = (IpNet, Vec<(SiteId, u32)>)>,
    ) -> ClassTable {
        let mut builder = BaseClassesBuilder::new(deployment);
        for (net, location) in geo_networks {
            builder.add_location(net, location);
        }
        Self::with_rtt(Arc::new(builder.finish()), deployment, rtt)
    }

    /// `base` with client prefixes that have RTT samples laid over it: each becomes its own
    /// class whose `latency` order puts the sites by measured RTT first (lowest first), then
    /// the rest in the prefix's location order. Costs what the samples are, not what the
    /// database is: the base is shared.
    pub fn with_rtt(
        base: Arc<BaseClasses>,
        deployment: &Deployment,
        rtt: impl IntoIterator<Item = (IpNet, Vec<(SiteId, u32)>)>,
    ) -> ClassTable {
        let mut measured: Vec<(IpNet, Vec<(SiteId, u32)>)> = rtt.into_iter().collect();
        if measured.is_empty() {
            return ClassTable {
                classes: base.interner.classes.clone(),
                base,
                measured: None,
            };
        }
        let mut interner = base.interner.clone();
        let mut builder = PrefixMapBuilder::default();
        measured.sort_by_key(|(prefix, _)| prefix.prefix_len());
        for (prefix, mut samples) in measured {
            let prefix = prefix.trunc();
            let (base_class, _) = base.map.lookup(prefix.addr());
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
        ClassTable {
            base,
            measured: Some(builder.build()),
            classes: interner.classes,
        }
    }

    /// The class of `ip` and the prefix length of the network that decided it.
    pub fn lookup(&self, ip: IpAddr) -> (ClassId, u8) {
        let (class, scope) = self.base.map.lookup(ip);
        match &self.measured {
            None => (class.unwrap_or(UNKNOWN_CLASS), scope),
            Some(measured) => match measured.lookup(ip) {
                (Some(class), scope) => (class, scope),
                // The answer holds within the base block and within the gap between
                // measured prefixes: the longer of the two.
                (None, gap) => (class.unwrap_or(UNKNOWN_CLASS), scope.max(gap)),
            },
        }
    }

    pub fn classes(&self) -> &[ClientClass] {
        &self.classes
    }

    pub fn class(&self, id: ClassId) -> &ClientClass {
        &self.classes[id as usize]
    }

    /// The classes of GeoIP and site networks this table lays RTT samples over.
    pub fn base(&self) -> &Arc<BaseClasses> {
        &self.base
    }

    /// Number of prefix blocks in the table.
    pub fn blocks(&self) -> usize {
        self.base.blocks() + self.measured.as_ref().map_or(0, |m| m.len())
    }
}

/// The longest site client network holding `ip`, if any (for explanations; the hot path uses
/// the [`ClassTable`]).
pub fn site_network_of(deployment: &Deployment, ip: IpAddr) -> Option<(SiteId, IpNet)> {
    site_networks(deployment)
        .filter(|(net, _)| net.contains(&ip))
        .map(|(net, site)| (site, net))
        .max_by_key(|(_, net)| net.prefix_len())
}

/// Every site's client networks, with the site.
fn site_networks(deployment: &Deployment) -> impl Iterator<Item = (IpNet, SiteId)> + '_ {
    deployment.site_ids().flat_map(move |site| {
        deployment
            .site(site)
            .client_networks
            .iter()
            .map(move |net| (*net, site))
    })
}
