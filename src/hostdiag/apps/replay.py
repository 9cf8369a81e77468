"""`diag replay`: step through an agent's or a collector store's history on
the `diag top` screen (:mod:`hostdiag.views.top`).

    diag replay --from -30m [--to TIME] [--agent ADDRESS | --store DIR --host H]

Keys: ``,`` or Left one sample back, ``.`` or Right one forward, ``[`` and
``]`` a minute back and forward, ``p`` and ``n`` the previous and next
sample where a finding starts (one the sample before did not have), plus
the sort and filter keys of `diag top`; q quits. The header names the
record, its time, the time since the sample before and any gap
(:mod:`hostdiag.derive.gaps`) between them.

The records of the range are read once for their times (the timeline);
each frame then reads its record, the one before for the rates and the
nearest with the process table, as `diag show` does.

Exit codes (:mod:`hostdiag.apps.common`): 0 done; 1 nothing kept in the
range, or no agent/store; 2 bad usage, one line.
"""

import sys
import time
from collections import OrderedDict

from hostdiag.apps.common import EXIT_OK, ArgumentParser, CommandFailed, UsageError, run_command
from hostdiag.apps.history import protect_relative, time_option
from hostdiag.apps.history_readers import (Moment, add_source_options, nearest_tables, open_history, record_interval,
                                           record_point)
from hostdiag.derive.gaps import find_gaps
from hostdiag.views.history import gap_cause
from hostdiag.views.timefmt import NS, format_span, format_time
from hostdiag.views.top import TopState, render_screen, run_screen

#: Frames kept built (each holds a snapshot or two): stepping back and forth is instant.
FRAME_CACHE = 16

#: Samples looked through for the next or previous finding before giving up.
FINDING_SCAN = 3600

#: What ``[`` and ``]`` jump, in seconds.
JUMP_S = 60.0

REPLAY_HINTS = ", . step  [ ] min  p n finding  / filter  q quit"

_BACK, _FORWARD = (ord(","), 260), (ord("."), 261)  # 260, 261: curses KEY_LEFT, KEY_RIGHT


def new_finding_index(ids_of, start, stop, step):
    """The first index i from ``start`` towards ``stop`` (exclusive, by
    ``step`` of +1 or -1) where ``ids_of(i)`` holds an id ``ids_of(i - 1)``
    does not (index 0 counts its ids as new); None when there is none."""
    for i in range(start, stop, step):
        if i < 0:
            break
        if ids_of(i) - (ids_of(i - 1) if i > 0 else set()):
            return i
    return None


class Replay:
    """A position in the timeline of a history and the frame there."""

    def __init__(self, history, timeline):
        self.history = history
        self.timeline = timeline
        self.index = 0
        self.note = None
        self.frames = OrderedDict()
        self.finding_ids = {}

    def moment(self, index):
        point = self.timeline[index]
        record = self.history.get(point.boot_id, point.seq)
        if record is None:
            raise CommandFailed("%s no longer keeps seq %d of boot %s" % (self.history.label(), point.seq,
                                                                         point.boot_id))
        previous = None
        if index > 0 and self.timeline[index - 1].boot_id == point.boot_id:
            before = self.timeline[index - 1]
            previous = self.history.get(before.boot_id, before.seq)
        return Moment(record.wall_ns, record, previous, None, nearest_tables(self.history, record))

    def frame(self, index):
        if index in self.frames:
            self.frames.move_to_end(index)
            return self.frames[index]
        moment = self.moment(index)
        self.finding_ids[index] = {f.get("id") for f in moment.findings}
        frame = {"snapshot": moment.snapshot.to_dict(), "rates": moment.rates, "findings": moment.findings,
                 "source": self.history.label(), "position": self._position(index, moment)}
        self.frames[index] = frame
        if len(self.frames) > FRAME_CACHE:
            self.frames.popitem(last=False)
        return frame

    def _position(self, index, moment):
        """``seq 12 (12/30) 16:13:56.317 +1.2s GAP: cause``: the record, where it
        is in the range, its time of day and the step from the sample before."""
        stamp = format_time(moment.record.wall_ns)[11:23]  # the time of day to the ms; the date is on top
        text = "seq %d (%d/%d) %s" % (moment.record.seq, index + 1, len(self.timeline), stamp)
        if index == 0:
            return text + " start of the range"
        before, here = self.timeline[index - 1], self.timeline[index]
        text += " +%s" % format_span((here.wall_ns - before.wall_ns) / NS)
        interval = record_interval(self.history, moment.record)
        for gap in find_gaps([before, here], interval):
            text += " GAP: %s" % gap_cause(gap)
        return text

    def current(self):
        frame = dict(self.frame(self.index))
        frame["note"] = frame["position"] + ("  (%s)" % self.note if self.note else "")
        frame["status"] = "replay " + format_time(self.timeline[self.index].wall_ns)[:10]
        return frame

    def _ids(self, index):
        if index not in self.finding_ids:
            self.frame(index)
        return self.finding_ids[index]

    def navigate(self, key):
        """Move for a replay key; True when the key was one."""
        self.note = None
        if key in _BACK or key in _FORWARD:
            self.index = max(0, min(len(self.timeline) - 1, self.index + (1 if key in _FORWARD else -1)))
        elif key in (ord("["), ord("]")):
            self.index = self.index_at(self.timeline[self.index].wall_ns
                                       + int((JUMP_S if key == ord("]") else -JUMP_S) * NS))
        elif key in (ord("n"), ord("p")):
            forward = key == ord("n")
            stop = (min(len(self.timeline), self.index + 1 + FINDING_SCAN) if forward
                    else max(-1, self.index - 1 - FINDING_SCAN))
            found = new_finding_index(self._ids, self.index + (1 if forward else -1), stop, 1 if forward else -1)
            if found is None:
                self.note = "no finding starts %s this sample" % ("after" if forward else "before")
            else:
                self.index = found
        else:
            return False
        return True

    def index_at(self, wall_ns):
        """The index of the last sample at or before ``wall_ns`` (the first
        when none is)."""
        best = 0
        for i, point in enumerate(self.timeline):
            if point.wall_ns <= wall_ns:
                best = i
        return best


def build_parser():
    parser = ArgumentParser(prog="diag replay", description="Step through history on the diag top screen. Keys: "
                            ", . one sample, [ ] a minute, p n the previous/next finding, c m i f sort, / filter, "
                            "q quit.")
    parser.add_argument("--from", dest="since", default="-30m", metavar="TIME",
                        help="the start of the range (default -30m); ISO-8601, epoch seconds or relative")
    parser.add_argument("--to", dest="until", default="now", metavar="TIME", help="its end (default now)")
    parser.add_argument("--at", metavar="TIME", help="start at the sample at or before TIME (default: the first)")
    parser.add_argument("--once", action="store_true", help="print the first screen and exit; no terminal needed")
    add_source_options(parser)
    return parser


def main_replay(argv):
    """`diag replay`: the exit code."""
    def body():
        args = build_parser().parse_args(protect_relative(argv))
        now = time.time_ns()
        from_ns, to_ns = time_option("--from", args.since, now), time_option("--to", args.until, now)
        if from_ns > to_ns:
            raise UsageError("--from (%s) is after --to (%s)" % (format_time(from_ns), format_time(to_ns)))
        at_ns = time_option("--at", args.at, now) if args.at else None
        if not args.once and not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise UsageError("the replay screen needs a terminal; --once prints one screen")
        history = open_history(args)
        try:
            timeline = [record_point(r) for r in history.records_between(from_ns, to_ns)]
            if not timeline:
                raise CommandFailed("%s keeps nothing from %s to %s" % (history.label(), format_time(from_ns),
                                                                       format_time(to_ns)))
            replay = Replay(history, timeline)
            if at_ns is not None:
                replay.index = replay.index_at(at_ns)
            state = TopState(1.0)
            if args.once:
                sys.stdout.write("\n".join(render_screen(replay.current(), state, 80, 40, REPLAY_HINTS)) + "\n")
            else:
                run_screen(replay.current, state, navigate=replay.navigate, hints=REPLAY_HINTS)
        finally:
            history.close()
        return EXIT_OK

    return run_command("diag replay", body)
