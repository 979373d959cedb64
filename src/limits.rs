//! How many feeds the daemon takes at once (`[limits] max_feeds`). Past the limit a new
//! publisher is refused (logged, counted in `feeds_refused_total`) instead of taking the
//! process into "too many open files" or out of memory, which would hurt every feed.
//!
//! The default is sized to the machine, from two budgets:
//! - open files: the soft `RLIMIT_NOFILE` less [`RESERVED_FDS`], divided by what one feed
//!   holds open ([`FDS_PER_FEED`]: the recording and its sidecar; the media loop's UDP
//!   sockets are shared by every feed);
//! - memory: total memory divided by [`MEM_PER_FEED`].

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors kept for everything that is not a feed: stdio, the journal, the WebSocket(s)
/// to Janus and relay servers, the metrics listener and its clients, tokio's epoll, the
/// media loop's sockets.
pub const RESERVED_FDS: u64 = 64;
/// Memory budgeted per feed. The benchmark measured 0.3-0.7 MiB of RSS per feed; the rest
/// leaves room for socket buffers, the page cache of the files being written, and bursts.
pub const MEM_PER_FEED: u64 = 4 << 20;

/// Open files one feed may hold: the recording and its sidecar while rewritten.
pub const FDS_PER_FEED: u64 = 2;

/// Open files needed for `feeds` feeds.
pub fn fds_needed(feeds: usize) -> u64 {
    RESERVED_FDS + feeds as u64 * FDS_PER_FEED
}

/// The default `max_feeds` for a machine with `nofile` open files allowed and `memory` bytes
/// of memory; at least 1.
pub fn default_max_feeds(nofile: u64, memory: u64) -> NonZeroUsize {
    let by_files = nofile.saturating_sub(RESERVED_FDS) / FDS_PER_FEED;
    let by_memory = memory / MEM_PER_FEED;
    let n = usize::try_from(by_files.min(by_memory)).unwrap_or(usize::MAX);
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// This process's soft open-file limit and the machine's total memory in bytes (`None` where
/// the system does not say).
pub fn machine() -> (Option<u64>, Option<u64>) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let nofile =
        (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0).then_some(rl.rlim_cur);
    // SAFETY: sysinfo fills in the zeroed struct we own.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    let memory = (unsafe { libc::sysinfo(&mut info) } == 0)
        .then(|| info.totalram as u64 * u64::from(info.mem_unit.max(1)));
    (nofile, memory)
}

/// Raises this process's soft open-file limit to its hard limit (what `room` does before it
/// opens recordings: the soft limit is often 1024 while the hard one is far higher) and
/// returns the soft limit now in force, `None` if the system does not say.
pub fn raise_open_files() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return None;
        }
        if rl.rlim_cur < rl.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    Some(rl.rlim_cur)
}

/// The feeds running now, against the limit; shared by every room, kept across reloads
/// (a reload may change the limit; feeds beyond a lowered one go on until they end).
#[derive(Debug, Clone)]
pub struct FeedSlots(Arc<Slots>);

#[derive(Debug)]
struct Slots {
    used: AtomicUsize,
    max: AtomicUsize,
    /// Bumped whenever a slot is given back (publishers waiting for one are tried again).
    freed: tokio::sync::watch::Sender<u64>,
}

impl FeedSlots {
    pub fn new(max: NonZeroUsize) -> FeedSlots {
        FeedSlots(Arc::new(Slots {
            used: AtomicUsize::new(0),
            max: AtomicUsize::new(max.get()),
            freed: tokio::sync::watch::channel(0).0,
        }))
    }

    pub fn set_max(&self, max: NonZeroUsize) {
        self.0.max.store(max.get(), Ordering::Relaxed);
        self.0.freed.send_modify(|n| *n += 1);
    }

    pub fn max(&self) -> usize {
        self.0.max.load(Ordering::Relaxed)
    }

    /// The feeds running now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Changes whenever a slot is given back (or the limit raised by a reload).
    pub fn freed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.freed.subscribe()
    }

    /// A slot for one more feed, held until dropped; `None` at the limit.
    pub fn take(&self) -> Option<FeedSlot> {
        let max = self.max();
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| FeedSlot(self.0.clone()))
    }
}

/// One running feed's place under the limit.
#[derive(Debug)]
pub struct FeedSlot(Arc<Slots>);

impl Drop for FeedSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_the_smaller_budget() {
        let gib = 1u64 << 30;
        // A shell's 1024 files: (1024 - 64) / 2.
        assert_eq!(default_max_feeds(1024, 24 * gib).get(), 480);
        // Plenty of files, 1 GiB of memory: 1 GiB / 4 MiB.
        assert_eq!(default_max_feeds(1 << 20, gib).get(), 256);
        // Never zero.
        assert_eq!(default_max_feeds(10, gib).get(), 1);
        assert_eq!(fds_needed(480), 1024);
    }

    #[test]
    fn slots_refuse_past_the_limit_and_come_back() {
        let slots = FeedSlots::new(NonZeroUsize::new(2).unwrap());
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(a);
        let _c = slots.take().expect("a slot freed by a feed that ended");
        slots.set_max(NonZeroUsize::new(3).unwrap());
        assert!(slots.take().is_some());
    }
}
