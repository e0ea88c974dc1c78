"""Decoded images a dataset keeps between reads.

Decoding is most of a loader's work on large photographs: a 1920 x 1080
JPEG costs 10 to 30 ms of CPU even decoded at an eighth of its size
(Pillow's draft mode saves the inverse transforms, not the reading of the
compressed data), while a training step at a shorter side of 112 pixels
spends about 50 ms an image. :class:`DecodedCache` keeps what was decoded:

* **kept**: every image decoded, until the byte budget is spent (then no
  more; nothing is evicted). Under shuffled epochs this keeps a fixed share
  of the set, budget / set, from the second epoch on, where a
  least-recently-used rule under a random order keeps less. At the
  default's scale an image decoded for a shorter side of 112 is about
  100 KB, so the default budget keeps about 2,500 of them;
* **recent**: the last few images that did not fit, whatever their size:
  the windows of one photograph cut in one batch decode it once.

Arrays are stored read-only: a reader that changed one in place would
change the next epoch's image, and raises instead.
"""
import collections

__all__ = ["DecodedCache", "CACHE_BYTES"]

#: The default byte budget of a dataset's kept images (its loader divides
#: it among its worker processes, each of which keeps its own).
CACHE_BYTES = 256 * 2 ** 20
#: Images kept past the budget, the most recent first.
_RECENT = 3


class DecodedCache:
    """``index -> (pixels (h, w, 3) uint8, (height, width))`` of decoded
    images, within ``budget`` bytes of pixels (0 keeps only the recent)."""

    def __init__(self, budget=CACHE_BYTES):
        if int(budget) != budget or budget < 0:
            raise ValueError(f"cache budget must be a whole number of bytes >= 0, got "
                             f"{budget!r}")
        self.budget, self.used = int(budget), 0
        self._kept = {}
        self._recent = collections.OrderedDict()

    def __len__(self):
        return len(self._kept) + len(self._recent)

    def get(self, index):
        """The entry of ``index``, or ``None``."""
        if index in self._kept:
            return self._kept[index]
        if index in self._recent:
            self._recent.move_to_end(index)
            return self._recent[index]
        return None

    def put(self, index, pixels, size):
        """Keep ``pixels`` (made read-only) of image ``index`` of its own
        ``size``; returns the entry."""
        pixels.flags.writeable = False
        entry = (pixels, size)
        if self.used + pixels.nbytes <= self.budget:
            self._kept[index] = entry
            self.used += pixels.nbytes
            return entry
        self._recent[index] = entry
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return entry

    def __getstate__(self):
        """A copy for a worker process starts empty (each keeps its own)."""
        return dict(budget=self.budget, used=0, _kept={},
                    _recent=collections.OrderedDict())
