//! [`WatchedDb`]: a database file that is reloaded when it changes (polled, no threads).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::db::GeoDb;
use crate::error::GeoError;

/// A database loaded from a file and reloaded when the file changes.
///
/// Poll-based: each [`reload_if_changed`](WatchedDb::reload_if_changed) compares the file's
/// modification time, length and inode with those of the last load attempt. A file that
/// fails to load keeps the old database in service and returns the error (once per change
/// of the file: the next poll of the same broken file returns `Ok(false)`).
#[derive(Debug)]
pub struct WatchedDb {
    path: PathBuf,
    /// Where private copies are made ([`GeoDb::open_private`]); `None`: the file itself is
    /// mapped.
    scratch: Option<PathBuf>,
    current: Arc<GeoDb>,
    /// The file as it was when it was last read, successfully or not.
    stamp: Stamp,
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl WatchedDb {
    /// Loads the database at `path`; fails if it cannot be read or is not a MaxMind DB.
    pub fn open(path: impl Into<PathBuf>) -> Result<WatchedDb, GeoError> {
        Self::open_in(path, None)
    }

    /// [`WatchedDb::open`], serving private copies of the file made in `scratch` (see
    /// [`GeoDb::open_private`]): a file rewritten in place, even truncated, changes nothing
    /// until it is a valid database again.
    pub fn open_private(
        path: impl Into<PathBuf>,
        scratch: impl Into<PathBuf>,
    ) -> Result<WatchedDb, GeoError> {
        Self::open_in(path, Some(scratch.into()))
    }

    fn open_in(path: impl Into<PathBuf>, scratch: Option<PathBuf>) -> Result<WatchedDb, GeoError> {
        let path = path.into();
        let stamp = stamp(&path)?;
        let current = Arc::new(load(&path, scratch.as_deref())?);
        Ok(WatchedDb {
            path,
            scratch,
            current,
            stamp,
        })
    }

    /// The database in service: the last one that loaded successfully.
    pub fn current(&self) -> Arc<GeoDb> {
        Arc::clone(&self.current)
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads the file if its modification time, length or inode changed since the last
    /// attempt. `Ok(true)` when a new database was loaded, `Ok(false)` when the file is
    /// unchanged, `Err` when it changed but could not be read or is not a valid database
    /// (the previous database stays current).
    pub fn reload_if_changed(&mut self) -> Result<bool, GeoError> {
        // Stamp before reading: a file that changes while it is read is read again next time.
        let stamp = stamp(&self.path)?;
        if stamp == self.stamp {
            return Ok(false);
        }
        self.stamp = stamp;
        self.current = Arc::new(load(&self.path, self.scratch.as_deref())?);
        Ok(true)
    }
}

fn load(path: &Path, scratch: Option<&Path>) -> Result<GeoDb, GeoError> {
    match scratch {
        Some(scratch) => GeoDb::open_private(path, scratch),
        None => GeoDb::open(path),
    }
}

fn stamp(path: &Path) -> Result<Stamp, GeoError> {
    let meta = std::fs::metadata(path).map_err(|source| GeoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: inode(&meta),
    })
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir()
                .join(format!("geoip-data-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Replaces `path` the way updaters do: write a sibling file, then rename it over.
    fn replace(path: &Path, bytes: &[u8]) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).expect("write temp file");
        std::fs::rename(&tmp, path).expect("rename over database");
    }

    fn country(db: &GeoDb, ip: &str) -> Option<String> {
        let ip = ip.parse().expect("test address");
        let found = db.lookup(ip).expect("lookup");
        found.and_then(|(location, _)| location.country)
    }

    #[test]
    fn reloads_replaced_file_and_keeps_old_database_on_corrupt_file() {
        let dir = TempDir::new("watch");
        let path = dir.0.join("city.mmdb");
        std::fs::write(&path, generator::test_city_database()).expect("write database");

        let mut watched = WatchedDb::open_private(&path, &dir.0).expect("open");
        assert_eq!(watched.path(), path);
        assert_eq!(
            country(&watched.current(), "198.51.100.7").as_deref(),
            Some("US")
        );
        assert!(!watched.reload_if_changed().expect("unchanged file"));

        // A smaller database: only the Frankfurt networks.
        let entries = generator::test_entries();
        let frankfurt: Vec<_> = entries
            .into_iter()
            .filter(|e| e.1.city == "Frankfurt am Main")
            .collect();
        replace(&path, &generator::build(&frankfurt));
        let before = watched.current();
        assert!(watched.reload_if_changed().expect("valid replacement"));
        assert_eq!(country(&watched.current(), "198.51.100.7"), None);
        assert_eq!(
            country(&watched.current(), "192.0.2.7").as_deref(),
            Some("DE")
        );
        assert_eq!(
            country(&before, "198.51.100.7").as_deref(),
            Some("US"),
            "old snapshot kept"
        );
        assert!(!watched.reload_if_changed().expect("unchanged again"));

        std::fs::write(&path, b"not a MaxMind database").expect("corrupt the file");
        let err = watched.reload_if_changed().expect_err("corrupt file");
        assert!(
            matches!(err, GeoError::InvalidDatabase { path: Some(_), .. }),
            "{err:?}"
        );
        assert_eq!(
            country(&watched.current(), "192.0.2.7").as_deref(),
            Some("DE")
        );
        assert!(
            !watched
                .reload_if_changed()
                .expect("same broken file is not retried")
        );

        std::fs::remove_file(&path).expect("remove database");
        let err = watched.reload_if_changed().expect_err("missing file");
        assert!(matches!(err, GeoError::Read { .. }), "{err:?}");
        assert_eq!(
            country(&watched.current(), "192.0.2.7").as_deref(),
            Some("DE")
        );

        replace(&path, &generator::test_city_database());
        assert!(watched.reload_if_changed().expect("restored file"));
        assert_eq!(
            country(&watched.current(), "203.0.113.9").as_deref(),
            Some("SG")
        );
    }

    #[test]
    fn open_reports_missing_and_invalid_files() {
        let dir = TempDir::new("open");
        let path = dir.0.join("missing.mmdb");
        let err = WatchedDb::open(&path).expect_err("missing file");
        assert!(matches!(err, GeoError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.mmdb"), "{err}");

        std::fs::write(&path, [0u8; 64]).expect("write junk");
        let err = WatchedDb::open(&path).expect_err("junk file");
        assert!(matches!(err, GeoError::InvalidDatabase { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.mmdb"), "{err}");
    }
}
