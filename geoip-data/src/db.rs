//! [`GeoDb`]: one loaded database, and the serde structs its records decode into.

use std::net::IpAddr;
use std::path::Path;

use ipnet::{IpNet, Ipv6Net};
use maxminddb::{MaxMindDbError, Reader, WithinOptions};
use serde::Deserialize;

use crate::error::GeoError;
use crate::location::Location;
use crate::mapped::Bytes;

/// The checked-in test database, written by [`crate::generator::test_city_database`].
const TEST_DATABASE: &[u8] = include_bytes!("../test-data/test-city.mmdb");

/// A loaded MaxMind DB: its file mapped read-only, or bytes it owns. Cheap to share behind
/// an `Arc`.
pub struct GeoDb {
    reader: Reader<Bytes>,
    bytes: Bytes,
}

/// How many networks [`GeoDb::for_each_network`] walks, or how many records it decodes,
/// before it hands the pages it read back to the kernel: the tree is read front to back,
/// records anywhere (about a page each), so this keeps the resident part of a mapped file
/// to a few MiB during a walk.
const RELEASE_EVERY: usize = 1 << 17;
const RELEASE_EVERY_DECODED: usize = 1 << 7;

/// One network of the database during [`GeoDb::for_each_network`].
pub struct GeoNetwork<'a> {
    /// The network (IPv4 networks as [`IpNet::V4`]).
    pub net: IpNet,
    /// Where its record is in the data section: networks with the same `record` share one
    /// record, so a caller can decode each record once.
    pub record: usize,
    result: maxminddb::LookupResult<'a, Bytes>,
    decoded: &'a std::cell::Cell<usize>,
}

impl GeoNetwork<'_> {
    /// Decodes the network's record.
    pub fn location(&self) -> Result<Location, GeoError> {
        self.decoded.set(self.decoded.get() + 1);
        let record = self.result.decode::<Record>().map_err(GeoError::Networks)?;
        Ok(record.map(Record::into_location).unwrap_or_default())
    }
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("database_type", &self.database_type())
            .field("build_epoch", &self.build_epoch())
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Reads and checks the database at `path`.
    ///
    /// The file is mapped, not read: replace it atomically (write a new file, then rename
    /// it), never rewrite it in place while Portico runs.
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let read_error = |source| GeoError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        GeoDb::mapped(Bytes::map(&file).map_err(read_error)?, path)
    }

    /// Like [`GeoDb::open`], but maps a private copy of the file made in `scratch` (and
    /// unlinked at once), so nothing another process does to `path` afterwards (rewriting
    /// it in place, truncating it) can change or invalidate the database in service. The
    /// copy is made with `copy_file_range` where the file system has it.
    pub fn open_private(path: &Path, scratch: &Path) -> Result<GeoDb, GeoError> {
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let read_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GeoError::Read { path, source }
        };
        let mut source = std::fs::File::open(path).map_err(read_error(path))?;
        let copy_path = scratch.join(format!(
            ".geoip-{}-{}.mmdb",
            std::process::id(),
            COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut copy = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&copy_path)
            .map_err(read_error(&copy_path))?;
        let _ = std::fs::remove_file(&copy_path);
        std::io::copy(&mut source, &mut copy).map_err(read_error(path))?;
        GeoDb::mapped(Bytes::map(&copy).map_err(read_error(path))?, path)
    }

    /// Checks the mapped `bytes` of the database at `path`.
    fn mapped(bytes: Bytes, path: &Path) -> Result<GeoDb, GeoError> {
        let reader =
            Reader::from_source(bytes.clone()).map_err(|source| GeoError::InvalidDatabase {
                path: Some(path.to_path_buf()),
                source,
            })?;
        let db = GeoDb { reader, bytes };
        db.release_pages();
        Ok(db)
    }

    /// Checks and takes ownership of a database held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoDb, GeoError> {
        let bytes = Bytes::owned(bytes);
        let reader = Reader::from_source(bytes.clone())
            .map_err(|source| GeoError::InvalidDatabase { path: None, source })?;
        Ok(GeoDb { reader, bytes })
    }

    /// Hands the pages of a mapped file read so far back to the kernel, so they stop
    /// counting in this process's memory (they are read again if needed).
    pub fn release_pages(&self) {
        self.bytes.release();
    }

    /// The checked-in test database (`test-data/test-city.mmdb`): twelve networks in
    /// Frankfurt, Ashburn and Singapore, listed in [`crate::generator`].
    pub fn test_database() -> GeoDb {
        GeoDb::from_bytes(TEST_DATABASE.to_vec())
            .expect("the checked-in test-data/test-city.mmdb is a valid MaxMind DB")
    }

    /// Location of `ip` and the prefix length of the database network that holds it (in the
    /// address's own family: an IPv4 address gives 0..=32 even in an IPv6 database).
    ///
    /// `Ok(None)` when the database has no data for `ip`, and for an IPv6 address in an
    /// IPv4-only database.
    pub fn lookup(&self, ip: IpAddr) -> Result<Option<(Location, u8)>, GeoError> {
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return Ok(None);
        }
        let fail = |source| GeoError::Lookup { ip, source };
        let result = self.reader.lookup(ip).map_err(fail)?;
        let Some(record) = result.decode::<Record>().map_err(fail)? else {
            return Ok(None);
        };
        let network = result.network().map_err(fail)?;
        // An IPv4 address answered by a record above the IPv4 subtree (a database without
        // one) comes back as an IPv6 network; report its prefix below `::/96`.
        let prefix = match (ip, network.ip()) {
            (IpAddr::V4(_), IpAddr::V6(_)) => network.prefix().saturating_sub(96),
            _ => network.prefix(),
        };
        Ok(Some((record.into_location(), prefix)))
    }

    /// Every network that has data, sorted: IPv4 networks as [`IpNet::V4`] (the IPv4
    /// subtree `::/96` of an IPv6 database; its aliases `::ffff:0:0/96` and `2002::/16` are
    /// skipped so no IPv4 data is reported twice), native IPv6 networks as [`IpNet::V6`].
    pub fn networks(&self) -> Result<Vec<(IpNet, Location)>, GeoError> {
        let mut out = Vec::new();
        self.for_each_network(|network| {
            out.push((network.net, network.location()?));
            Ok(())
        })?;
        out.sort_by_key(|(net, _)| *net);
        Ok(out)
    }

    /// Calls `visit` for every network that has data, in the database's order (IPv4 as
    /// [`IpNet::V4`], aliases of the IPv4 subtree skipped, as [`GeoDb::networks`] lists
    /// them) without decoding anything: [`GeoNetwork::location`] decodes on demand. The
    /// pages of a mapped file are released as the walk goes, so walking a City database
    /// keeps a few MiB of it resident, not all of it. Stops at the first error of `visit`.
    pub fn for_each_network(
        &self,
        mut visit: impl FnMut(GeoNetwork<'_>) -> Result<(), GeoError>,
    ) -> Result<(), GeoError> {
        let iter = self
            .reader
            .networks(WithinOptions::default())
            .map_err(GeoError::Networks)?;
        let decoded = std::cell::Cell::new(0);
        for (walked, item) in iter.enumerate() {
            if walked % RELEASE_EVERY == RELEASE_EVERY - 1 || decoded.get() >= RELEASE_EVERY_DECODED
            {
                self.release_pages();
                decoded.set(0);
            }
            let item = item.map_err(GeoError::Networks)?;
            let network = item.network().map_err(GeoError::Networks)?;
            let net = IpNet::new(network.network(), network.prefix())
                .map_err(|_| GeoError::Networks(MaxMindDbError::invalid_database("bad prefix")))?;
            if let IpNet::V6(v6) = net
                && is_ipv4_alias(&v6)
            {
                continue;
            }
            let Some(record) = item.offset() else {
                continue;
            };
            visit(GeoNetwork {
                net,
                record,
                result: item,
                decoded: &decoded,
            })?;
        }
        self.release_pages();
        Ok(())
    }

    /// The `database_type` from the metadata, e.g. `"GeoLite2-City"`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built, in seconds since the Unix epoch.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }
}

/// Whether `net` lies in a range that aliases the IPv4 subtree `::/96`: IPv4-mapped
/// `::ffff:0:0/96` or 6to4 `2002::/16`.
fn is_ipv4_alias(net: &Ipv6Net) -> bool {
    let segments = net.network().segments();
    (net.prefix_len() >= 96 && segments[..6] == [0, 0, 0, 0, 0, 0xffff])
        || (net.prefix_len() >= 16 && segments[0] == 0x2002)
}

/// The fields of a GeoIP2 City/Country record that Portico uses; all optional.
#[derive(Deserialize)]
struct Record {
    continent: Option<Coded>,
    country: Option<Coded>,
    subdivisions: Option<Vec<Coded>>,
    city: Option<Named>,
    location: Option<Coordinates>,
}

#[derive(Deserialize)]
struct Coded {
    code: Option<String>,
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    names: Option<Names>,
}

#[derive(Deserialize)]
struct Names {
    en: Option<String>,
}

#[derive(Deserialize)]
struct Coordinates {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl Record {
    fn into_location(self) -> Location {
        let coordinates = self
            .location
            .and_then(|l| Some((l.latitude?, l.longitude?)));
        Location {
            continent: self.continent.and_then(|c| c.code),
            country: self.country.and_then(|c| c.iso_code),
            subdivision: self
                .subdivisions
                .and_then(|s| s.into_iter().next()?.iso_code),
            city: self.city.and_then(|c| c.names?.en),
            coordinates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_alias_ranges_are_recognised() {
        for (net, alias) in [
            ("::ffff:0:0/96", true),
            ("::ffff:192.0.2.0/120", true),
            ("2002::/16", true),
            ("2002:c000:200::/40", true),
            ("::/96", false),
            ("::ffff:0:0/95", false),
            ("2000::/3", false),
            ("2001:db8:1::/48", false),
        ] {
            let net: Ipv6Net = net.parse().expect("test network");
            assert_eq!(is_ipv4_alias(&net), alias, "{net}");
        }
    }
}
