"""Saving and loading registration transforms: JSON (our convention) and ITK affine text.

JSON: ``{"affine": [[...]], "units": "um", "axes": ["z", "y", "x"], "direction":
"moving_to_fixed", "moving_layer": ..., "fixed_layer": ..., ...}`` — the matrix exactly as
``core.transforms`` defines it, plus any extra fields (kind, RMS, ...).

ITK (``#Insight Transform File V1.0``, ``AffineTransform_double_3_3``): ITK points are
physical (x, y, z) in millimetres and a registration transform maps **fixed → moving**
points (it resamples the moving image on the fixed grid), ``T(p) = M (p − c) + c + t`` with
``Parameters: M (row-major) t`` and ``FixedParameters: c``. The ITK physical frame here is
that of an image with origin 0, identity direction and our spacing — what
``SimpleITK.GetImageFromArray`` + ``SetSpacing`` gives for a ``(z, y, x)`` array — so ITK x,
y, z are our x, y, z (µm / 1000), in LPS as ITK assumes. Conversion: ``T = P A⁻¹ P⁻¹`` with
``P`` reversing the axes and scaling µm → mm.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from napari_mrmicro.core.transforms import check_affine
from napari_mrmicro.io._common import atomic_output


def _write_atomic(path: Path, text: str) -> None:
    """Write text through a temporary file, so a failure leaves no partial transform."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)

_ITK_TYPE = re.compile(r"^(AffineTransform|MatrixOffsetTransformBase)_(double|float)_(\d)_(\d)$")


def _itk_frame(ndim: int) -> np.ndarray:
    """``P``: our (z, y, x) µm homogeneous coordinates → ITK (x, y, z) mm."""
    p = np.zeros((ndim + 1, ndim + 1))
    p[:ndim, :ndim] = np.fliplr(np.eye(ndim)) / 1000.0
    p[ndim, ndim] = 1.0
    return p


def affine_to_itk(affine) -> tuple:
    """Our moving → fixed µm (z, y, x) matrix as ITK ``(matrix, translation, centre)``:
    fixed → moving, mm, (x, y, z), centre 0."""
    a = check_affine(affine)
    ndim = a.shape[0] - 1
    p = _itk_frame(ndim)
    t = p @ np.linalg.inv(a) @ np.linalg.inv(p)
    return t[:ndim, :ndim], t[:ndim, ndim], np.zeros(ndim)


def itk_to_affine(matrix, translation, centre) -> np.ndarray:
    """ITK ``(matrix, translation, centre)`` (fixed → moving, mm, (x, y, z)) as our moving →
    fixed µm (z, y, x) homogeneous matrix."""
    m = np.asarray(matrix, dtype=float)
    ndim = m.shape[0]
    c = np.asarray(centre, dtype=float)
    t = np.eye(ndim + 1)
    t[:ndim, :ndim] = m
    t[:ndim, ndim] = np.asarray(translation, dtype=float) + c - m @ c
    p = _itk_frame(ndim)
    return check_affine(np.linalg.inv(np.linalg.inv(p) @ t @ p), ndim, "ITK transform")


def write_itk_affine(path, affine) -> Path:
    """Write ``affine`` (moving → fixed, µm) as an ITK ``AffineTransform_double_N_N`` text
    file (``.tfm`` / ``.txt``), readable by ITK, SimpleITK, elastix/ANTs tools and 3D Slicer."""
    matrix, translation, centre = affine_to_itk(affine)
    ndim = matrix.shape[0]
    fmt = " ".join
    text = ("#Insight Transform File V1.0\n#Transform 0\n"
            f"Transform: AffineTransform_double_{ndim}_{ndim}\n"
            f"Parameters: {fmt(repr(float(v)) for v in [*matrix.ravel(), *translation])}\n"
            f"FixedParameters: {fmt(repr(float(v)) for v in centre)}\n")
    path = Path(path)
    _write_atomic(path, text)
    return path


def read_itk_affine(path) -> np.ndarray:
    """Read the first transform of an ITK text transform file as our moving → fixed µm
    matrix. Supports ``AffineTransform`` and ``MatrixOffsetTransformBase`` (double or float,
    2-D or 3-D)."""
    fields = {}
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields.setdefault(key.strip(), value.strip())
    kind = fields.get("Transform")
    if kind is None:
        raise ValueError(f"{path}: not an ITK transform file (no 'Transform:' line)")
    match = _ITK_TYPE.match(kind)
    if match is None or match.group(3) != match.group(4) or match.group(3) not in "23":
        raise ValueError(f"{path}: unsupported ITK transform {kind!r}; supported: "
                         "AffineTransform_double_3_3 (and float, 2_2, MatrixOffsetTransformBase)")
    ndim = int(match.group(3))
    try:
        params = np.array(fields["Parameters"].split(), dtype=float)
        fixed = np.array(fields.get("FixedParameters", "").split(), dtype=float)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: bad or missing Parameters/FixedParameters ({err})") from None
    if params.size != ndim * ndim + ndim:
        raise ValueError(f"{path}: {kind} needs {ndim * ndim + ndim} Parameters, got "
                         f"{params.size}")
    centre = fixed if fixed.size == ndim else np.zeros(ndim)
    return itk_to_affine(params[:ndim * ndim].reshape(ndim, ndim), params[ndim * ndim:], centre)


def write_transform_json(path, affine, moving_layer: str, fixed_layer: str,
                         **metadata) -> Path:
    """Write ``affine`` (moving → fixed, µm, (z, y, x)) with the two layers' names and any
    JSON-serialisable ``metadata`` (e.g. ``kind``, ``rms_um``)."""
    a = check_affine(affine)
    record = {"affine": a.tolist(), "units": "um", "axes": ["z", "y", "x"][3 - (a.shape[0] - 1):],
              "direction": "moving_to_fixed", "moving_layer": str(moving_layer),
              "fixed_layer": str(fixed_layer)}
    clash = set(metadata) & set(record)
    if clash:
        raise ValueError(f"metadata may not override {sorted(clash)}")
    record.update({k: (v.tolist() if isinstance(v, np.ndarray) else v)
                   for k, v in metadata.items()})
    path = Path(path)
    _write_atomic(path, json.dumps(record, indent=2))
    return path


def read_transform_json(path) -> dict:
    """Read a transform written by :func:`write_transform_json`: the record with
    ``"affine"`` as a float64 array, checked for units µm and direction moving → fixed."""
    record = json.loads(Path(path).read_text())
    if not isinstance(record, dict) or "affine" not in record:
        raise ValueError(f"{path}: not a transform file (no 'affine')")
    if record.get("units") != "um" or record.get("direction") != "moving_to_fixed":
        raise ValueError(f"{path}: expected units 'um' and direction 'moving_to_fixed', got "
                         f"{record.get('units')!r}, {record.get('direction')!r}")
    record["affine"] = check_affine(record["affine"])
    return record
