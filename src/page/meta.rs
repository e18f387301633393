//! Meta page (page 0): root, page count, free list head, key count.
