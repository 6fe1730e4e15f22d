"""A model of TensorFlow's BFC allocator: which chunk each request gets, and bytes in use.

tensorflow/core/common_runtime/bfc_allocator.cc, simplified: sizes round up to 256 bytes;
free chunks sit in 21 power-of-two bins and a request takes the smallest fitting chunk
(lowest address on ties); a chunk is split only when it is at least twice the request (or
128 MiB larger), so a request can hold up to twice its size; freed chunks merge with free
neighbours in the same region; with allow_growth (TF's CPU BFC allocator) the first region
is 2 MiB and every new region doubles the region size. `profilers.trace replay` runs a
traced process's requests through this model and checks its chunk sizes and bytes in use
against TensorFlow's at every event.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from estimator.costs import align_up
from estimator.units import MIB as MIB

BFC_ALIGNMENT = 256  # kMinAllocationSize
BFC_BINS = 21  # kNumBins
BFC_INITIAL_REGION = 2 * MIB  # allow_growth's first region
BFC_MAX_INTERNAL_FRAGMENTATION = 128 * MIB  # split a chunk at least this much too large


@dataclass(slots=True)  # thousands per estimate: slots make them cheaper to make and read
class Chunk:
    """A contiguous piece of one region, free or handed out."""

    addr: int
    size: int
    region_end: int
    free: bool = True
    prev: Chunk | None = None
    next: Chunk | None = None


def _absorb(chunk: Chunk, after: Chunk) -> None:
    """Merge `after`, the chunk right after `chunk` in its region, into `chunk`."""
    chunk.size += after.size
    chunk.next = after.next
    if after.next is not None:
        after.next.prev = chunk


def bin_index(size: int) -> int:
    """The free-list bin of a chunk size: log2 of its 256-byte units, capped."""
    return min(max(size // BFC_ALIGNMENT, 1).bit_length() - 1, BFC_BINS - 1)


def rounded_request(size: int) -> int:
    return align_up(max(size, 1), BFC_ALIGNMENT)


def largest_chunk(size: int) -> int:
    """The largest chunk a request of `size` bytes can be handed: a free chunk at least
    twice the rounded request or 128 MiB larger than it is split (FindChunkPtr's
    SplitChunk), so an unsplit chunk is smaller than both, in 256-byte units."""
    rounded = rounded_request(size)
    return min(2 * rounded, rounded + BFC_MAX_INTERNAL_FRAGMENTATION) - BFC_ALIGNMENT


class Bfc:
    """Best-fit with coalescing, TF's BFCAllocator without its statistics and limits."""

    def __init__(self) -> None:
        self.region_bytes = BFC_INITIAL_REGION
        self.next_region = 0
        self.bins: list[list[tuple[int, int]]] = [[] for _ in range(BFC_BINS)]
        self.free_chunks: dict[int, Chunk] = {}
        self.in_use = 0  # bytes of the chunks handed out (what get_memory_info reports)

    def _add_free(self, chunk: Chunk) -> None:
        chunk.free = True
        self.free_chunks[chunk.addr] = chunk
        bisect.insort(self.bins[bin_index(chunk.size)], (chunk.size, chunk.addr))

    def _take_free(self, chunk: Chunk) -> None:
        entries = self.bins[bin_index(chunk.size)]
        del entries[bisect.bisect_left(entries, (chunk.size, chunk.addr))]
        del self.free_chunks[chunk.addr]
        chunk.free = False

    def _find(self, rounded: int) -> Chunk | None:
        for entries in self.bins[bin_index(rounded) :]:
            i = bisect.bisect_left(entries, (rounded,))
            if i == len(entries):
                continue
            chunk = self.free_chunks[entries[i][1]]
            self._take_free(chunk)
            slack = chunk.size - rounded
            if chunk.size >= 2 * rounded or slack >= BFC_MAX_INTERNAL_FRAGMENTATION:
                rest = Chunk(chunk.addr + rounded, slack, chunk.region_end, True, chunk, chunk.next)
                if chunk.next is not None:
                    chunk.next.prev = rest
                chunk.next, chunk.size = rest, rounded
                self._add_free(rest)
            return chunk
        return None

    def _extend(self, rounded: int) -> None:
        grown = False
        while rounded > self.region_bytes:
            self.region_bytes *= 2
            grown = True
        # the sub-allocator's regions come from mmap, which hands out addresses top-down:
        # every new region lies below the earlier ones (and is never merged with them)
        self.next_region -= 2 * self.region_bytes
        start = self.next_region
        self._add_free(Chunk(start, self.region_bytes, start + self.region_bytes))
        if not grown:
            self.region_bytes *= 2

    def allocate(self, size: int) -> Chunk:
        """The chunk a request of `size` bytes gets (a new region when none fits)."""
        rounded = rounded_request(size)
        chunk = self._find(rounded)
        if chunk is None:
            self._extend(rounded)
            chunk = self._find(rounded)
            assert chunk is not None
        self.in_use += chunk.size
        return chunk

    def release(self, chunk: Chunk) -> None:
        """Free a chunk and merge it with free neighbours of its region."""
        self.in_use -= chunk.size
        after = chunk.next
        if after is not None and after.free:
            self._take_free(after)
            _absorb(chunk, after)
        before = chunk.prev
        if before is not None and before.free:
            self._take_free(before)
            _absorb(before, chunk)
            chunk = before
        self._add_free(chunk)
