"""One metric over a range of history, in time buckets: what `diag history
--metric PATH --every 1m` prints (sar-style), plots and writes as SVG.

A metric is named by a dotted path. ``rates.`` first names a key of the
rates of two consecutive records (:func:`hostdiag.derive.rates.derive_rates`:
``rates.cpu.total.busy_pct``, ``rates.disks.vda.util_pct``,
``rates.network.links.eth0.rx_bits_per_s``); anything else names a key of the
snapshot as plain data (``memory.meminfo.MemAvailable``,
``pressure.cpu.some.avg10``). A step into a list picks the element whose
``name`` (or ``mountpoint``, ``device``) is that step, or the element at that
index (``disks.vda.sectors_read``, ``cpu.load.0``).

Pure: plain data in and out. Times are nanoseconds since the epoch, bucket
widths seconds.
"""

from math import ceil

NS = 1_000_000_000

#: The most buckets one range may have (a bound on memory and on output).
MAX_BUCKETS = 10_000

RATES_PREFIX = "rates."

_LIST_KEYS = ("name", "mountpoint", "device")


def _step(data, key):
    if isinstance(data, dict):
        return data.get(key)
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and any(item.get(k) == key for k in _LIST_KEYS):
                return item
        if key.isdigit() and int(key) < len(data):
            return data[int(key)]
    return None


def lookup(data, path):
    """The number at dotted ``path`` inside ``data`` (dicts, lists), or None
    when a step is missing or the value is not a number (bool is not)."""
    for key in path.split("."):
        data = _step(data, key)
        if data is None:
            return None
    if isinstance(data, bool) or not isinstance(data, (int, float)):
        return None
    return data


def metric_value(snapshot, rates, path):
    """The value of a metric path (see the module doc) in one record's
    snapshot dict or in the rates dict ending at it (None: no rates)."""
    if path.startswith(RATES_PREFIX):
        return None if rates is None else lookup(rates, path[len(RATES_PREFIX):])
    return lookup(snapshot, path)


def numeric_paths(data, prefix=""):
    """Every dotted path to a number in ``data`` (dict keys; list elements by
    name, else index), for suggesting a metric path."""
    out = []
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = ((next((item[k] for k in _LIST_KEYS if isinstance(item, dict) and isinstance(item.get(k), str)),
                       str(i)), item) for i, item in enumerate(data))
    else:
        return out
    for key, value in items:
        path = "%s%s" % (prefix, key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out.append(path)
        else:
            out.extend(numeric_paths(value, path + "."))
    return out


def bucket_count(from_ns, to_ns, every_s):
    """How many buckets of ``every_s`` seconds cover from_ns..to_ns."""
    return max(1, ceil((to_ns - from_ns) / (every_s * NS)))


def bucketize(samples, from_ns, to_ns, every_s):
    """Buckets of ``every_s`` seconds from ``from_ns`` to ``to_ns``, each
    {"start_ns", "samples", "value" (the last sample in it), "min", "avg",
    "max"}; an empty bucket has 0 samples and None values. ``samples``:
    (wall_ns, value) in any order; those outside the range or None are left
    out. ValueError when ``every_s`` is not positive or the range would have
    more than :data:`MAX_BUCKETS` buckets."""
    if every_s <= 0:
        raise ValueError("the bucket width must be more than 0 seconds")
    count = bucket_count(from_ns, to_ns, every_s)
    if count > MAX_BUCKETS:
        raise ValueError("%d buckets of %gs; at most %d: give a wider --every or a shorter range"
                         % (count, every_s, MAX_BUCKETS))
    width_ns = every_s * NS
    grouped = [[] for _ in range(count)]
    for wall_ns, value in sorted(samples):
        if value is None or not from_ns <= wall_ns <= to_ns:
            continue
        grouped[min(count - 1, int((wall_ns - from_ns) // width_ns))].append(value)
    out = []
    for i, values in enumerate(grouped):
        bucket = {"start_ns": from_ns + int(i * width_ns), "samples": len(values),
                  "value": None, "min": None, "avg": None, "max": None}
        if values:
            bucket.update(value=values[-1], min=min(values), avg=sum(values) / len(values), max=max(values))
        out.append(bucket)
    return out


def summary(buckets):
    """{"samples", "min", "avg", "max"} over all the samples of ``buckets``
    (the average weighted by samples); None values when there are none."""
    full = [b for b in buckets if b["samples"]]
    total = sum(b["samples"] for b in full)
    if not total:
        return {"samples": 0, "min": None, "avg": None, "max": None}
    return {"samples": total, "min": min(b["min"] for b in full),
            "avg": sum(b["avg"] * b["samples"] for b in full) / total, "max": max(b["max"] for b in full)}
