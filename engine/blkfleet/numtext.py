"""Numbers as people read them: in the tables and summaries the commands print and in the report's plots.

One formatter, ``number``, for every such place (compare's table, results list, regress's Markdown verdict, the
report's tables and axis labels), so that the same figure reads the same everywhere.
"""


def number(value, digits=1, unit="", missing="-", grouped=False, short=False):
    """``value`` as text, ``unit`` appended; ``missing`` for None.

    An int is written as it is, a float with ``digits`` decimals. ``grouped`` (wide tables): thousands separators,
    no decimals from 100,000 up, three significant digits below 0.01 (a small p or sd). ``short`` (axis labels):
    three significant digits with a k, M or G suffix (1.5k, 2M, 0.25).
    """
    if value is None:
        return missing
    if short:
        text = _short(value)
    elif isinstance(value, int):
        text = f"{value:,}" if grouped else str(value)
    elif grouped:
        text = f"{value:.3g}" if 0 < abs(value) < 0.01 else f"{value:,.{0 if abs(value) >= 1e5 else digits}f}"
    else:
        text = f"{value:.{digits}f}"
    return text + unit


def _short(value):
    if value == 0:
        return "0"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"
