"""`NameFilter`: a fixed-size Bloom filter of the names a bulk run has met (for `count_seen`).

It answers "certainly never met" or "maybe met": a store that counts names in a database asks
the database only for the second (and for names it has not written there yet, in batches), so
the first mention of a name, nearly every row of an import, costs no round trip. Its memory is
fixed (`bits` / 8 bytes) whatever the input; past about a tenth of `bits` names, "maybe" grows
common and the store simply asks more often: never a wrong count.
"""

from __future__ import annotations

__all__ = ["NameFilter"]

_PROBES = 7  # bits set per name: the fewest false "maybe"s at 10 bits per name


class NameFilter:
    """The names met so far, as bits: `add` answers whether the name may have been met before."""

    def __init__(self, bits: int = 1 << 25) -> None:
        if bits < 64 or bits & (bits - 1):
            raise ValueError(f"bits must be a power of two of at least 64, got {bits!r}")
        self._mask = bits - 1
        self._bits = bytearray(bits // 8)

    def __contains__(self, name: object) -> bool:
        """Whether `name` may have been noted (False: certainly not)."""
        if not isinstance(name, str):
            return False
        bits, mask = self._bits, self._mask
        first, second = hash(name), hash((name, _PROBES)) | 1
        return all(
            bits[(at := (first + probe * second) & mask) >> 3] & (1 << (at & 7))
            for probe in range(_PROBES)
        )

    def add(self, name: str) -> bool:
        """Note `name`; False when it was certainly never noted before, True when it may have."""
        # Two hashes combined (Kirsch-Mitzenmacher): `hash` of a str is fast and, within one
        # process, stable, which is all a filter of one run needs.
        first = hash(name)
        second = hash((name, _PROBES)) | 1
        seen = True
        bits, mask = self._bits, self._mask
        for probe in range(_PROBES):
            at = (first + probe * second) & mask
            byte, bit = at >> 3, 1 << (at & 7)
            if not bits[byte] & bit:
                seen = False
                bits[byte] |= bit
        return seen

    def clear(self) -> None:
        """Forget every name (a new run)."""
        self._bits = bytearray(len(self._bits))
