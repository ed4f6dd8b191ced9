"""JCAMP-DX parameter files in the Bruker flavour (``visu_pars``, ``acqp``, ``method``, ``reco``).

A file is a sequence of labelled records ``##LABEL=value`` ending with ``##END=``
(McDonald & Wilks, "JCAMP-DX: a standard form for exchange of infrared spectra in
computer readable form", Appl. Spectrosc. 42:151, 1988; Bruker ParaVision's
"Parameter files" chapter). Bruker adds:

- ``##$Name=value`` parameter records (the ``$`` marks a vendor label);
- ``$$ ...`` comments running to the end of the line;
- sized arrays: a size line ``( 3 )`` or ``( 2, 65 )`` (TopSpin: ``(0..7)``) with the
  values on the following lines, C order, line breaks anywhere between values;
- strings in angle brackets ``<text>``, with ``\\<`` and ``\\>`` for brackets inside them
  (ParaVision 360 ``reco``: ``RecoStageNodes``); a character array ``( 65 )`` holds one string
  and ``( 2, 65 )`` two, the last size being the characters;
- structs ``(a, b, <c>)``, possibly nested, spanning lines, and arrays of them
  ``( 2 )`` then ``(1, <x>) (2, <y>)``;
- run-length compression ``@N*(value)`` for N repeats of a value.

:func:`parse_jcamp` maps labels (without ``##``/``$``) to JSON-friendly values: ``int``,
``float``, ``str``, and (nested) lists for arrays and structs. Core labels such as
``TITLE`` keep their text. An array whose values do not fill its declared size keeps
the flat list of what is there, and ``result["_size_mismatch"]`` maps its name to the
declared size.
"""

from __future__ import annotations

import math
import re

from napari_mrmicro.io._common import FormatError, read_text_header

#: Most values run-length compression ``@N*(...)`` may create in one file.
MAX_ELEMENTS = 2**21
#: Deepest struct nesting accepted.
MAX_DEPTH = 32
#: Most sizes an array may declare.
MAX_DIMS = 16
#: Labels written without ``$``: the JCAMP-DX core header labels Bruker uses.
CORE_LABELS = ("TITLE", "JCAMPDX", "DATATYPE", "DATACLASS", "ORIGIN", "OWNER", "DATE",
               "TIME", "BLOCKS", "BLOCK_ID")

_TOKEN = re.compile(r"""
    (?P<comment>\$\$[^\n]*)
  | (?P<string><(?:\\[\s\S]|[^>\\])*>)
  | (?P<run>@(?P<count>\d+)\s*\*\s*\()
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
  | (?P<space>\s+)
  | (?P<word>(?:[^\s,()<>$]|\$(?!\$))+)
  | (?P<bad>[<>$])
""", re.VERBOSE)
#: ParaVision 360 escapes angle brackets inside strings: ``<a \\<b\\> c>``; ParaVision 6
#: writes a line break typed into a string (a subject comment) as a backslash ending the
#: line.
_ESCAPE = re.compile(r"\\([<>\\\n])")
_SIZE = re.compile(r"\(\s*(\d+(?:\s*,\s*\d+)*)\s*\)", re.ASCII)
_TOPSPIN_SIZE = re.compile(r"\(\s*(\d+)\s*\.\.\s*(\d+)\s*\)", re.ASCII)
_INT = re.compile(r"[+-]?\d{1,30}", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_.+\-:/]*")
_LINE_WIDTH = 78


def _scalar(word: str):
    """An int or finite float when ``word`` spells one, else the word."""
    if _INT.fullmatch(word):
        return int(word)
    if _FLOAT.fullmatch(word):
        value = float(word)
        if math.isfinite(value):
            return value
    return word


class _Group:
    """An open parenthesis while scanning: comma-separated fields of items."""

    __slots__ = ("fields", "repeat", "weight", "quoted")

    def __init__(self, repeat=None):
        self.fields = [[]]
        self.repeat = repeat
        self.weight = 0  # values held, nested ones counted
        self.quoted = 0  # items that were <strings>

    def add(self, item, weight=1, quoted=False):
        self.fields[-1].append(item)
        self.weight += weight
        self.quoted += quoted

    def value(self) -> list:
        """The struct as a list: one entry per field (a list when it holds several);
        without commas, ``(1 2 3)``, the items themselves."""
        if len(self.fields) == 1 and len(self.fields[0]) != 1:
            return self.fields[0]
        return [f[0] if len(f) == 1 else (f or "") for f in self.fields]


def _scan(text: str, fail, budget: list):
    """Items of a value text: (flat list of top-level items, all of them <quoted>?).

    ``budget`` holds how many more values run-length expansion may create in this file.
    """
    stack = [_Group()]
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        top = stack[-1]
        if kind in ("comment", "space"):
            continue
        if kind == "string":
            top.add(_ESCAPE.sub(r"\1", match.group()[1:-1]), quoted=True)
        elif kind == "word":
            top.add(_scalar(match.group()))
        elif kind in ("open", "run"):
            if len(stack) > MAX_DEPTH:
                fail(f"structs nested deeper than {MAX_DEPTH} levels")
            repeat = None
            if kind == "run":
                count = match.group("count")
                if len(count) > 12:
                    fail(f"run-length @{count[:12]}...*(...) is absurd")
                repeat = int(count)
            stack.append(_Group(repeat))
        elif kind == "close":
            if len(stack) == 1:
                fail("')' without '('")
            group = stack.pop()
            parent = stack[-1]
            if group.repeat is None:
                parent.add(group.value(), group.weight + 1)
                continue
            single = len(group.fields) == 1 and len(group.fields[0]) == 1
            item = group.fields[0][0] if single else group.value()
            weight = group.weight if single else group.weight + 1
            budget[0] -= group.repeat * weight
            if budget[0] < 0:
                fail(f"run-length @{group.repeat}*(...) expands beyond {MAX_ELEMENTS} values")
            parent.fields[-1].extend([item] * group.repeat)
            parent.weight += group.repeat * weight
            parent.quoted += group.repeat * (single and group.quoted == 1)
        elif kind == "comma":
            top.fields.append([])
        else:
            fail(f"stray {match.group()!r}" + (" (unterminated <string>)"
                                               if match.group() == "<" else ""))
    if len(stack) > 1:
        fail("'(' without ')'")
    items = [item for field in stack[0].fields for item in field]
    return items, bool(items) and stack[0].quoted == len(items)


def _reshape(flat: list, dims: list) -> list:
    """Nest a flat C-order list into ``dims`` (the product of dims equals its length)."""
    if len(dims) == 1:
        return flat
    step = len(flat) // dims[0]
    return [_reshape(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]


def _sized(dims: list, body: str, fail, budget: list):
    """A sized array's value, and its declared dims when the values do not fill them."""
    if len(dims) > MAX_DIMS:
        fail(f"{len(dims)} array sizes (at most {MAX_DIMS})")
    items, quoted = _scan(body, fail, budget)
    count = len(items)
    if quoted and count == math.prod(dims[:-1]):  # character arrays: last size = chars
        if len(dims) == 1:
            return items[0], None
        dims = dims[:-1]
    if count != math.prod(dims):
        return items, dims
    return (_reshape(items, dims) if count else []), None


def _dims(text: str, fail) -> list:
    numbers = text.replace("..", ",").split(",")
    if any(len(n.strip()) > 18 for n in numbers):
        fail(f"absurd array size ({text[:40]})")
    return [int(n) for n in numbers]


def _value(text: str, fail, budget: list):
    """One parameter value, and its declared dims when they do not fit the values."""
    first, _, rest = text.partition("\n")
    first = first.strip()
    size = _SIZE.match(first)
    if size and (first[1:2].isspace() or (size.end() == len(first) and rest.strip())):
        return _sized(_dims(size.group(1), fail), first[size.end():] + "\n" + rest, fail,
                      budget)
    topspin = _TOPSPIN_SIZE.match(first)
    if topspin:
        low, high = _dims(topspin.group(1) + ".." + topspin.group(2), fail)
        if high < low:
            fail(f"array range ({low}..{high}) runs backwards")
        return _sized([high - low + 1], first[topspin.end():] + "\n" + rest, fail, budget)
    stripped = text.strip()
    if stripped[:1] in ("<", "(", "@"):
        items, _ = _scan(stripped, fail, budget)
        return (items[0] if len(items) == 1 else items), None
    return _scalar(re.sub(r"\$\$[^\n]*", "", stripped).strip()), None


def parse_jcamp(text: str, source="<text>") -> dict:
    """Parse a Bruker JCAMP-DX parameter text.

    Parameters
    ----------
    text : str
        The file's content.
    source : str or Path
        Name used in error messages.

    Returns
    -------
    dict
        Label (without ``##`` and ``$``) to value, in file order; ``_size_mismatch``
        lists arrays whose values do not fill their declared size.

    Raises
    ------
    FormatError
        Text outside a record, a label without ``=``, unbalanced ``()`` or ``<>``,
        absurd sizes, nesting deeper than :data:`MAX_DEPTH`, or run-length values
        expanding beyond :data:`MAX_ELEMENTS` in the file.
    """
    records = []  # (line number, label, is core, value lines)
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        stripped = line.strip()
        if stripped.startswith("$$"):
            continue
        if line.startswith("##"):
            label, equals, value = line[2:].partition("=")
            if not equals:
                raise FormatError(source, f"line {number}: a JCAMP-DX label without '='")
            core = not label.startswith("$")
            label = label.lstrip("$").strip()
            if not label:
                raise FormatError(source, f"line {number}: an empty label")
            if core and label.upper() == "END":
                break
            records.append((number, label, core, [value]))
        elif records:
            records[-1][3].append(line)
        elif stripped:
            raise FormatError(source, f"line {number}: text before the first ##LABEL= "
                                      "(not a JCAMP-DX file)")
    out, mismatch, budget = {}, {}, [MAX_ELEMENTS]
    for number, label, core, lines in records:
        def fail(problem, number=number, label=label):
            raise FormatError(source, f"line {number} ({label}): {problem}")

        if core:
            out[label] = "\n".join(lines).strip()
            continue
        value, declared = _value("\n".join(lines), fail, budget)
        out[label] = value
        if declared is not None:
            mismatch[label] = declared
    if mismatch:
        out["_size_mismatch"] = mismatch
    return out


def read_jcamp(path) -> dict:
    """Read a JCAMP-DX parameter file (``visu_pars``, ``acqp``, ``method``, ``reco``)."""
    return parse_jcamp(read_text_header(path), source=path)


def _shape(value):
    """Shape of a rectangular nested list of scalars, else None."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    shapes = {_shape(v) for v in value}
    if len(shapes) != 1 or None in shapes:
        return None
    inner = shapes.pop()
    return (len(value),) + inner if (inner == () or 0 not in inner) else None


def _flatten(value) -> list:
    return [x for v in value for x in _flatten(v)] if isinstance(value, list) else [value]


def _format_string(value: str) -> str:
    lines = value.split("\n")
    if "<" in value or ">" in value or "\r" in value or any(
            line.startswith("##") or line.lstrip().startswith("$$") for line in lines[1:]):
        raise ValueError(f"format_jcamp: cannot write the string {value!r}")
    return f"<{value}>"


def _format_item(value, in_struct=False) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, list)):
        raise TypeError(f"format_jcamp: cannot write {type(value).__name__} values")
    if isinstance(value, list):
        return "(" + ", ".join(_format_item(v, True) for v in value) + ")"
    if isinstance(value, str):
        bare = not in_struct and _BARE.fullmatch(value) and isinstance(_scalar(value), str)
        return value if bare else _format_string(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"format_jcamp: cannot write {value}")
    return repr(value)


def _wrap(words: list) -> str:
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > _LINE_WIDTH:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join(lines)


def format_jcamp(params: dict) -> str:
    """Write parameters as Bruker JCAMP-DX text that :func:`parse_jcamp` reads back.

    Core labels (:data:`CORE_LABELS`) with string values come first as ``##LABEL=``;
    other keys become ``##$Key=`` records. Rectangular lists of numbers become sized
    arrays, of strings character arrays; other lists become arrays of structs
    ``(a, <b>)``. Keys starting with ``_`` are skipped.
    """
    core = [k for k in CORE_LABELS if isinstance(params.get(k), str)]
    lines = [f"##{k}={params[k]}" for k in core]
    for key, value in params.items():
        if key in core or key.startswith("_"):
            continue
        if not isinstance(value, list):
            lines.append(f"##${key}={_format_item(value)}")
            continue
        shape = _shape(value)
        flat = _flatten(value) if shape else []
        if flat and all(isinstance(v, str) for v in flat):  # character arrays
            size = shape + (max(len(v) for v in flat) + 1,)
            words = [_format_string(v) for v in flat]
        elif shape and all(isinstance(v, (int, float)) for v in flat):
            size, words = shape, [_format_item(v) for v in flat]
        else:  # an array of structs (or of mixed scalars)
            size, words = (len(value),), [_format_item(v, True) for v in value]
        lines.append(f"##${key}=( {', '.join(str(n) for n in size)} )")
        if words:
            lines.append(_wrap(words))
    lines.append("##END=")
    return "\n".join(lines) + "\n"
