//! The pipes L4 sessions splice through, shared by the whole proxy.
//!
//! A session holds a pipe only while bytes are in it: it takes one when its source has data,
//! splices in, splices out, and gives it back once empty. Idle sessions (most NFS and SMB
//! sessions are idle most of the time) hold none, so pipes, their pages and their two file
//! descriptors scale with the bytes in flight, not with the sessions open.
//!
//! The kernel caps the pipe pages of an unprivileged user (`/proc/sys/fs/pipe-user-pages-soft`,
//! 16384 pages = 64 MiB by default): past it, resizing fails and every new pipe gets 8 KiB.
//! Under a `User=portico` unit, two 1 MiB pipes per session would reach that at 32 sessions
//! and slow every later one. So the pool keeps within a budget of three quarters of that
//! limit (the rest stays for the user's other processes), reads back each pipe's real size
//! (`F_GETPIPE_SZ`) and discards a pipe smaller than [`MIN_PIPE`]; a session that finds no
//! pipe moves that chunk through a user-space buffer instead (counted).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sys::Pipe;

/// The pipe size asked for: 1 MiB moved per splice measured 1.6x the bytes per CPU-second
/// of 64 KiB on one stream (bench/proxy).
pub const PIPE_SIZE: usize = 1024 * 1024;

/// A pipe smaller than this is not worth splicing through (a copy moves more per call).
pub const MIN_PIPE: usize = 64 * 1024;

/// Pipes kept at most, whatever the kernel allows (each holds two file descriptors).
const MAX_PIPES: usize = 4096;

/// Idle pipes kept for reuse; more are closed when given back.
const MAX_IDLE: usize = 256;

const PAGE: usize = 4096;

/// Pipes on loan to sessions and kept idle, within a budget.
#[derive(Debug)]
pub struct PipePool {
    idle: Mutex<Vec<Pipe>>,
    /// Pipes that exist (idle or lent).
    live: AtomicUsize,
    /// How many may exist.
    max_pipes: AtomicUsize,
    size: usize,
    /// The size the kernel grants (read back from the last pipe made).
    pub granted: AtomicUsize,
    /// Chunks moved by copy because no pipe was to be had.
    pub copied_chunks: AtomicU64,
    /// Pipes the kernel made smaller than [`MIN_PIPE`] (a per-user limit reached).
    pub undersized: AtomicU64,
}

/// The kernel's limits on one user's pipe pages, from `/proc/sys/fs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeLimits {
    /// `pipe-user-pages-soft`, 0 for none.
    pub soft_pages: usize,
    /// `pipe-user-pages-hard`, 0 for none.
    pub hard_pages: usize,
    /// Root (these limits do not apply).
    pub privileged: bool,
}

impl PipeLimits {
    /// This process's limits.
    pub fn of_this_process() -> PipeLimits {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/fs/{name}"))
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0)
        };
        PipeLimits {
            soft_pages: read("pipe-user-pages-soft"),
            hard_pages: read("pipe-user-pages-hard"),
            privileged: crate::sys::running_as_root(),
        }
    }

    /// Pipes of `size` bytes the proxy gives itself: three quarters of the smaller limit.
    pub fn budget(self, size: usize) -> usize {
        let limit = [self.soft_pages, self.hard_pages]
            .into_iter()
            .filter(|&pages| pages > 0)
            .min();
        match limit {
            Some(pages) if !self.privileged => {
                (pages * 3 / 4 / size.div_ceil(PAGE).max(1)).clamp(1, MAX_PIPES)
            }
            _ => MAX_PIPES,
        }
    }
}

impl PipePool {
    /// A pool of `size`-byte pipes within `limits`; the budget follows the size the kernel
    /// really grants.
    pub fn new(size: usize, limits: PipeLimits) -> PipePool {
        let pool = PipePool {
            idle: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            max_pipes: AtomicUsize::new(limits.budget(size)),
            size,
            granted: AtomicUsize::new(size),
            copied_chunks: AtomicU64::new(0),
            undersized: AtomicU64::new(0),
        };
        // One pipe now: its real size sets the budget (a smaller grant leaves room for more).
        if let Some(pipe) = pool.make() {
            pool.max_pipes
                .store(limits.budget(pipe.capacity), Ordering::Relaxed);
            pool.give(pipe);
        }
        pool
    }

    /// The pool for this process, with pipes of [`PIPE_SIZE`].
    pub fn for_this_process() -> PipePool {
        let limits = PipeLimits::of_this_process();
        let pool = PipePool::new(PIPE_SIZE, limits);
        tracing::debug!(
            granted = pool.granted.load(Ordering::Relaxed),
            max_pipes = pool.max_pipes(),
            ?limits,
            "pipe pool"
        );
        pool
    }

    fn make(&self) -> Option<Pipe> {
        let pipe = Pipe::new(self.size).ok()?;
        self.granted.store(pipe.capacity, Ordering::Relaxed);
        if pipe.capacity < MIN_PIPE {
            self.undersized.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        Some(pipe)
    }

    /// An empty pipe, or `None` when the budget is spent (copy this chunk instead).
    pub fn take(&self) -> Option<Pipe> {
        if let Some(pipe) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Some(pipe);
        }
        // A race may let a few more than the budget through; the kernel's own check and
        // the size read back still hold.
        if self.live.load(Ordering::Relaxed) < self.max_pipes()
            && let Some(pipe) = self.make()
        {
            return Some(pipe);
        }
        self.copied_chunks.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Takes `pipe` back: kept for the next session if empty, closed if it still holds
    /// bytes (a session that ended mid-transfer) or enough are idle.
    pub fn give(&self, pipe: Pipe) {
        if pipe.pending == 0 {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(pipe);
                return;
            }
        }
        drop(pipe);
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn max_pipes(&self) -> usize {
        self.max_pipes.load(Ordering::Relaxed)
    }

    /// Pipes that exist now (idle or lent).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Pipes lent to sessions now.
    pub fn lent(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).len();
        self.live().saturating_sub(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_three_quarters_of_the_users_limit() {
        let unprivileged = PipeLimits {
            soft_pages: 16384,
            hard_pages: 0,
            privileged: false,
        };
        // 1 MiB = 256 pages: 12288 / 256.
        assert_eq!(unprivileged.budget(1024 * 1024), 48);
        assert_eq!(unprivileged.budget(64 * 1024), 768);
        let hard = PipeLimits {
            hard_pages: 4096,
            ..unprivileged
        };
        assert_eq!(hard.budget(1024 * 1024), 12);
        let root = PipeLimits {
            privileged: true,
            ..unprivileged
        };
        assert_eq!(root.budget(1024 * 1024), MAX_PIPES);
    }

    #[test]
    fn pipes_are_reused_and_the_budget_holds() {
        let limits = PipeLimits {
            soft_pages: 86, // three quarters: 64 pages, four 64 KiB pipes
            hard_pages: 0,
            privileged: false,
        };
        let pool = PipePool::new(64 * 1024, limits);
        assert_eq!(pool.max_pipes(), 4);
        assert_eq!(pool.live(), 1, "one pipe made at start");
        let lent: Vec<Pipe> = (0..4).filter_map(|_| pool.take()).collect();
        assert_eq!(lent.len(), 4);
        assert!(lent.iter().all(|p| p.capacity >= 64 * 1024));
        assert!(pool.take().is_none(), "over the budget: copy instead");
        assert_eq!(pool.copied_chunks.load(Ordering::Relaxed), 1);
        assert_eq!(pool.lent(), 4);
        for pipe in lent {
            pool.give(pipe);
        }
        assert_eq!((pool.live(), pool.lent()), (4, 0));
        assert!(pool.take().is_some(), "a returned pipe is lent again");
        assert_eq!(pool.live(), 4, "without making a new one");
    }
}
