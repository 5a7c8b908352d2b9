//! The broker's global allocator: the system allocator, except that very large blocks are
//! mapped with `MAP_NORESERVE`.
//!
//! Why: the generated Kafka codec reserves `Vec` capacity from the element count a request
//! declares, before it has checked that the bytes are there. A 16-byte frame declaring 2^31
//! topics asks for ~150 GB; the system allocator refuses and Rust aborts the process — one
//! hostile frame would kill the broker. Mapped with `MAP_NORESERVE`, such a block only
//! reserves address space; the decoder then fails on the missing bytes, the block is unmapped
//! untouched, and only that connection is closed. No legitimate allocation in raftka comes
//! near the threshold (frames are capped by `socket.request.max.bytes`, 100 MiB by default).

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are mapped lazily instead of taken from malloc.
const HUGE: usize = 1 << 30;
/// `mmap` returns page-aligned memory; larger alignments go to the system allocator.
const PAGE: usize = 4096;

/// See the module documentation.
pub struct GuardedAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map(size: usize, zeroed: bool) -> *mut u8 {
    let _ = zeroed; // anonymous mappings are always zero-filled
                    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every block is released by the allocator that made it: `dealloc` and `realloc`
// receive the layout the block was allocated with, and `is_huge` of that layout decides.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size(), false) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size(), true) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map` with this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_blocks_are_reserved_not_committed() {
        let a = GuardedAlloc;
        // 200 GB: more than this machine has, so malloc would fail.
        let layout = Layout::from_size_align(200 << 30, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 7; // touching one page commits only that page
            assert_eq!(*p, 7);
            let q = a.realloc(p, layout, 16);
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(16, 8).unwrap());
        }
    }
}
