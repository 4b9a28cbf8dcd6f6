//! The process's allocator, mimalloc (see the workspace manifest for why), and the one
//! setting a role changes.

use std::ffi::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (mimalloc.h); libmimalloc-sys does
/// not name its options.
const PURGE_DELAY: c_int = 15;
/// mimalloc 3's default for it, in milliseconds. Any other value is the operator's
/// `MIMALLOC_PURGE_DELAY` or another mimalloc, and is left alone.
const MIMALLOC3_PURGE_DELAY: c_long = 1000;
/// mimalloc 2's default, which a scraper node goes back to.
const SHORT_PURGE_DELAY: c_long = 10;

/// mimalloc 3 keeps memory a thread frees for a second before it gives it back to the
/// system (mimalloc 2: 10 ms). A scraper node frees a page's body, DOM and text a thousand
/// times a second on every core, and held that long they were a sixth of its peak memory:
/// 82-87 MiB against 69-73 MiB in `scripts/bench-crawl`, its pages per second the same
/// within the noise. Streams keep the long delay: their large buffers are reused at once.
#[allow(unsafe_code)]
pub(crate) fn release_freed_memory_sooner() {
    // SAFETY: both calls only read or write one of mimalloc's option cells, which mimalloc
    // allows at any time; the index is checked against its known default before it is set.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == MIMALLOC3_PURGE_DELAY {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, SHORT_PURGE_DELAY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn the_option_is_mimalloc_3s_purge_delay() {
        // SAFETY: as above.
        let delay = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        // The index names the purge delay of the mimalloc built in: its default, unless the
        // environment set it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(delay(), MIMALLOC3_PURGE_DELAY);
        }
        release_freed_memory_sooner();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(delay(), SHORT_PURGE_DELAY);
        }
    }
}
