"""Times and durations as the history views print them."""

import datetime

NS = 1_000_000_000


def format_time(ns):
    """Local ISO-8601 with milliseconds and the offset; "-" for None."""
    if ns is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ns / NS).astimezone()
    return moment.isoformat(timespec="milliseconds")


def format_span(seconds):
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return "%s%.1fs" % (sign, seconds)
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return "%s%dd%02dh%02dm" % (sign, days, hours, minutes)
    if hours:
        return "%s%dh%02dm%02ds" % (sign, hours, minutes, secs)
    return "%s%dm%02ds" % (sign, minutes, secs)

