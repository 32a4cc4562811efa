//! What a new deployment changes: the names added, removed and changed, and for each
//! service and client region whether its answer would move. `portico config diff` and
//! `apply --dry-run` show this before anything is replicated.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::geo::ClientLocation;
use crate::model::{Deployment, Member, Service};
use crate::select::{Family, classify, select};
use crate::state::{State, Timestamp};
use crate::wire::config::{AnswerChange, DeploymentDiff, RegionAnswer};

/// Names added, removed and changed from `old` to `new`.
pub fn diff(old: &Deployment, new: &Deployment) -> DeploymentDiff {
    let mut out = DeploymentDiff::default();
    // The serial follows every change by itself (unless set): not a change of its own.
    let soa = |d: &Deployment| crate::model::Soa {
        serial: 0,
        ..d.zone.soa.clone()
    };
    let zone_changed = old.zone.origin != new.zone.origin
        || old.zone.ns != new.zone.ns
        || old.zone.ns_ttl != new.zone.ns_ttl
        || soa(old) != soa(new);
    if zone_changed {
        out.changed.push("zone".into());
    }
    compare(&mut out, records(old), records(new), |name| {
        format!("record {name}")
    });
    compare(
        &mut out,
        old.sites
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect(),
        new.sites
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect(),
        |name| format!("site {name}"),
    );
    compare(&mut out, services(old), services(new), |name| {
        format!("service {name}")
    });
    compare(&mut out, members(old), members(new), |name| {
        format!("member {name}")
    });
    out
}

fn compare<T: PartialEq>(
    out: &mut DeploymentDiff,
    old: BTreeMap<String, T>,
    new: BTreeMap<String, T>,
    label: impl Fn(&str) -> String,
) {
    for (name, value) in &new {
        match old.get(name) {
            None => out.added.push(label(name)),
            Some(before) if before != value => out.changed.push(label(name)),
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|name| !new.contains_key(*name)) {
        out.removed.push(label(name));
    }
}

/// Static record sets by `owner TYPE`.
fn records(deployment: &Deployment) -> BTreeMap<String, Vec<String>> {
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &deployment.zone.records {
        sets.entry(format!("{} {}", record.owner, record.data.type_name()))
            .or_default()
            .push(format!("{} {:?}", record.ttl, record.data));
    }
    for set in sets.values_mut() {
        set.sort();
    }
    sets
}

/// A service without its member ids, with site ids as names (ids are not comparable
/// across deployments).
#[derive(PartialEq)]
struct ComparableService {
    service: Service,
    failover_order: Vec<String>,
    unknown_client_order: Vec<String>,
}

fn services(deployment: &Deployment) -> BTreeMap<String, ComparableService> {
    let names = |ids: &[crate::model::SiteId]| -> Vec<String> {
        ids.iter()
            .map(|id| deployment.site(*id).name.clone())
            .collect()
    };
    deployment
        .services
        .iter()
        .map(|service| {
            let comparable = ComparableService {
                failover_order: names(&service.failover_order),
                unknown_client_order: names(&service.unknown_client_order),
                service: Service {
                    members: Vec::new(),
                    failover_order: Vec::new(),
                    unknown_client_order: Vec::new(),
                    ..service.clone()
                },
            };
            (service.name.clone(), comparable)
        })
        .collect()
}

/// Members by `service/node`, with their site as a name.
fn members(deployment: &Deployment) -> BTreeMap<String, (String, Member)> {
    deployment
        .members
        .iter()
        .map(|member| {
            let key = format!(
                "{}/{}",
                deployment.service(member.service).name,
                member.node
            );
            let site = deployment.site(member.site).name.clone();
            let comparable = Member {
                id: crate::model::MemberId(0),
                service: crate::model::ServiceId(0),
                site: crate::model::SiteId(0),
                ..member.clone()
            };
            (key, (site, comparable))
        })
        .collect()
}

/// A client region: the first network of each site's `client_networks` (on either side),
/// and one client of unknown location.
fn regions(old: &Deployment, new: &Deployment) -> Vec<(String, IpAddr)> {
    let mut regions: Vec<(String, IpAddr)> = Vec::new();
    for site in old.sites.iter().chain(&new.sites) {
        if let Some(net) = site.client_networks.first() {
            let region = format!("clients of {} ({net})", site.name);
            if !regions.iter().any(|(r, _)| *r == region) {
                regions.push((region, net.network()));
            }
        }
    }
    regions
}

/// For every service (on either side) and client region, the first answer before and
/// after. `locate` places an address for a deployment (its site networks, then GeoIP), as
/// the DNS front would.
pub fn answer_changes(
    (old, old_state): (&Deployment, &State),
    (new, new_state): (&Deployment, &State),
    locate: impl Fn(&Deployment, IpAddr) -> ClientLocation,
    now: Timestamp,
) -> Vec<AnswerChange> {
    let answer = |deployment: &Deployment, state: &State, service: &str, client: IpAddr| {
        let id = deployment.service_by_name(service)?;
        let family = Family::of(&client);
        let class = classify(deployment, &locate(deployment, client));
        let selection = select(deployment, state, id, family, &class, now);
        let variant = selection.variants.first();
        let mut addresses = selection.first_addresses(deployment, state);
        addresses.sort();
        Some(RegionAnswer {
            site: variant
                .and_then(|v| v.site)
                .map(|s| deployment.site(s).name.clone()),
            addresses,
        })
    };
    let mut names: Vec<&str> = old.services.iter().map(|s| s.name.as_str()).collect();
    for service in &new.services {
        if !names.contains(&service.name.as_str()) {
            names.push(&service.name);
        }
    }
    let mut regions = regions(old, new);
    regions.push((
        "clients of unknown location".into(),
        IpAddr::from([0, 0, 0, 0]),
    ));
    let mut out = Vec::new();
    for service in names {
        for (region, client) in &regions {
            let before = answer(old, old_state, service, *client);
            let after = answer(new, new_state, service, *client);
            out.push(AnswerChange {
                service: service.to_owned(),
                region: region.clone(),
                client: *client,
                changed: before != after,
                before,
                after,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn with(source: &str) -> Deployment {
        Config::from_toml(source, 1).unwrap().deployment
    }

    #[test]
    fn names_what_was_added_removed_and_changed() {
        let base = crate::DEFAULT_CONFIG;
        let old = with(base);
        assert!(diff(&old, &old).is_empty());
        let new_source = base
            .replace(
                "\"static 300 IN A 127.0.0.53\",",
                "\"static 300 IN A 127.0.0.54\",",
            )
            .replace("ttl = 1\n", "ttl = 0\n")
            .replace(
                "{ site = \"sin\", node = \"sin-2\", address = \"127.0.30.2\" },",
                "{ site = \"lon\", node = \"lon-1\", address = \"127.0.40.1\" },",
            )
            + "\n[[site]]\nname = \"lon\"\nlocation = { lat = 51.5, lon = -0.12 }\nclient_networks = [\"127.4.0.0/16\"]\n";
        let new = with(&new_source);
        let d = diff(&old, &new);
        assert_eq!(d.added, ["site lon", "member s3/lon-1"]);
        assert_eq!(d.removed, ["member s3/sin-2"]);
        assert_eq!(
            d.changed,
            ["record static.storage.example. A", "service s3"]
        );
        assert_eq!(d.summary(), "2 added, 1 removed, 2 changed");
    }

    #[test]
    fn tells_which_regions_get_another_answer() {
        let old = with(crate::DEFAULT_CONFIG);
        let new = with(&format!(
            "{}\n[[site]]\nname = \"lon\"\nlocation = {{ lat = 51.5, lon = -0.12 }}\nclient_networks = [\"127.4.0.0/16\"]\n",
            crate::DEFAULT_CONFIG.replace(
                "{ site = \"sin\", node = \"sin-2\", address = \"127.0.30.2\" },",
                "{ site = \"sin\", node = \"sin-2\", address = \"127.0.30.2\" },\n    { site = \"lon\", node = \"lon-1\", address = \"127.0.40.1\" },",
            )
        ));
        let locate = |d: &Deployment, ip: IpAddr| match crate::classes::site_network_of(d, ip) {
            Some((site, _)) => ClientLocation::SiteNetwork { site },
            None => ClientLocation::Unknown,
        };
        let changes = answer_changes(
            (&old, &State::initial(&old)),
            (&new, &State::initial(&new)),
            locate,
            Timestamp(0),
        );
        let lon = changes
            .iter()
            .find(|c| c.region.starts_with("clients of lon"))
            .unwrap();
        assert!(lon.changed, "{lon:?}");
        assert_eq!(lon.after.as_ref().unwrap().site.as_deref(), Some("lon"));
        assert_eq!(
            lon.after.as_ref().unwrap().addresses,
            ["127.0.40.1".parse::<IpAddr>().unwrap()]
        );
        let fra = changes
            .iter()
            .find(|c| c.region.starts_with("clients of fra"))
            .unwrap();
        assert!(!fra.changed, "{fra:?}");
        assert_eq!(fra.before, fra.after);
    }
}
