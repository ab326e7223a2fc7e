"""Compare what a simulator sent with what an emulator stored: exact, once, in order?

Each stored recording is located in the sent sample stream (it must equal a slice of it
exactly); then the summary says how many sent samples arrived, how many arrived more than
once, which never arrived, and whether any recording matched nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KEY = 12  # samples used to look a recording up in the sent stream


@dataclass
class Reconciliation:
    """The outcome of reconcile()."""

    sent: int
    stored: int
    recordings: int
    delivered: int  # distinct sent samples found in recordings
    duplicates: int  # stored samples that repeat a sample already delivered
    unmatched: int  # recordings equal to no slice of the sent stream
    missing_ranges: list[tuple[int, int]] = field(default_factory=list)  # (first index, count) never delivered
    positions: list[int] = field(default_factory=list)  # where each recording starts in the sent stream (-1: nowhere)
    in_order: bool = True

    @property
    def missing(self) -> int:
        """Sent samples never delivered."""
        return sum(n for _, n in self.missing_ranges)

    @property
    def exact(self) -> bool:
        """Every sent sample arrived, exactly, once, in order."""
        return self.delivered == self.sent and not self.duplicates and not self.unmatched and self.in_order

    def as_dict(self) -> dict:
        """For JSON summaries."""
        return {"samples_sent": self.sent, "samples_stored": self.stored, "recordings": self.recordings,
                "samples_delivered": self.delivered, "duplicate_samples": self.duplicates,
                "missing_samples": self.missing, "missing_ranges": self.missing_ranges,
                "unmatched_recordings": self.unmatched, "in_order": self.in_order, "bit_exact": self.exact}


def reconcile(sent: np.ndarray, recordings: list[np.ndarray]) -> Reconciliation:
    """Locate each recording (in upload order) in the sent stream and summarise."""
    sent = np.ascontiguousarray(sent, dtype=np.int64)
    index: dict[bytes, list[int]] | None = None
    covered = np.zeros(len(sent), dtype=bool)
    out = Reconciliation(len(sent), sum(len(r) for r in recordings), len(recordings), 0, 0, 0)
    expected_next = 0
    last = -1
    for rec in recordings:
        rec = np.asarray(rec, dtype=np.int64)
        n = len(rec)
        pos = -1
        if expected_next + n <= len(sent) and np.array_equal(sent[expected_next:expected_next + n], rec):
            pos = expected_next  # the common case: right after the previous recording
        elif n >= KEY:
            if index is None:
                windows = np.lib.stride_tricks.sliding_window_view(sent, KEY)
                index = {}
                for i, row in enumerate(windows):
                    index.setdefault(row.tobytes(), []).append(i)
            for cand in index.get(rec[:KEY].tobytes(), []):
                if cand + n <= len(sent) and np.array_equal(sent[cand:cand + n], rec):
                    pos = cand
                    if cand >= expected_next:
                        break
        else:
            hits = [i for i in range(len(sent) - n + 1) if np.array_equal(sent[i:i + n], rec)]
            pos = next((i for i in hits if i >= expected_next), hits[0] if hits else -1)
        out.positions.append(pos)
        if pos < 0:
            out.unmatched += 1
            continue
        if pos < last:
            out.in_order = False
        last = pos
        out.duplicates += int(covered[pos:pos + n].sum())
        covered[pos:pos + n] = True
        expected_next = pos + n
    out.delivered = int(covered.sum())
    # Runs of samples never delivered.
    missing = np.flatnonzero(~covered)
    if len(missing):
        breaks = np.flatnonzero(np.diff(missing) > 1)
        starts = np.concatenate(([missing[0]], missing[breaks + 1]))
        ends = np.concatenate((missing[breaks], [missing[-1]]))
        out.missing_ranges = [(int(a), int(b - a + 1)) for a, b in zip(starts, ends)]
    return out
