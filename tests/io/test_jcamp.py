"""JCAMP-DX (Bruker flavour) parser: hand-built texts, nmrglue as a peer, fuzzing."""

import time
import warnings

import nmrglue
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_mrmicro.io._common import FormatError
from napari_mrmicro.io.jcamp import MAX_ELEMENTS, format_jcamp, parse_jcamp, read_jcamp

# A ParaVision 6 visu_pars as the scanner writes it: core labels, $$ comments, sized
# arrays with values on the next lines (wrapped), string arrays, struct arrays,
# run-length @N*(v) and a struct spanning lines.
VISU_PARS = """\
##TITLE=Parameter List, ParaVision 6.0.1
##JCAMPDX=4.24
##DATATYPE=Parameter Values
##ORIGIN=Bruker BioSpin MRI GmbH
##OWNER=nmrsu
$$ Wed Jan 18 14:17:46 2017 CET (UT+1h)  nmrsu
$$ /opt/PV6.0.1/data/nmrsu/nmr/molar.a1/5/pdata/1/visu_pars
##$VisuVersion=3
##$VisuUid=( 65 )
<2.16.756.5.5.100.1384712661.16188.1363828008.19>
##$VisuCreator=<ParaVision>
##$VisuCoreFrameCount=6
##$VisuCoreDim=2
##$VisuCoreSize=( 2 )
256 128
##$VisuCoreDimDesc=( 2 )
spatial spatial
##$VisuCoreExtent=( 2 )
25.6 12.8
##$VisuCoreFrameThickness=( 1 )
0.5
##$VisuCoreUnits=( 2, 65 )
<mm> <mm>
##$VisuCoreOrientation=( 3, 9 )
1 0 0 0 1 0 0 0 1 1 0 0 0 1 0 0 0 1 1 0 0 0 1 0 0 0 1
##$VisuCorePosition=( 3, 3 )
-12.8 -6.4 -0.5 -12.8 -6.4 0 -12.8 -6.4 0.5
##$VisuCoreDataMin=( 6 )
-31.5 0 0 0 0 -2
##$VisuCoreDataOffs=( 6 )
@6*(0)
##$VisuCoreDataSlope=( 6 )
@2*(1.5) 2.25 @3*(1)
##$VisuCoreFrameType=MAGNITUDE_IMAGE
##$VisuCoreWordType=_16BIT_SGN_INT
##$VisuCoreByteOrder=littleEndian
##$VisuFGOrderDescDim=2
##$VisuFGOrderDesc=( 2 )
(2, <FG_ECHO>, <>, 0, 1) (3, <FG_SLICE>, <slice comment, with (parens)>, 1, 2)
##$VisuGroupDepVals=( 3 )
(<VisuAcqEchoTime>, 0) (<VisuCoreOrientation>, 0) (<VisuCorePosition>, 0)
##$VisuSubjectName=( 64 )
<molar 3>
##$VisuAcqEchoTime=( 2 )
2.4 7.2
##$VisuAcqRepetitionTime=( 1 )
600
##$VisuAcqFlipAngle=90
##$VisuAcqImagingFrequency=100.0512
##$VisuAcqSequenceName=( 65 )
<Bruker:MSME>
##$VisuAcqPixelBandwidth=195.3125
##$VisuAcqHasTime=No
##$VisuExcPulse=(1, 2.2, 90, Yes, 5, 4200, 0.2, 0.3, 0, 50, 0.1, 0,
<hermite.exc>, 0)
##$VisuAcqComment=<a comment with $$ inside a string>
##$VisuAcqEchoTrainLength=1 $$ a trailing comment
##END=
##$AfterEnd=1
"""


def test_parse_realistic_visu_pars():
    p = parse_jcamp(VISU_PARS)
    assert p["TITLE"] == "Parameter List, ParaVision 6.0.1"
    assert p["JCAMPDX"] == "4.24"
    assert p["VisuVersion"] == 3 and isinstance(p["VisuVersion"], int)
    assert p["VisuUid"] == "2.16.756.5.5.100.1384712661.16188.1363828008.19"
    assert p["VisuCreator"] == "ParaVision"
    assert p["VisuCoreSize"] == [256, 128]
    assert p["VisuCoreDimDesc"] == ["spatial", "spatial"]
    assert p["VisuCoreExtent"] == [25.6, 12.8]
    assert p["VisuCoreFrameThickness"] == [0.5]
    assert p["VisuCoreUnits"] == ["mm", "mm"]
    assert p["VisuCoreOrientation"] == [[1, 0, 0, 0, 1, 0, 0, 0, 1]] * 3
    assert p["VisuCorePosition"] == [[-12.8, -6.4, -0.5], [-12.8, -6.4, 0], [-12.8, -6.4, 0.5]]
    assert p["VisuCoreDataOffs"] == [0] * 6
    assert p["VisuCoreDataSlope"] == [1.5, 1.5, 2.25, 1, 1, 1]
    assert p["VisuCoreWordType"] == "_16BIT_SGN_INT"
    assert p["VisuFGOrderDesc"] == [[2, "FG_ECHO", "", 0, 1],
                                    [3, "FG_SLICE", "slice comment, with (parens)", 1, 2]]
    assert p["VisuGroupDepVals"] == [["VisuAcqEchoTime", 0], ["VisuCoreOrientation", 0],
                                     ["VisuCorePosition", 0]]
    assert p["VisuSubjectName"] == "molar 3"
    assert p["VisuAcqEchoTime"] == [2.4, 7.2]
    assert p["VisuAcqFlipAngle"] == 90
    assert p["VisuAcqImagingFrequency"] == 100.0512
    assert p["VisuAcqHasTime"] == "No"
    assert p["VisuExcPulse"] == [1, 2.2, 90, "Yes", 5, 4200, 0.2, 0.3, 0, 50, 0.1, 0,
                                 "hermite.exc", 0]
    assert p["VisuAcqComment"] == "a comment with $$ inside a string"
    assert p["VisuAcqEchoTrainLength"] == 1
    assert "AfterEnd" not in p and "END" not in p and "_size_mismatch" not in p


def test_agrees_with_nmrglue(tmp_path):
    """nmrglue (independent) parses scalars and strings of the same file alike; it skips
    ParaVision's ``( N )`` arrays (it knows TopSpin's ``(0..N)``), which we check above."""
    path = tmp_path / "visu_pars"
    path.write_text(VISU_PARS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = nmrglue.bruker.read_jcamp(str(path))
    ours = read_jcamp(path)
    compared = 0
    for key, value in theirs.items():
        if key.startswith("_") or "\n" in str(value) or "$$" in str(value):
            continue  # nmrglue keeps inline comments, which JCAMP-DX defines as comments
        assert key in ours
        if isinstance(value, (int, float)):
            assert ours[key] == pytest.approx(value)
        else:
            assert str(ours[key]) == value
        compared += 1
    assert compared >= 8
    for line in theirs["_coreheader"]:
        label, value = line[2:].split("=", 1)
        assert ours[label] == value


def test_reads_nmrglue_written_topspin_arrays(tmp_path):
    """nmrglue writes arrays TopSpin-style ``(0..N)``; we read them back."""
    params = {"_coreheader": ["##TITLE=Parameter file", "##JCAMPDX=5.0"],
              "_comments": ["$$ written by nmrglue"],
              "TD": 2048, "SFO1": 400.132, "PULPROG": "zg30",
              "P": [10.0, 8.5] + [0.0] * 30, "NS_LIST": list(range(40)),
              "EXP": "two words"}
    path = tmp_path / "acqus"
    nmrglue.bruker.write_jcamp(params, str(path), overwrite=True)
    ours = read_jcamp(path)
    for key in ("TD", "SFO1", "PULPROG", "P", "NS_LIST", "EXP"):
        assert ours[key] == params[key], key
    assert ours["TITLE"] == "Parameter file"


def test_small_cases():
    text = """##TITLE=t
##$Empty=( 0 )
##$Matrix=( 2, 3 )
1 2 3
4 5 6
##$Cube=( 2, 1, 2 )
@4*(7)
##$Names=( 3, 20 )
<first one> <> <third
line>
##$Structs=( 2 )
(1, <a>, (2 3 4)) (2, <b>, (5 6 7))
##$Runs=( 3 )
@2*((0, <x>)) (1, <y>)
##$Neg=-3.5e-2
##$Word=Yes
##$Blank=
##$Multi=( 5 ) 1 2
3
4 5
##$Shorthand=(0..2)
9 8 7
##$Comment=( 2048 )
<in NaCl.\\
V: ventral\\
H: tete>
"""
    p = parse_jcamp(text)
    assert p["Empty"] == []
    assert p["Matrix"] == [[1, 2, 3], [4, 5, 6]]
    assert p["Cube"] == [[[7, 7]], [[7, 7]]]
    assert p["Names"] == ["first one", "", "third\nline"]
    assert p["Structs"] == [[1, "a", [2, 3, 4]], [2, "b", [5, 6, 7]]]
    assert p["Runs"] == [[0, "x"], [0, "x"], [1, "y"]]
    assert p["Neg"] == -0.035 and p["Word"] == "Yes" and p["Blank"] == ""
    assert p["Multi"] == [1, 2, 3, 4, 5]
    assert p["Shorthand"] == [9, 8, 7]
    # a line break typed into a ParaVision 6.0.1 subject comment (a real study's
    # visu_pars): a backslash ending the line, not the end of the file's parsing
    assert p["Comment"] == "in NaCl.\nV: ventral\nH: tete"


def test_declared_size_larger_than_values_keeps_the_list_fast():
    start = time.perf_counter()
    p = parse_jcamp("##TITLE=t\n##$VisuCoreSize=( 1000000000 )\n1 2 3\n"
                    "##$Big=( 100000, 100000, 100000 )\n5\n")
    assert time.perf_counter() - start < 0.5
    assert p["VisuCoreSize"] == [1, 2, 3] and p["Big"] == [5]
    assert p["_size_mismatch"] == {"VisuCoreSize": [1000000000],
                                   "Big": [100000, 100000, 100000]}


@pytest.mark.parametrize("text, problem", [
    ("##$A=<open string\n##END=\n", "unterminated"),
    ("##$A=( 2 )\n(1, 2\n", "without '\\)'"),
    ("##$A=(1))\n", "'\\)' without"),
    ("just text\n##$A=1\n", "not a JCAMP-DX file"),
    ("##$A 1\n", "without '='"),
    ("##$=1\n", "empty label"),
    ("##$A=( 1000000000 )\n@1000000000*(0)\n", "expands beyond"),
    ("##$A=@3000*(@3000*(@3000*(0)))\n", "expands beyond"),
    ("##$A=" + "(" * 100 + ")" * 100 + "\n", "nested deeper"),
    ("##$A=( 1 )\n@99999999999999999999*(0)\n", "absurd"),
    ("##$A=( 99999999999999999999999 )\n1\n", "absurd array size"),
    ("##$A=(5..2)\n1\n", "runs backwards"),
])
def test_bad_text_raises_format_error_naming_the_source(text, problem):
    start = time.perf_counter()
    with pytest.raises(FormatError, match=problem) as info:
        parse_jcamp(text, source="/data/scan/visu_pars")
    assert info.value.path == "/data/scan/visu_pars"
    assert time.perf_counter() - start < 1.0


def test_run_length_budget_is_shared_by_the_file():
    line = f"##$A{{}}=@{MAX_ELEMENTS // 2 + 1}*(0)\n"
    parse_jcamp(line.format(1))
    with pytest.raises(FormatError, match="expands beyond"):
        parse_jcamp(line.format(1) + line.format(2))


def test_read_jcamp_errors_name_the_file(tmp_path):
    empty = tmp_path / "acqp"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty") as info:
        read_jcamp(empty)
    assert info.value.path == str(empty)
    binary = tmp_path / "method"
    binary.write_bytes(b"##$A=\x00\x01\x02")
    with pytest.raises(FormatError, match="binary"):
        read_jcamp(binary)


_TOKENS = st.sampled_from(["##", "##$", "A", "=", "( ", "3", " )", "(0..2)", "<", ">",
                           "(", ")", ",", "@", "*", "@2*(", "$$", " ", "\n", "-1.5e3",
                           "1000000000", "\r\n", "##END=", "x y", "\x00", "é"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.lists(_TOKENS, max_size=80).map("".join)))
def test_fuzz_only_format_errors(text):
    try:
        result = parse_jcamp(text)
    except FormatError:
        return
    assert isinstance(result, dict)


_WORD = st.text("abcXYZ_09 .:-", min_size=0, max_size=12)
_SCALAR = st.one_of(st.integers(-2**53, 2**53),
                    st.floats(allow_nan=False, allow_infinity=False, width=64),
                    _WORD, st.text("ab <>\n", max_size=6).filter(
                        lambda s: "<" not in s and ">" not in s))
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.lists(st.lists(st.integers(-9, 9), min_size=2, max_size=2),
                                     min_size=1, max_size=3)),
    max_leaves=20)
_KEY = st.from_regex(r"[A-Z][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
    lambda k: k not in ("TITLE", "JCAMPDX", "DATATYPE", "ORIGIN", "OWNER", "END"))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEY, _VALUE, max_size=6),
       st.text("abc ,.0123", max_size=20).map(str.strip))
def test_round_trip_generated_parameters(params, title):
    params = {"TITLE": title, **params}
    assert parse_jcamp(format_jcamp(params)) == params
