"""Where a trace goes on its device: the working set (bytes touched at least once) and how concentrated the IOs
are on the hottest extents, both in bounded memory.

Working set: the device is cut into units of ``unit`` bytes (4 KiB to begin with); a unit counts once any IO
touches any byte of it. Touched units are marked in pages of one byte per unit (64 Ki units), allocated only
where IOs go. When the pages would take more than MAX_MAP bytes, the unit doubles (pairs of units merged)
before any new page is made, so the figure is exact at the unit it reports (``unit_bytes``): it overstates
the bytes touched by less than one unit per touched unit. (A trace scattered over 4 TiB ends with 256 KiB
units; one that stays within 256 GiB keeps 4 KiB units.)

Hot extents: IOs counted per extent of ``extent`` bytes (1 MiB to begin with), by the extent of their first
byte; when more than MAX_EXTENTS extents are touched, the extent doubles (pairs merged). The report gives
the share of IOs on the hottest 1 %, 10 % and 20 % of the touched extents and how many extents take 50, 80
and 90 % of the IOs: exact at the extent size it reports.
"""

from collections import Counter
from itertools import repeat
from operator import add, and_, or_, rshift, sub

UNIT = 4096
PAGE_SHIFT = 16
PAGE_UNITS = 1 << PAGE_SHIFT  # units per page: a page is 64 KiB of memory
ONES = b"\1" * PAGE_UNITS
MAX_MAP = 64 << 20  # bytes of pages at most
EXTENT = 1 << 20
MAX_EXTENTS = 1 << 16


class WorkingSet:
    """Units touched: ``add(sectors, nbytes)`` per chunk, ``figures()`` at the end."""

    def __init__(self, unit=UNIT):
        self.shift = unit.bit_length() - 1 - 9  # sectors -> units
        self.pages = {}

    @property
    def unit(self):
        return 512 << self.shift

    def add(self, sectors, nbytes):
        """IOs with data (``nbytes`` > 0)."""
        while True:
            shift = self.shift
            firsts = list(map(rshift, sectors, repeat(shift)))
            lasts = list(map(rshift, map(add, sectors, map(rshift, map(sub, nbytes, repeat(1)), repeat(9))),
                             repeat(shift)))
            spans = [(a >> PAGE_SHIFT, b >> PAGE_SHIFT) for a, b in zip(firsts, lasts) if b >> PAGE_SHIFT
                     != a >> PAGE_SHIFT]
            needed = set(map(rshift, firsts, repeat(PAGE_SHIFT))).union(*(range(a, b + 1) for a, b in spans))
            if len(needed.union(self.pages)) * PAGE_UNITS <= MAX_MAP:
                break
            self._coarser()  # before any page is made: memory never goes past MAX_MAP
        if firsts == lasts and len(needed) == 1:  # one unit each, one page
            p = self._page(firsts[0] >> PAGE_SHIFT)
            for u in map(and_, firsts, repeat(PAGE_UNITS - 1)):
                p[u] = 1
            return
        for a, b in zip(firsts, lasts):
            while a <= b:
                page = a >> PAGE_SHIFT
                at = a & (PAGE_UNITS - 1)
                end = b - (page << PAGE_SHIFT) if b >> PAGE_SHIFT == page else PAGE_UNITS - 1
                self._page(page)[at:end + 1] = ONES[: end + 1 - at]
                a = (page << PAGE_SHIFT) + end + 1

    def _page(self, page):
        p = self.pages.get(page)
        if p is None:
            p = self.pages[page] = bytearray(PAGE_UNITS)
        return p

    def _coarser(self):
        """Double the unit: units 2k and 2k+1 become unit k (pages 2j and 2j+1 become page j)."""
        merged = {}
        half = PAGE_UNITS // 2
        for page, p in self.pages.items():
            target = merged.setdefault(page >> 1, bytearray(PAGE_UNITS))
            at = (page & 1) * half
            target[at:at + half] = bytes(map(or_, p[0::2], p[1::2]))
        self.pages = merged
        self.shift += 1

    def figures(self):
        units = sum(p.count(1) for p in self.pages.values())
        return {"bytes": units * self.unit, "unit_bytes": self.unit, "units": units}


class HotExtents:
    """IOs per extent: ``add(sectors)`` per chunk, ``figures()`` at the end."""

    def __init__(self, extent=EXTENT):
        self.shift = extent.bit_length() - 1 - 9
        self.counts = Counter()

    @property
    def extent(self):
        return 512 << self.shift

    def add(self, sectors):
        self.counts.update(map(rshift, sectors, repeat(self.shift)))
        while len(self.counts) > MAX_EXTENTS:
            merged = Counter()
            for k, v in self.counts.items():
                merged[k >> 1] += v
            self.counts = merged
            self.shift += 1

    def figures(self):
        hot = sorted(self.counts.values(), reverse=True)
        total = sum(hot)
        out = {"extent_bytes": self.extent, "touched": len(hot)}
        if not total:
            return dict(out, top_1pct=None, top_10pct=None, top_20pct=None, extents_for_50pct=None,
                        extents_for_80pct=None, extents_for_90pct=None)
        for pct in (1, 10, 20):
            n = max(1, -(-len(hot) * pct // 100))
            out[f"top_{pct}pct"] = round(sum(hot[:n]) / total, 6)
        running, k = 0, 0
        needs = {}
        for pct in (50, 80, 90):
            while running * 100 < total * pct:
                running += hot[k]
                k += 1
            needs[pct] = k
        for pct, k in needs.items():
            out[f"extents_for_{pct}pct"] = k
        return out
