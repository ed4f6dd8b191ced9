"""Duke CIVM headfile: the ``key=value`` text header of CIVM image series.

A headfile holds one ``key=value`` per line, split at the first ``=``; ``#`` starts a
comment line; lines end in LF, CRLF or a bare CR. Spaces inside keys become ``_`` (a
MATLAB writer emits ``PSD Name=``). Arrays are written ``N,v1 v2 ... vN`` (N values) or
``R:C,v1 ...`` (R rows of C values, e.g. ``bval_dir=3:1,x y z``); ``NO_KEY``,
``EMPTY_VALUE`` and ``UNDEFINED_VALUE`` mark a missing value. Conventions as used by the
Duke Center for In Vivo Microscopy pipeline (civmscripts ``read_headfile``/
``write_headfile``); see REFERENCES.md "Duke CIVM headfile and slices".
"""

from __future__ import annotations

import math
import numbers
import re

from napari_mrmicro.io._common import FormatError, atomic_output, read_text_header

#: Values that mean "no value".
MISSING = ("NO_KEY", "EMPTY_VALUE", "UNDEFINED_VALUE")
#: Where lines without ``=`` are kept (stripped, in file order).
UNPARSED = "_unparsed"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                    r"|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
_VECTOR = re.compile(r"([0-9]+),(.*)", re.DOTALL)
_MATRIX = re.compile(r"([0-9]+):([0-9]+),(.*)", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x19\x1b-\x1f]")
_MAX_DIGITS = 4000  # Python refuses int() of longer digit strings


def parse_value(text: str):
    """One headfile value: None, int, float, list, list of lists or the stripped string."""
    text = text.strip()
    matrix = _MATRIX.fullmatch(text)
    if matrix:
        rows, cols = int(matrix.group(1)), int(matrix.group(2))
        items = matrix.group(3).split()
        if len(items) == rows * cols and (rows == 0 or cols > 0):
            return [[_scalar(v) for v in items[r * cols:(r + 1) * cols]] for r in range(rows)]
        return text
    vector = _VECTOR.fullmatch(text)
    if vector:
        items = vector.group(2).split()
        if len(items) == int(vector.group(1)):
            return [_scalar(v) for v in items]
    return _scalar(text)


def _scalar(text: str):
    if text in MISSING:
        return None
    if len(text) <= _MAX_DIGITS:
        if _INT.fullmatch(text):
            return int(text)
        if _FLOAT.fullmatch(text) and not re.fullmatch(r"[+-]?0[0-9]+", text):
            return float(text)
    return text


def _key(text: str) -> str:
    return re.sub(r"\s+", "_", text.strip())


def parse_headfile(text: str, source="<text>") -> dict:
    """Parse headfile text into a dict, keys in file order (a repeated key keeps its last value).

    Lines that are neither blank, comments nor ``key=value`` are kept under
    ``"_unparsed"``. Raises :class:`FormatError` naming ``source`` for binary data or
    text without a single ``key=value`` line.
    """
    text = text.lstrip("\ufeff")
    printable = len(text) - text.count("\r") - text.count("\n")  # the same for any line ends
    if "\x00" in text or len(_CONTROL.findall(text)) > printable // 100:
        raise FormatError(source, "binary data where a headfile (key=value text) was "
                                  "expected")
    header, unparsed = {}, []
    for line in _LINE_BREAK.split(text):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped == "\x1a":
            continue
        key, sep, value = line.partition("=")
        key = _key(key)
        if sep and key and not key.startswith("#"):
            header[key] = parse_value(value)
        else:
            unparsed.append(stripped)
    if not header:
        raise FormatError(source, "no key=value line: not a headfile")
    if unparsed:
        header[UNPARSED] = unparsed
    return header


def read_headfile(path) -> dict:
    """Read and parse a headfile (see :func:`parse_headfile`)."""
    return parse_headfile(read_text_header(path), source=path)


def _text(value, where: str) -> str:
    """A scalar's headfile spelling."""
    if value is None:
        return "NO_KEY"
    if isinstance(value, bool):
        raise ValueError(f"{where}: booleans have no headfile form; store 0 or 1")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return float.__repr__(float(value))
    if isinstance(value, str):
        return value
    raise ValueError(f"{where}: {type(value).__name__} values have no headfile form")


def _value_text(value, where: str) -> str:
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(row, (list, tuple)) for row in value):
            cols = len(value[0])
            if any(len(row) != cols for row in value):
                raise ValueError(f"{where}: rows of different lengths")
            items = [_text(v, where) for row in value for v in row]
            return f"{len(value)}:{cols}," + " ".join(items)
        return f"{len(value)}," + " ".join(_text(v, where) for v in value)
    return _text(value, where)


def _same(a, b) -> bool:
    """Equal in value and type (1 is not 1.0, NaN equals NaN)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    kind = lambda v: (bool if isinstance(v, bool) else int if isinstance(v, numbers.Integral)  # noqa: E731
                      else float if isinstance(v, numbers.Real) else type(v))
    return kind(a) is kind(b) and a == b


def format_headfile(header: dict) -> str:
    """Headfile text for ``header``: LF lines, arrays as ``N,...``/``R:C,...``, None as
    ``NO_KEY``, floats via ``repr``.

    Raises ValueError for a key or value that would not read back unchanged (a newline,
    a key with ``=`` or spaces, a string that reads as a number, ...), so
    ``parse_headfile(format_headfile(h)) == h``.
    """
    lines, unparsed = [], []
    for key, value in header.items():
        if key == UNPARSED and isinstance(value, (list, tuple)):
            for line in value:
                if (not isinstance(line, str) or "=" in line or line != line.strip()
                        or not line or line.startswith("#") or _LINE_BREAK.search(line)):
                    raise ValueError(f"{UNPARSED}: {line!r} cannot be kept as a bare line")
            unparsed.extend(value)
            continue
        if not isinstance(key, str) or "=" in key or _key(key) != key or not key \
                or key.startswith("#"):
            raise ValueError(f"headfile key {key!r}: keys need text without '=', spaces, "
                             "newlines or a leading '#'")
        text = _value_text(value, key)
        if _LINE_BREAK.search(text):
            raise ValueError(f"{key}: values cannot hold a newline")
        lines.append(f"{key}={text}")
    text = "\n".join(lines + unparsed) + "\n"
    try:
        back = parse_headfile(text)
    except FormatError as error:
        raise ValueError(f"headfile text would not read back: {error.problem}") from None
    for key, value in header.items():
        if key not in back or not _same(back[key], value):
            raise ValueError(f"{key}: {value!r} would read back as {back.get(key)!r}")
    return text


def write_headfile(path, header: dict) -> list[str]:
    """Write ``header`` atomically as a headfile; return ``[path]``."""
    try:
        text = format_headfile(header)
    except ValueError as error:
        raise FormatError(path, str(error)) from None
    with atomic_output(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    return [str(path)]
