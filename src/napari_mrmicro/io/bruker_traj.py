"""ParaVision k-space trajectories (the ``traj`` file of spiral, UTE, ZTE and radial scans).

Non-Cartesian ParaVision methods (``PVM_SpiralMode``, ``NPro``: SPIRAL, UTE, UTE3D, ZTE,
RADIAL) write the sampled k-space positions next to the raw data, in the scan folder, as
``traj``:

- float64, little-endian, no header;
- ParaVision's column-major array ``(ndim, samples, readouts)``, i.e. C order
  ``(readouts, samples, ndim)``: the coordinates of one sample together, then the samples
  of a readout (spiral interleave or radial projection), then the readouts;
- coordinates in ParaVision's gradient order: read, phase, slice;
- units: k relative to the grid, ±0.5 at k_max = N/2 cycles per FOV (N = ``PVM_Matrix``
  on that axis).

This layout is how independent readers take the file: brukerapi
(isi-nmr/brukerapi-python, ``brukerapi/config/properties_traj_core.json``: dtype ``f8``,
storage shape ``(ACQ_dim, samples, NPro)`` for UTE/ZTE/radial and
``(ACQ_dim, samples, PVM_SpiralNbOfInterleaves)`` for SPIRAL, Fortran order), MRIReco.jl
(``MRIFiles/src/Bruker/BrukerSequence.jl``: ``Array{Float64,3}(3, ACQ_size[1],
ACQ_size[2])`` for UTE3D, used unscaled as MRIReco's nodes, which span [−0.5, 0.5)), and
isinmrtbx (``readBrukerTrajFile``: interleaved x/y float64, (samples, projections) per
coordinate in column-major order).

Some methods normalise to ±1 at k_max instead: a file whose largest |k| lies in (0.5, 1]
is taken as normalised to ±1 (κ = k·N/2), one within ±0.5 as above (κ = k·N); anything
larger is refused rather than guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_mrmicro.io._common import FormatError
from napari_mrmicro.io.bruker import _numbers, _one

TRAJ_NAME = "traj"
#: Slack on the ±0.5 / ±1 bounds (rounding of the stored gradient shapes).
_TOLERANCE = 1e-3


def _dimensions(acqp: dict, method: dict, where) -> tuple:
    """The grid (PVM_Matrix, read first) and the number of trajectory coordinates."""
    matrix = _numbers(method, "PVM_Matrix", where, kind=int)
    if not matrix or any(n < 1 for n in matrix) or len(matrix) > 3:
        raise FormatError(where, f"method PVM_Matrix = {matrix} is not 1-3 positive integers: "
                                 "the trajectory's grid is unknown")
    ndim = _one(acqp, "ACQ_dim", len(matrix))
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim != len(matrix):
        raise FormatError(where, f"acqp ACQ_dim = {ndim!r} disagrees with PVM_Matrix "
                                 f"{matrix}")
    return tuple(matrix), ndim


def read_trajectory(scan_folder, acqp: dict, method: dict, samples: int,
                    readouts: int) -> np.ndarray:
    """Read a scan's ``traj`` file as k-space positions in cycles per field of view.

    Parameters
    ----------
    scan_folder : path
        The ParaVision scan folder (holding ``acqp``, ``method``, ``traj``).
    acqp, method : dict
        The parsed parameter files (:func:`~napari_mrmicro.io.jcamp.read_jcamp`); ``PVM_Matrix``
        gives the grid, ``ACQ_dim`` the number of coordinates.
    samples, readouts : int
        Samples per readout and readouts (interleaves or projections) the raw data hold.

    Returns
    -------
    ndarray of float32
        ``(readouts, samples, ndim)``, κ = grid index − N // 2, last axis in image-axis order
        (``(y, x)`` or ``(z, y, x)``), as :attr:`~napari_mrmicro.core.kspace.KSpace.trajectory`.

    Raises
    ------
    FormatError
        No ``traj`` file, a size that is not ``readouts × samples × ndim`` float64 values,
        non-finite values, or coordinates beyond ±1 of k_max.
    """
    path = Path(scan_folder) / TRAJ_NAME
    if not path.is_file():
        raise FormatError(path, "no trajectory file: a non-Cartesian scan (PVM_SpiralMode / "
                                "NPro) needs its traj to be reconstructed")
    matrix, ndim = _dimensions(acqp, method, Path(scan_folder) / "method")
    for name, value in (("samples", samples), ("readouts", readouts)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"read_trajectory: {name} must be a positive integer, got "
                             f"{value!r}")
    expected = int(readouts) * int(samples) * ndim
    size = path.stat().st_size
    if size != 8 * expected:
        raise FormatError(path, f"holds {size} bytes but {readouts} readouts x {samples} "
                                f"samples x {ndim} coordinates of float64 need {8 * expected}")
    raw = np.fromfile(path, dtype="<f8").reshape(int(readouts), int(samples), ndim)
    if not np.all(np.isfinite(raw)):
        raise FormatError(path, "the trajectory holds NaN or Inf")
    largest = float(np.abs(raw).max())
    if largest <= 0.5 + _TOLERANCE:
        per_axis = np.asarray(matrix, dtype=float)
    elif largest <= 1 + _TOLERANCE:
        per_axis = np.asarray(matrix, dtype=float) / 2
    else:
        raise FormatError(path, f"|k| reaches {largest:.4g}: neither normalised to ±0.5 nor "
                                "to ±1 at k_max")
    # read, phase, slice -> image axes (z, y, x)
    return (raw * per_axis)[..., ::-1].astype(np.float32)
