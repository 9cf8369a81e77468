"""The rule every rate of this layer follows for a cumulative counter: its
growth between two readings, or None when a reading is missing or not a
number, or when the counter went backwards (a wrap, a reset, a recreated
object). Never a negative or huge value."""


def is_number(value):
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def get(data, *keys):
    """data[k1][k2]..., or None where any level is missing or not a dict."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def growth(a, b):
    """``b - a`` for a counter that read ``a`` then ``b``; None when either is
    not a number or the counter went backwards."""
    if not is_number(a) or not is_number(b) or b < a:
        return None
    return b - a
