//! Why a database could not be opened or read.

use std::net::IpAddr;
use std::path::PathBuf;

/// Why a database could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read (or its metadata could not be read).
    #[error("cannot read GeoIP database {}", path.display())]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid MaxMind DB.
    #[error("invalid GeoIP database{}", describe(path.as_ref()))]
    InvalidDatabase {
        /// The file the bytes came from, `None` for [`crate::GeoDb::from_bytes`].
        path: Option<PathBuf>,
        /// What the reader found wrong.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// Looking up or decoding the record of an address failed (a corrupt database).
    #[error("GeoIP lookup of {ip} failed")]
    Lookup {
        /// The address looked up.
        ip: IpAddr,
        /// What the reader found wrong.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// Walking the networks of the database failed (a corrupt database).
    #[error("listing the networks of the GeoIP database failed")]
    Networks(#[source] maxminddb::MaxMindDbError),
}

fn describe(path: Option<&PathBuf>) -> String {
    path.map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}
