//! The bytes of a database: a read-only mapping of its file, or a buffer in memory.
//!
//! A City database is 60 to 110 MB; reading it into a buffer would make all of it resident
//! for as long as it is in service, though after the client classes are built only the
//! occasional explanation looks anything up in it. Mapped, its pages come from the page
//! cache while they are read and [`Bytes::release`] hands them back afterwards, so the
//! process keeps only what it touches (gdnsd and libmaxminddb map the file the same way).
//!
//! This is the one module of `geoip-data` that uses `unsafe`: mapping a file and advising
//! the kernel about the mapping.
#![allow(unsafe_code)]

use std::fs::File;
use std::sync::Arc;

/// Shared bytes of one database; cloning shares them.
#[derive(Clone)]
pub(crate) struct Bytes(Arc<Inner>);

enum Inner {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Bytes {
    pub(crate) fn owned(bytes: Vec<u8>) -> Bytes {
        Bytes(Arc::new(Inner::Owned(bytes)))
    }

    /// Maps `file` read-only.
    pub(crate) fn map(file: &File) -> std::io::Result<Bytes> {
        // SAFETY: the mapping is read-only and Portico never writes the file. Another
        // process changing the file in place while it is mapped would change or (truncated)
        // invalidate these bytes; `gslb-dns` therefore maps a private copy that nobody else
        // can open (`GeoDb::open_private`: made in its data directory and unlinked at once),
        // and `GeoDb::open` (one-off reads: `--check-config`, tools) documents that the file
        // must be replaced atomically, as geoipupdate does, which leaves a mapping on the
        // old inode.
        let map = unsafe { memmap2::Mmap::map(file) }?;
        // Lookups jump around the file: no read-ahead and no mapping of neighbouring pages
        // on a fault, so what is resident is what was read.
        let _ = map.advise(memmap2::Advice::Random);
        Ok(Bytes(Arc::new(Inner::Mapped(map))))
    }

    /// Drops the mapped pages from this process's resident set (they stay in the page
    /// cache and come back on the next read). Nothing for bytes in memory.
    pub(crate) fn release(&self) {
        if let Inner::Mapped(map) = &*self.0 {
            // SAFETY: `MADV_DONTNEED` on a read-only file mapping only drops this
            // process's copies of clean pages; the next access reads the file's page again,
            // so the bytes seen do not change. Nothing holds a reference into a dropped
            // page across this call in a way the kernel could invalidate: the memory stays
            // mapped.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match &*self.0 {
            Inner::Owned(bytes) => bytes,
            Inner::Mapped(map) => map,
        }
    }
}
