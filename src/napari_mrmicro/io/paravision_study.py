"""A ParaVision study folder: every scan's image, each where the scanner put it.

A study (``<study>/``, with its ``subject`` file) holds numbered scan folders
``<study>/<E>/``. Its scans share the subject's coordinates, so opening the study puts
a RARE, a FLASH, an EPI and a B0 map of one head on top of each other in world space, as
ParaVision's viewer shows them. Each scan contributes the images of its first processed
data set (``pdata/<P>/2dseq``, :mod:`.bruker`; a tripilot gives one per orientation), in
scan-number order. In napari the study opens on its finest anatomical image
(:func:`shown_scan`); the other scans are there, hidden, a click on their eye away: stacked
in world space the coarsest scan on top, or an opaque field map, would cover the rest.

Scans without an image (raw data only, or an adjustment without pdata) are left out, and
so is a scan whose image cannot be read; both are named in a warning, and the other scans
still open. Raw k-space opens from a scan's ``fid``/``rawdata.job0`` file
(:mod:`.bruker_raw`), one scan at a time, so that opening a study reads no raw data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from napari_mrmicro.io import bruker
from napari_mrmicro.io._common import LAZY_BYTES, FormatError, Volume


def scans(path: Path) -> list[Path]:
    """The numbered scan folders of a study, in scan-number order."""
    try:
        folders = [p for p in path.iterdir() if p.is_dir() and p.name.isdigit()
                   and (p / "acqp").is_file()]
    except OSError:
        return []
    return sorted(folders, key=lambda p: int(p.name))


def can_read(path: Path) -> bool:
    """True for a folder holding a ParaVision ``subject`` file and numbered scan folders
    (``<E>/acqp``)."""
    try:
        path = Path(path)
        return path.is_dir() and (path / "subject").is_file() and bool(scans(path))
    except OSError:
        return False


def _images(scan: Path) -> list[Path]:
    """The 2dseq of the scan's first processed data set with an image, or none."""
    pdata = scan / "pdata"
    if not pdata.is_dir():
        return []
    numbered = sorted((p for p in pdata.iterdir() if p.name.isdigit()
                       and (p / "2dseq").is_file() and (p / "visu_pars").is_file()),
                      key=lambda p: int(p.name))
    return [numbered[0] / "2dseq"] if numbered else []


def read_all(path: Path, lazy: bool | None = None) -> list[Volume]:
    """Every scan's image (:func:`.bruker.read_all`), in scan order.

    Parameters
    ----------
    path : Path
        The study folder.
    lazy : bool, optional
        Memory-map the 2dseq files. Default: lazy when the study's images together exceed
        :data:`~napari_mrmicro.io._common.LAZY_BYTES`.
    """
    path = Path(path)
    images = {scan: _images(scan) for scan in scans(path)}
    if lazy is None:
        lazy = sum(seq.stat().st_size for found in images.values() for seq in found) \
            > LAZY_BYTES
    volumes, skipped = [], []
    for scan, found in images.items():
        if not found:
            skipped.append(f"scan {scan.name} (no pdata image)")
            continue
        try:
            volumes.extend(bruker.read_all(found[0], lazy=lazy))
        except (FormatError, ValueError, OSError) as error:
            skipped.append(f"scan {scan.name} ({error})")
    if skipped:
        warnings.warn(f"{path}: left out {'; '.join(skipped)}", stacklevel=2)
    if not volumes:
        raise FormatError(path, f"no scan of this ParaVision study has a readable image: "
                                f"{'; '.join(skipped)}")
    return volumes


def shown_scan(volumes: list[Volume]) -> int:
    """Index of the image a study opens on: the anatomical image (one without a value
    unit, i.e. not a field map or another parameter map) with the smallest voxels, the
    first such scan on a tie; the first image when every one is a map."""
    anatomical = [i for i, volume in enumerate(volumes)
                  if volume.metadata.get("value_unit") in (None, "a.u.")] or [0]
    return min(anatomical, key=lambda i: float(np.prod(volumes[i].spacing_um)))


def read(path: Path, lazy: bool | None = None) -> Volume:
    """A study is several scans: refused with their numbers (open one scan folder)."""
    numbers = ", ".join(p.name for p in scans(Path(path)))
    raise FormatError(path, f"a ParaVision study of scans {numbers}: give one scan folder "
                            "(<study>/<scan>), or open the study in napari for all of them")
