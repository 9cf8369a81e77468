"""Time with no sample in a history: agent down, host rebooted, clock moved.

A sequence gap (seqs missing inside one boot) says records were lost; a time
gap says no record was taken at all: an agent killed for four seconds
leaves the seqs whole (the next agent of the same boot carries on from the
newest kept seq) and only the wall clock shows the hole. This module finds
both over a list of :class:`Point` (one per kept record, in the order kept:
boot by boot, seq ascending) and names the cause where the records show it.

Pure: plain data in, plain data out; times are nanoseconds since the epoch
(wall) or of CLOCK_MONOTONIC (mono), intervals are seconds.
"""

from collections import namedtuple

NS = 1_000_000_000

#: A time gap is more than this many sampling intervals without a sample.
GAP_INTERVALS = 2.0

Point = namedtuple("Point", "boot_id seq wall_ns mono_ns started_ns")
Point.__doc__ = """One kept record: its boot, seq, wall and monotonic clocks
(ns) and the wall time (ns) its agent started, None where unknown."""

#: Causes a gap can be given, and what they mean in one phrase.
CAUSES = {
    "new_boot": "the host booted again",
    "restart": "the agent started again (same boot)",
    "clock_jump": "the wall clock moved",
    "corrupt": "records damaged on disk, skipped",
    "not_kept": "records taken but not kept (retention or a full disk)",
    "unknown": "no sample taken (agent stalled, stopped or suspended)",
}


def typical_interval(points):
    """The median of the positive wall-clock steps between consecutive records
    of one boot, in seconds; None with fewer than two such steps."""
    steps = sorted((b.wall_ns - a.wall_ns) / NS for a, b in zip(points, points[1:])
                   if a.boot_id == b.boot_id and b.wall_ns > a.wall_ns)
    if not steps:
        return None
    return steps[len(steps) // 2]


def _cause(before, after, interval_s, seq_reasons):
    if before.boot_id != after.boot_id:
        return "new_boot"
    if after.started_ns is not None and after.started_ns > before.wall_ns:
        return "restart"
    if before.mono_ns is not None and after.mono_ns is not None:
        drift = (after.wall_ns - before.wall_ns) - (after.mono_ns - before.mono_ns)
        if abs(drift) > interval_s * NS:
            return "clock_jump"
    if after.seq > before.seq + 1:
        return seq_reasons.get((before.boot_id, before.seq + 1), "not_kept")
    return "unknown"


def find_gaps(points, interval_s=None, seq_reasons=None, intervals=GAP_INTERVALS):
    """Every stretch between two consecutive points that is a gap, oldest
    first: seqs missing inside one boot, more than ``intervals`` ×
    ``interval_s`` seconds of wall time between them, or the wall clock going
    backwards. ``interval_s`` None: :func:`typical_interval`. ``seq_reasons``
    maps (boot_id, first missing seq) to a known cause ("corrupt", ...).

    Each gap: {"boot_id", "after_seq", "before_seq" (the records around it),
    "from_seq", "to_seq" (the missing seqs, None when none are), "start_ns",
    "end_ns" (wall time of the records around it), "seconds" (end - start),
    "cause" (a key of :data:`CAUSES`), "next_boot_id"}."""
    seq_reasons = seq_reasons or {}
    if interval_s is None:
        interval_s = typical_interval(points)
    out = []
    for before, after in zip(points, points[1:]):
        same_boot = before.boot_id == after.boot_id
        missing = same_boot and after.seq > before.seq + 1
        step_s = (after.wall_ns - before.wall_ns) / NS
        late = interval_s is not None and step_s > intervals * interval_s
        if not (missing or late or step_s < 0 or not same_boot):
            continue
        if not same_boot and not late and step_s >= 0:
            continue  # a new boot sampled right away: nothing is missing
        out.append({
            "boot_id": before.boot_id, "next_boot_id": after.boot_id,
            "after_seq": before.seq, "before_seq": after.seq,
            "from_seq": before.seq + 1 if missing else None, "to_seq": after.seq - 1 if missing else None,
            "start_ns": before.wall_ns, "end_ns": after.wall_ns, "seconds": step_s,
            "cause": "clock_jump" if step_s < 0 else _cause(before, after, interval_s or 0.0, seq_reasons),
        })
    return out


def gap_at(gaps, wall_ns):
    """The gap whose open interval (start_ns, end_ns) holds ``wall_ns``, or None."""
    for gap in gaps:
        if gap["start_ns"] < wall_ns < gap["end_ns"]:
            return gap
    return None
