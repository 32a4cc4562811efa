//! Raw TOML values to checked types. Every rejection carries the key path it is about.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::checked::{ComponentSections, Config, SiteAgentSettings};
use super::fields::{Invalid, api_tls, duration, invalid, socket_addr};
use super::locate::KeyPath;
use super::proxy::ProxySettings;
use super::raw::*;
use crate::model::*;
use crate::name::DomainName;
use crate::records::{RecordData, StaticRecord, parse_record, rtype};

type Result<T> = std::result::Result<T, Invalid>;

pub(super) fn validate(raw: RawConfig, now_unix: u64) -> Result<Config> {
    let deployment = deployment(&raw.zone, &raw.sites, &raw.services, now_unix)?;
    let site_names: HashSet<&str> = raw.sites.iter().map(|s| s.name.as_str()).collect();
    let node = NodeSettings {
        dns: dns(&raw.dns)?,
        admin: admin(&raw.admin)?,
        store: store(&raw.store, &site_names)?,
        geoip: GeoipSettings {
            database: raw.geoip.database.clone(),
            reload_interval: duration(
                KeyPath::from("geoip.reload_interval"),
                raw.geoip.reload_interval.as_deref(),
                Duration::from_secs(30),
            )?,
        },
    };
    let components = components(&raw, &site_names)?;
    Ok(Config {
        deployment,
        node,
        components,
        document: String::new(),
    })
}

/// The replicated part: zone, sites, services and their members.
pub(super) fn deployment(
    zone: &RawZone,
    sites: &[RawSite],
    services: &[RawService],
    now_unix: u64,
) -> Result<Deployment> {
    let zone = self::zone(zone, now_unix)?;
    let raw_sites = sites;
    let sites = self::sites(raw_sites)?;
    let site_ids: HashMap<&str, SiteId> = raw_sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), SiteId(i as u16)))
        .collect();
    let raw_services = services;
    let mut services = Vec::new();
    let mut members = Vec::new();
    for (index, service) in raw_services.iter().enumerate() {
        let key = KeyPath::from("service").index(index);
        let id = ServiceId(index as u16);
        services.push(service_of(
            service,
            &key,
            id,
            &zone,
            &site_ids,
            &mut members,
        )?);
    }
    let mut names = HashSet::new();
    for (index, service) in services.iter().enumerate() {
        if !names.insert(service.fqdn.clone()) {
            return Err(invalid(
                KeyPath::from("service").index(index).key("name"),
                format!("service {} is defined twice", service.fqdn),
            ));
        }
        if let Some(pos) = zone.records.iter().position(|r| r.owner == service.fqdn) {
            return Err(invalid(
                KeyPath::from("zone.records").index(pos),
                format!(
                    "static record at {} clashes with the service of that name",
                    service.fqdn
                ),
            ));
        }
    }
    Ok(Deployment {
        zone,
        sites,
        services,
        members,
    })
}

fn name(key: KeyPath, text: &str, origin: Option<&DomainName>) -> Result<DomainName> {
    DomainName::parse(text, origin).map_err(|e| invalid(key, e.to_string()))
}

fn zone(raw: &RawZone, now_unix: u64) -> Result<Zone> {
    let origin = name(KeyPath::from("zone.origin"), &raw.origin, None)?;
    if raw.ns.is_empty() {
        return Err(invalid(
            KeyPath::from("zone.ns"),
            "at least one name server is needed",
        ));
    }
    let ns = raw
        .ns
        .iter()
        .enumerate()
        .map(|(i, text)| name(KeyPath::from("zone.ns").index(i), text, Some(&origin)))
        .collect::<Result<Vec<_>>>()?;
    let soa_key = KeyPath::from("zone.soa");
    let soa = Soa {
        mname: match &raw.soa.mname {
            Some(text) => name(soa_key.key("mname"), text, Some(&origin))?,
            None => ns[0].clone(),
        },
        rname: name(soa_key.key("rname"), &raw.soa.rname, Some(&origin))?,
        serial: raw.soa.serial.unwrap_or(now_unix as u32),
        refresh: raw.soa.refresh,
        retry: raw.soa.retry,
        expire: raw.soa.expire,
        minimum: raw.soa.minimum,
        ttl: raw.soa.ttl,
    };
    let mut records = Vec::new();
    for (i, line) in raw.records.iter().enumerate() {
        let key = KeyPath::from("zone.records").index(i);
        let record = parse_record(line, &origin, raw.default_ttl)
            .map_err(|e| invalid(key.clone(), format!("{line:?}: {e}")))?;
        if !record.owner.is_within(&origin) {
            return Err(invalid(
                key,
                format!("{} is outside the zone {origin}", record.owner),
            ));
        }
        if record.owner == origin && matches!(record.data, RecordData::Cname { .. }) {
            return Err(invalid(key, "a CNAME cannot be at the zone apex"));
        }
        records.push(record);
    }
    check_cname_exclusive(&records)?;
    Ok(Zone {
        origin,
        ns,
        ns_ttl: raw.ns_ttl,
        soa,
        records,
    })
}

fn check_cname_exclusive(records: &[StaticRecord]) -> Result<()> {
    for (i, record) in records.iter().enumerate() {
        if record.data.rtype() != rtype::CNAME {
            continue;
        }
        if let Some(other) = records
            .iter()
            .enumerate()
            .find(|(j, r)| *j != i && r.owner == record.owner)
        {
            return Err(invalid(
                KeyPath::from("zone.records").index(other.0.max(i)),
                format!(
                    "{} has a CNAME and other data (RFC 1034 section 3.6.2)",
                    record.owner
                ),
            ));
        }
    }
    Ok(())
}

fn sites(raw: &[RawSite]) -> Result<Vec<Site>> {
    let mut seen = HashSet::new();
    let mut sites = Vec::new();
    for (i, site) in raw.iter().enumerate() {
        let key = KeyPath::from("site").index(i);
        if site.name.is_empty()
            || !site
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                key.key("name"),
                format!(
                    "{:?}: site names are letters, digits, '-' and '_'",
                    site.name
                ),
            ));
        }
        if !seen.insert(site.name.as_str()) {
            return Err(invalid(
                key.key("name"),
                format!("site {:?} is defined twice", site.name),
            ));
        }
        let location = match &site.location {
            None => None,
            Some(l) if (-90.0..=90.0).contains(&l.lat) && (-180.0..=180.0).contains(&l.lon) => {
                Some(Coordinates {
                    lat: l.lat,
                    lon: l.lon,
                })
            }
            Some(_) => {
                return Err(invalid(
                    key.key("location"),
                    "lat must be within -90..=90 and lon within -180..=180",
                ));
            }
        };
        let client_networks = site
            .client_networks
            .iter()
            .enumerate()
            .map(|(j, text)| {
                let net: IpNet = text.parse().map_err(|_| {
                    invalid(
                        key.key("client_networks").index(j),
                        format!("{text:?} is not a network (like 192.0.2.0/24)"),
                    )
                })?;
                Ok(net.trunc())
            })
            .collect::<Result<Vec<_>>>()?;
        sites.push(Site {
            name: site.name.clone(),
            location,
            client_networks,
        });
    }
    if sites.is_empty() {
        return Err(invalid(
            KeyPath::from("site"),
            "at least one [[site]] is needed",
        ));
    }
    // One network claimed by two sites would make the answer depend on table order.
    let mut owners: HashMap<IpNet, &str> = HashMap::new();
    for (i, site) in sites.iter().enumerate() {
        for (j, net) in site.client_networks.iter().enumerate() {
            if let Some(other) = owners.insert(*net, &site.name) {
                return Err(invalid(
                    KeyPath::from("site")
                        .index(i)
                        .key("client_networks")
                        .index(j),
                    format!("{net} is already a client network of site {other:?}"),
                ));
            }
        }
    }
    Ok(sites)
}

fn site_list(
    key: KeyPath,
    names: &[String],
    site_ids: &HashMap<&str, SiteId>,
) -> Result<Vec<SiteId>> {
    let mut order = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let id = *site_ids
            .get(name.as_str())
            .ok_or_else(|| invalid(key.index(i), format!("no site named {name:?}")))?;
        if order.contains(&id) {
            return Err(invalid(
                key.index(i),
                format!("site {name:?} is listed twice"),
            ));
        }
        order.push(id);
    }
    Ok(order)
}

fn service_of(
    raw: &RawService,
    key: &KeyPath,
    id: ServiceId,
    zone: &Zone,
    site_ids: &HashMap<&str, SiteId>,
    members: &mut Vec<Member>,
) -> Result<Service> {
    let fqdn = name(key.key("name"), &raw.name, Some(&zone.origin))?;
    if !fqdn.is_within(&zone.origin) || fqdn == zone.origin {
        return Err(invalid(
            key.key("name"),
            format!("{fqdn} must be a name below the zone {}", zone.origin),
        ));
    }
    let policy = Policy::parse(&raw.policy).ok_or_else(|| {
        invalid(
            key.key("policy"),
            format!(
                "{:?} is not one of {}",
                raw.policy,
                Policy::NAMES.join(", ")
            ),
        )
    })?;
    let when_all_down = match raw.when_all_down.as_str() {
        "answer-all" => WhenAllDown::AnswerAll,
        "nodata" => WhenAllDown::Nodata,
        other => {
            return Err(invalid(
                key.key("when_all_down"),
                format!("{other:?} is not answer-all or nodata"),
            ));
        }
    };
    if raw.max_answers == 0 || raw.max_answers > 64 {
        return Err(invalid(key.key("max_answers"), "must be within 1..=64"));
    }
    if raw.min_healthy == 0 {
        return Err(invalid(key.key("min_healthy"), "must be at least 1"));
    }
    let failover_order = site_list(key.key("failover_order"), &raw.failover_order, site_ids)?;
    if policy == Policy::Failover && failover_order.is_empty() {
        return Err(invalid(
            key.key("failover_order"),
            "policy \"failover\" needs failover_order, the sites in priority order",
        ));
    }
    let unknown_client_order = site_list(
        key.key("unknown_client_order"),
        &raw.unknown_client_order,
        site_ids,
    )?;
    let check = raw
        .check
        .as_ref()
        .map(|c| check(key.key("check"), c))
        .transpose()?;
    let default_stale = check.as_ref().map_or(Duration::from_secs(3), |c| {
        (c.interval * 4).max(Duration::from_secs(2))
    });
    let stale_after = duration(
        key.key("stale_after"),
        raw.stale_after.as_deref(),
        default_stale,
    )?;
    if raw.members.is_empty() {
        return Err(invalid(
            key.key("members"),
            "a service needs at least one member",
        ));
    }
    let mut own = Vec::new();
    let mut nodes = HashSet::new();
    for (i, m) in raw.members.iter().enumerate() {
        let mkey = key.key("members").index(i);
        let site = *site_ids
            .get(m.site.as_str())
            .ok_or_else(|| invalid(mkey.key("site"), format!("no site named {:?}", m.site)))?;
        // A member is one address, or a group of `slots` whose addresses the site agent
        // discovers by resolving a name.
        let (addresses, discover): (Vec<(String, IpAddr)>, Option<DomainName>) =
            match (&m.address, &m.discover) {
                (Some(text), None) => {
                    let address: IpAddr = text.parse().map_err(|_| {
                        invalid(
                            mkey.key("address"),
                            format!("{text:?} is not an IP address"),
                        )
                    })?;
                    (
                        vec![(
                            m.node.clone().unwrap_or_else(|| address.to_string()),
                            address,
                        )],
                        None,
                    )
                }
                (None, Some(text)) => {
                    let name = DomainName::parse(text, None).map_err(|e| {
                        invalid(
                            mkey.key("discover"),
                            format!("{text:?}: {e} (write the name absolute, with the final dot)"),
                        )
                    })?;
                    let slots = m.slots.unwrap_or(4);
                    if !(1..=64).contains(&slots) {
                        return Err(invalid(mkey.key("slots"), "must be within 1..=64"));
                    }
                    let group = m
                        .node
                        .clone()
                        .unwrap_or_else(|| name.as_str().trim_end_matches('.').to_owned());
                    let placeholder = IpAddr::from([0, 0, 0, 0]);
                    (
                        (0..slots)
                            .map(|i| (format!("{group}-{i}"), placeholder))
                            .collect(),
                        Some(name),
                    )
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        mkey.key("discover"),
                        "a member has an address or a name to discover, not both",
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        mkey.key("address"),
                        "missing: give an address, or a name to discover",
                    ));
                }
            };
        let weight = m.weight.unwrap_or(100);
        if !(1..=1000).contains(&weight) {
            return Err(invalid(mkey.key("weight"), "must be within 1..=1000"));
        }
        for (node, address) in addresses {
            if node.is_empty() || node.contains('/') || node.chars().any(char::is_whitespace) {
                return Err(invalid(
                    mkey.key("node"),
                    "node names have no '/' or spaces",
                ));
            }
            if !nodes.insert(node.clone()) {
                return Err(invalid(
                    mkey.key("node"),
                    format!("node {node:?} appears twice in this service"),
                ));
            }
            let member = MemberId(members.len() as u32);
            members.push(Member {
                id: member,
                service: id,
                site,
                node,
                address,
                discover: discover.clone(),
                weight,
                port: m.port,
                agent_port: m.agent_port,
            });
            own.push(member);
        }
    }
    Ok(Service {
        name: raw.name.trim_end_matches('.').to_owned(),
        fqdn,
        policy,
        ttl: raw.ttl,
        max_answers: raw.max_answers,
        min_healthy: raw.min_healthy,
        when_all_down,
        spill: raw.spill,
        failover_order,
        unknown_client_order,
        stale_after,
        check,
        members: own,
    })
}

fn check(key: KeyPath, raw: &RawCheck) -> Result<Check> {
    let kind = match raw.kind.as_str() {
        "s3" => CheckKind::S3,
        "nfs" => CheckKind::Nfs,
        "smb" => CheckKind::Smb,
        "tcp" => CheckKind::Tcp,
        "http" => CheckKind::Http,
        other => {
            return Err(invalid(
                key.key("kind"),
                format!("{other:?} is not one of s3, nfs, smb, tcp, http"),
            ));
        }
    };
    let interval = duration(
        key.key("interval"),
        raw.interval.as_deref(),
        Duration::from_millis(500),
    )?;
    let timeout = duration(
        key.key("timeout"),
        raw.timeout.as_deref(),
        Duration::from_millis(400),
    )?;
    if interval.is_zero() {
        return Err(invalid(key.key("interval"), "must be more than 0"));
    }
    if timeout.is_zero() || timeout > interval * 10 {
        return Err(invalid(
            key.key("timeout"),
            "must be more than 0 and at most 10 intervals",
        ));
    }
    let rise = raw.rise.unwrap_or(2);
    let fall = raw.fall.unwrap_or(2);
    if rise == 0 {
        return Err(invalid(key.key("rise"), "must be at least 1"));
    }
    if fall == 0 {
        return Err(invalid(key.key("fall"), "must be at least 1"));
    }
    let fall_hard = raw.fall_hard.unwrap_or(1);
    if fall_hard == 0 || fall_hard > fall {
        return Err(invalid(
            key.key("fall_hard"),
            format!("must be within 1..={fall} (fall)"),
        ));
    }
    let fast_interval = duration(
        key.key("fast_interval"),
        raw.fast_interval.as_deref(),
        Duration::from_millis(100).min(interval),
    )?;
    if fast_interval.is_zero() || fast_interval > interval {
        return Err(invalid(
            key.key("fast_interval"),
            "must be more than 0 and at most interval",
        ));
    }
    Ok(Check {
        kind,
        interval,
        timeout,
        rise,
        fall,
        fall_hard,
        fast_interval,
        // Off by default for SMB: Samba forks a server process per connection.
        watch: raw.watch.unwrap_or(kind != CheckKind::Smb),
        port: raw.port,
        path: raw.path.clone(),
        bucket: raw.bucket.clone(),
        region: raw.region.clone().unwrap_or_else(|| "us-east-1".into()),
        body: raw.body.clone(),
        version: match raw.version {
            None => 3,
            Some(v @ (3 | 4)) => v,
            Some(_) => return Err(invalid(key.key("version"), "NFS version must be 3 or 4")),
        },
        deep: raw.deep,
        mount_port: raw.mount_port,
        virtual_host: raw.virtual_host.clone(),
        tls: raw.tls,
        ca_file: raw.ca_file.clone(),
        server_name: raw.server_name.clone(),
    })
}

fn dns(raw: &RawDns) -> Result<DnsSettings> {
    let listen = match &raw.listen {
        None => vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, text)| socket_addr(KeyPath::from("dns.listen").index(i), text))
            .collect::<Result<Vec<_>>>()?,
    };
    if listen.is_empty() {
        return Err(invalid(
            KeyPath::from("dns.listen"),
            "needs at least one address",
        ));
    }
    let max_udp_payload = raw.max_udp_payload.unwrap_or(1232);
    if !(512..=4096).contains(&max_udp_payload) {
        return Err(invalid(
            KeyPath::from("dns.max_udp_payload"),
            "must be within 512..=4096",
        ));
    }
    Ok(DnsSettings {
        listen,
        udp_workers: raw.udp_workers.unwrap_or(0),
        max_udp_payload,
        tcp_idle_timeout: duration(
            KeyPath::from("dns.tcp_idle_timeout"),
            raw.tcp_idle_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        tcp_max_connections: raw.tcp_max_connections.unwrap_or(1024),
        tcp_max_per_client: positive(
            "dns.tcp_max_per_client",
            raw.tcp_max_per_client.unwrap_or(64),
        )?,
        tcp_max_queries: positive("dns.tcp_max_queries", raw.tcp_max_queries.unwrap_or(10_000))?,
        tcp_write_timeout: duration(
            KeyPath::from("dns.tcp_write_timeout"),
            raw.tcp_write_timeout.as_deref(),
            Duration::from_secs(5),
        )?,
        rtt_max_age: match duration(
            KeyPath::from("dns.rtt_max_age"),
            raw.rtt_max_age.as_deref(),
            Duration::from_secs(120),
        )? {
            age if age.is_zero() => {
                return Err(invalid(
                    KeyPath::from("dns.rtt_max_age"),
                    "must be longer than 0s",
                ));
            }
            age => age,
        },
        ecs: raw.ecs.unwrap_or(true),
        debug_queries: raw.debug_queries.unwrap_or(false),
        debug_networks: match &raw.debug_networks {
            None => vec![
                "127.0.0.0/8".parse().expect("a network"),
                "::1/128".parse().expect("a network"),
            ],
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    text.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
                        invalid(
                            KeyPath::from("dns.debug_networks").index(i),
                            format!("{text:?} is not a network (like 192.0.2.0/24)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        },
    })
}

fn admin(raw: &RawAdmin) -> Result<AdminSettings> {
    let listen = match (&raw.listen, raw.enabled.unwrap_or(true)) {
        (_, false) => None,
        (None, true) => Some(SocketAddr::from(([127, 0, 0, 1], 8053))),
        (Some(text), true) => Some(socket_addr(KeyPath::from("admin.listen"), text)?),
    };
    let reads = match raw.reads.as_deref() {
        None | Some("loopback") => ReadAccess::Loopback,
        Some("open") => ReadAccess::Open,
        Some("token") => ReadAccess::Token,
        Some(other) => {
            return Err(invalid(
                KeyPath::from("admin.reads"),
                format!("unknown value {other:?} (expected \"open\", \"loopback\" or \"token\")"),
            ));
        }
    };
    let key = KeyPath::from("admin");
    for (i, name) in raw.names.iter().enumerate() {
        let host = name
            .rsplit_once(':')
            .map_or(name.as_str(), |(host, _)| host);
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        {
            return Err(invalid(
                key.key("names").index(i),
                format!("{name:?} is not a host name (or host:port)"),
            ));
        }
    }
    let max_connections = raw.max_connections.unwrap_or(256);
    if max_connections == 0 {
        return Err(invalid(
            key.key("max_connections"),
            "0 would refuse every connection",
        ));
    }
    let settings = AdminSettings {
        listen,
        token_file: raw.token_file.clone(),
        reads,
        tls: raw.tls.as_ref().map(|t| AdminTls {
            cert: t.cert.clone(),
            key: t.key.clone(),
            ca: t.ca.clone(),
        }),
        insecure_plaintext: raw.insecure_plaintext.unwrap_or(false),
        names: raw.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        max_connections,
        header_timeout: duration(
            key.key("header_timeout"),
            raw.header_timeout.as_deref(),
            Duration::from_secs(5),
        )?,
        request_timeout: duration(
            key.key("request_timeout"),
            raw.request_timeout.as_deref(),
            Duration::from_secs(30),
        )?,
    };
    if let Some(why) = settings.exposure_error() {
        return Err(invalid(key.key("tls"), why));
    }
    if settings.insecure_plaintext && settings.tls.is_some() {
        return Err(invalid(
            key.key("insecure_plaintext"),
            "admin.tls is set: remove insecure_plaintext",
        ));
    }
    Ok(settings)
}

fn components(raw: &RawConfig, site_names: &HashSet<&str>) -> Result<ComponentSections> {
    let known = |key: &str, site: &Option<String>| -> Result<Option<String>> {
        match site {
            Some(name) if !site_names.contains(name.as_str()) => Err(invalid(
                KeyPath::from(key),
                format!("no site named {name:?}"),
            )),
            other => Ok(other.clone()),
        }
    };
    let mut site_agent = SiteAgentSettings::default();
    if let Some(agent) = &raw.site_agent {
        let key = KeyPath::from("site_agent");
        site_agent.site = known("site_agent.site", &agent.site)?;
        site_agent.report_to = agent
            .report_to
            .iter()
            .enumerate()
            .map(|(i, text)| socket_addr(key.key("report_to").index(i), text))
            .collect::<Result<Vec<_>>>()?;
        if let Some(max) = agent.max_concurrent_probes {
            if max == 0 {
                return Err(invalid(
                    key.key("max_concurrent_probes"),
                    "must be at least 1",
                ));
            }
            site_agent.max_concurrent_probes = max;
        }
        site_agent.slow_probe = duration(
            key.key("slow_probe"),
            agent.slow_probe.as_deref(),
            site_agent.slow_probe,
        )?;
        site_agent.s3_access_key = agent.s3_access_key.clone();
        site_agent.s3_secret_key_file = agent.s3_secret_key_file.clone();
        site_agent.resolver = agent
            .resolver
            .as_deref()
            .map(|text| socket_addr(key.key("resolver"), text))
            .transpose()?;
        site_agent.token_file = agent.token_file.clone();
        site_agent.api_tls = api_tls(&key, &agent.api_ca, &agent.api_cert, &agent.api_key)?;
        site_agent.discover_interval = duration(
            key.key("discover_interval"),
            agent.discover_interval.as_deref(),
            site_agent.discover_interval,
        )?;
        site_agent.report_timeout = duration(
            key.key("report_timeout"),
            agent.report_timeout.as_deref(),
            site_agent.report_timeout,
        )?;
        if site_agent.report_timeout.is_zero() {
            return Err(invalid(key.key("report_timeout"), "must be more than 0"));
        }
        site_agent.config_interval = duration(
            key.key("config_interval"),
            agent.config_interval.as_deref(),
            site_agent.config_interval,
        )?;
        if site_agent.config_interval.is_zero() {
            return Err(invalid(key.key("config_interval"), "must be more than 0"));
        }
    }
    Ok(ComponentSections {
        site_agent,
        proxy: match &raw.proxy {
            None => ProxySettings::default(),
            Some(proxy) => {
                known("proxy.site", &proxy.site)?;
                super::proxy::validate(proxy, &raw.services, &raw.sites)?
            }
        },
    })
}

fn store(raw: &RawStore, site_names: &HashSet<&str>) -> Result<StoreSettings> {
    let key = KeyPath::from("store");
    let tick_interval = duration(
        key.key("tick_interval"),
        raw.tick_interval.as_deref(),
        Duration::from_millis(100),
    )?;
    if tick_interval < Duration::from_millis(10) {
        return Err(invalid(key.key("tick_interval"), "must be at least 10ms"));
    }
    let election_ticks = raw.election_ticks.unwrap_or(10);
    let heartbeat_ticks = raw.heartbeat_ticks.unwrap_or(2);
    if heartbeat_ticks == 0 {
        return Err(invalid(key.key("heartbeat_ticks"), "must be at least 1"));
    }
    if election_ticks <= heartbeat_ticks {
        return Err(invalid(
            key.key("election_ticks"),
            "must be more than heartbeat_ticks",
        ));
    }
    let snapshot_threshold = raw.snapshot_threshold.unwrap_or(1000);
    if snapshot_threshold == 0 {
        return Err(invalid(key.key("snapshot_threshold"), "must be at least 1"));
    }
    let propose_timeout = duration(
        key.key("propose_timeout"),
        raw.propose_timeout.as_deref(),
        Duration::from_secs(5),
    )?;
    let mut nodes = Vec::new();
    let mut ids = HashSet::new();
    for (i, node) in raw.nodes.iter().enumerate() {
        let nkey = key.key("nodes").index(i);
        if node.id == 0 {
            return Err(invalid(nkey.key("id"), "node ids start at 1"));
        }
        if !ids.insert(node.id) {
            return Err(invalid(
                nkey.key("id"),
                format!("node {} is listed twice", node.id),
            ));
        }
        if let Some(name) = &node.site
            && !site_names.contains(name.as_str())
        {
            return Err(invalid(nkey.key("site"), format!("no site named {name:?}")));
        }
        let site = node.site.clone();
        nodes.push(StoreNode {
            id: node.id,
            raft: socket_addr(nkey.key("raft"), &node.raft)?,
            api: node
                .api
                .as_deref()
                .map(|a| socket_addr(nkey.key("api"), a))
                .transpose()?,
            dns: node
                .dns
                .as_deref()
                .map(|a| socket_addr(nkey.key("dns"), a))
                .transpose()?,
            site,
            learner: node.learner,
        });
    }
    let node_id = raw
        .node_id
        .unwrap_or_else(|| nodes.first().map_or(1, |n| n.id));
    if !nodes.is_empty() && !ids.contains(&node_id) {
        return Err(invalid(
            key.key("node_id"),
            format!("node {node_id} is not in store.nodes"),
        ));
    }
    if !nodes.is_empty() && nodes.iter().all(|n| n.learner) {
        return Err(invalid(
            key.key("nodes"),
            "at least one node must be a voter (learner = false)",
        ));
    }
    let tls = raw.tls.as_ref().map(|t| TlsFiles {
        cert: t.cert.clone(),
        key: t.key.clone(),
        ca: t.ca.clone(),
    });
    let cluster = raw.cluster.clone().unwrap_or_else(|| "portico".into());
    if cluster.is_empty()
        || !cluster
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err(invalid(
            key.key("cluster"),
            format!(
                "{cluster:?}: a cluster name is DNS labels (letters, digits, '-') separated by dots"
            ),
        ));
    }
    let insecure_plaintext = raw.insecure_plaintext.unwrap_or(false);
    // A store of several nodes talks raft over the network: that needs mutual TLS, unless
    // every node is on this machine and plaintext is asked for by name.
    if nodes.len() > 1 && tls.is_none() {
        let all_loopback = nodes.iter().all(|n| n.raft.ip().is_loopback());
        if !insecure_plaintext {
            return Err(invalid(
                key.key("tls"),
                "a store of several nodes needs mutual TLS between them: set store.tls = { cert, key, ca } (or, with every node on loopback, store.insecure_plaintext = true)",
            ));
        }
        if !all_loopback {
            return Err(invalid(
                key.key("insecure_plaintext"),
                "plaintext raft is allowed only when every node's raft address is loopback: set store.tls",
            ));
        }
    }
    if insecure_plaintext && tls.is_some() {
        return Err(invalid(
            key.key("insecure_plaintext"),
            "store.tls is set: remove insecure_plaintext",
        ));
    }
    Ok(StoreSettings {
        node_id,
        data_dir: raw
            .data_dir
            .clone()
            .unwrap_or_else(|| "portico-data".into()),
        tick_interval,
        election_ticks,
        heartbeat_ticks,
        snapshot_threshold,
        propose_timeout,
        nodes,
        tls,
        cluster,
        insecure_plaintext,
    })
}

/// A count that must be at least one.
fn positive<T: PartialEq + Default>(key: &str, value: T) -> Result<T> {
    if value == T::default() {
        return Err(invalid(KeyPath::from(key), "must be at least 1"));
    }
    Ok(value)
}
