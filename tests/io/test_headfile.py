"""Duke CIVM headfile text: parsing, formatting, round trips and bad input."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_mrmicro.io import FormatError, read_headfile, write_headfile
from napari_mrmicro.io.headfile import format_headfile, parse_headfile

SAMPLE = [
    "# written by a CIVM archive script",
    "dim_X=256",
    "dim_Y=128",
    "fovx=25.6",
    "te=2.4",
    "tr=600000",
    "PSD Name=se3d",
    "bval_dir=3:1,x y z",
    "z_Agilent_te=2,0.0024 0.0048",
    "U_specid=141209-1:1",
    "S_tesla=7t",
    "U_civmid=Smith, John",
    "U_code=0007",
    "alpha=NO_KEY",
    "bw=EMPTY_VALUE",
    "U_coil=UNDEFINED_VALUE",
    "U_note=a=b",
    "  U_padded  =  spaced value  ",
    "",
    "stray line without equals",
]

EXPECTED = {
    "dim_X": 256, "dim_Y": 128, "fovx": 25.6, "te": 2.4, "tr": 600000,
    "PSD_Name": "se3d", "bval_dir": [["x"], ["y"], ["z"]], "z_Agilent_te": [0.0024, 0.0048],
    "U_specid": "141209-1:1", "S_tesla": "7t", "U_civmid": "Smith, John", "U_code": "0007",
    "alpha": None, "bw": None, "U_coil": None, "U_note": "a=b", "U_padded": "spaced value",
    "_unparsed": ["stray line without equals"],
}


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_parse_documented_syntax(newline):
    header = parse_headfile(newline.join(SAMPLE) + newline)
    assert header == EXPECTED
    assert type(header["dim_X"]) is int and type(header["te"]) is float


@pytest.mark.parametrize("text, value", [
    ("3,1 2 3", [1, 2, 3]),
    ("3,1 2", "3,1 2"),            # count disagrees: kept as text
    ("2:2,1 2 3 4", [[1, 2], [3, 4]]),
    ("2:2,1 2 3", "2:2,1 2 3"),
    ("0,", []),
    ("1,NO_KEY", [None]),
    ("-1.5e-3", -1.5e-3),
    ("+7", 7),
    ("1_000", "1_000"),            # Python-only digit grouping is not a number here
    ("-inf", -math.inf),
])
def test_values(text, value):
    parsed = parse_headfile(f"k={text}\n")["k"]
    assert parsed == value and type(parsed) is type(value)
    assert math.isnan(parse_headfile("k=NaN")["k"])


def test_repeated_key_keeps_last_and_bom_is_ignored():
    assert parse_headfile("\ufeffa=1\na=2\n") == {"a": 2}


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "no equals here\n",
                                  "=value without key\n", "a=1\x00\x01\x02"])
def test_no_key_or_binary_raises(text):
    with pytest.raises(FormatError, match="<mine>"):
        parse_headfile(text, source="<mine>")


def test_read_headfile_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.headfile"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.headfile"
    garbage.write_bytes(bytes(range(256)) * 8)
    for path in (empty, garbage):
        with pytest.raises(FormatError, match=path.name):
            read_headfile(path)


def test_format_round_trip_and_spelling():
    header = {"a": 0.1, "b": 1e-300, "c": [1, 2.5, "x"], "d": [[1, 2], [3, 4]], "e": None,
              "f": "7t", "g": -3, "h": "", "i": [], "_unparsed": ["free text"]}
    text = format_headfile(header)
    assert text.splitlines() == ["a=0.1", "b=1e-300", "c=3,1 2.5 x", "d=2:2,1 2 3 4",
                                 "e=NO_KEY", "f=7t", "g=-3", "h=", "i=0,", "free text"]
    assert parse_headfile(text) == header


@pytest.mark.parametrize("header, problem", [
    ({"a": "two\nlines"}, "newline"),
    ({"a=b": 1}, "'='"),
    ({"PSD Name": "se"}, "spaces"),
    ({"a": "12"}, "read back"),
    ({"a": " padded"}, "read back"),
    ({"a": True}, "boolean"),
    ({"a": [[1], [2, 3]]}, "rows"),
    ({"a": {"nested": 1}}, "no headfile form"),
])
def test_format_refuses_what_would_not_read_back(header, problem):
    with pytest.raises(ValueError, match=problem):
        format_headfile(header)


def test_write_headfile_is_atomic(tmp_path):
    path = tmp_path / "run.headfile"
    assert write_headfile(path, {"dim_X": 4, "U_runno": "N1"}) == [str(path)]
    assert read_headfile(path) == {"dim_X": 4, "U_runno": "N1"}
    before = path.read_bytes()
    with pytest.raises(FormatError, match="run.headfile"):
        write_headfile(path, {"bad": "line\nbreak"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.headfile"]


# --------------------------------------------------------------------------- fuzzing

_keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True)
_words = st.from_regex(r"[A-Za-z][A-Za-z0-9_.:-]{0,10}", fullmatch=True).filter(
    lambda s: s.lower() not in ("inf", "infinity", "nan"))
_strings = st.from_regex(r"[A-Za-z][A-Za-z0-9_ ,:.()/-]{0,20}[A-Za-z0-9)]", fullmatch=True)
_numbers = st.integers(-10**30, 10**30) | st.floats(allow_nan=False)
_scalars = _numbers | _words | st.none()
_values = (_scalars | _strings.filter(lambda s: s.lower() not in ("inf", "infinity", "nan"))
           | st.lists(_numbers | _words | st.none(), max_size=6)
           | st.integers(1, 3).flatmap(lambda c: st.lists(
               st.lists(_numbers | _words, min_size=c, max_size=c), min_size=1, max_size=4)))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_parse_arbitrary_text_only_raises_format_error(text):
    try:
        header = parse_headfile(text)
    except FormatError:
        return
    assert header and all(isinstance(k, str) for k in header)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_keys, _values, min_size=1, max_size=12))
def test_format_then_parse_is_identity(header):
    assert parse_headfile(format_headfile(header)) == header


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_characters="\r\n"), max_size=30),
                min_size=1, max_size=12))
def test_line_endings_give_identical_dicts(lines):
    results = []
    for newline in ("\n", "\r\n", "\r"):
        try:
            results.append(parse_headfile(newline.join(lines)))
        except FormatError as error:
            results.append(error.problem)
    assert repr(results[0]) == repr(results[1]) == repr(results[2])  # NaN-safe
