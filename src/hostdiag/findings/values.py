"""Reading numbers out of snapshot sections and rates, and writing them in titles.

Sections may be missing, ``None`` or of the wrong type in a damaged stored
snapshot; these helpers give ``None`` then, so that a rule says nothing
instead of raising.
"""


def num(value):
    """``value`` when it is an int or float (not a bool), else None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def get(data, *keys):
    """data[k1][k2]... for dicts (or attributes of the snapshot's typed
    sections); None where a level is missing."""
    for key in keys:
        if data is None:
            return None
        data = data.get(key) if isinstance(data, dict) else getattr(data, key, None)
    return data


def rounded(value):
    """A number to two decimals (ints unchanged); None for a non-number."""
    value = num(value)
    return round(value, 2) if isinstance(value, float) else value


def show(value):
    """A threshold or measurement for a title: 20 not 20.0, 2.5 stays."""
    value = num(value)
    if value is None:
        return "?"
    if float(value).is_integer():
        return "%d" % value
    return "%.3g" % value if abs(value) < 10 else "%.0f" % value
