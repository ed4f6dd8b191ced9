"""FSL gradient tables: the ``bval``/``bvec`` text files that come with a diffusion-weighted
NIfTI (FSL, dcm2niix, BIDS ``*_dwi.bval``/``*_dwi.bvec``).

Format (FSL FDT user guide; MRtrix3 "Diffusion gradient scheme handling"): ``bval`` holds
one b-value (s/mm²) per volume, whitespace-separated; ``bvec`` three rows (x, y, z
components) of one column per volume (a file of one row per volume, as some converters
write, is read too when it cannot be mistaken: not 3 volumes). The vectors are in the
image's voxel axes (i, j, k), in FSL's radiological convention: when the NIfTI's
voxel-to-world matrix has a positive determinant, the i component is negated (FSL FDT
FAQ, "What conventions do the bvecs use?"). Vectors whose length departs from 1 by more
than 1 % scale their b-value by the length squared, as MRtrix3 does for multi-shell
tables written as one b-value with shorter vectors.

The result is the b-matrix ``b·ĝĝᵀ`` of each volume in the array axes ``(z, y, x)`` of the
volume napari shows (the NIfTI axes reversed): what
:func:`~napari_mrmicro.core.diffusion_tensor.fit_diffusion` takes. A b-value and a
direction cannot hold the imaging gradients' weighting; a scanner's own b-matrix (as
ParaVision writes) is better where there is one. Written tables (for FSL, MRtrix3 or
DIPY) give each b-matrix's trace and principal axis, the part such tables can hold; the
NIfTI's own extension keeps the full matrices for this plugin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_mrmicro.core.diffusion_tensor import b_matrices
from napari_mrmicro.io._common import FormatError, atomic_output

#: A vector whose length departs from 1 by more than this scales its b-value (MRtrix3).
NORM_TOLERANCE = 0.01
_NIFTI_SUFFIXES = (".nii.gz", ".nii", ".hdr")


def find_gradient_files(image: Path) -> tuple[Path, Path] | None:
    """The ``(bval, bvec)`` files of a NIfTI image: ``<stem>.bval``/``<stem>.bvec`` (also
    ``.bvals``/``.bvecs``) beside it, else FSL's ``bvals``/``bvecs`` in its folder; None
    when there are none."""
    image = Path(image)
    name = image.name
    stem = next((name[:-len(s)] for s in _NIFTI_SUFFIXES if name.lower().endswith(s)), None)
    candidates = [] if stem is None else [
        (image.with_name(stem + a), image.with_name(stem + b))
        for a, b in ((".bval", ".bvec"), (".bvals", ".bvecs"))]
    candidates.append((image.with_name("bvals"), image.with_name("bvecs")))
    for bval, bvec in candidates:
        if bval.is_file() and bvec.is_file():
            return bval, bvec
    return None


def _numbers(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="ascii", errors="strict")
    except (OSError, UnicodeDecodeError) as error:
        raise FormatError(path, f"cannot read the gradient table ({error})") from None
    rows = [line.replace(",", " ").split() for line in text.splitlines() if line.strip()]
    try:
        values = [[float(v) for v in row] for row in rows]
    except ValueError:
        raise FormatError(path, "the gradient table holds something that is not a "
                                "number") from None
    if not values or len({len(row) for row in values}) != 1:
        raise FormatError(path, "the gradient table's rows differ in length (or it is "
                                "empty)")
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise FormatError(path, "the gradient table holds NaN or Inf")
    return array


def read_gradient_table(bval: Path, bvec: Path, voxel_to_world: np.ndarray,
                        volumes: int) -> np.ndarray:
    """The b-matrices (volumes, 3, 3), s/mm², in array axes (z, y, x), of an FSL table.

    Parameters
    ----------
    bval, bvec : Path
    voxel_to_world : ndarray (4, 4)
        The NIfTI's voxel (i, j, k) to world matrix (nibabel's ``img.affine``), whose
        determinant decides the sign of the i component.
    volumes : int
        The image's diffusion-weighted volumes (its 4th NIfTI dimension).
    """
    b = _numbers(Path(bval)).ravel()
    vectors = _numbers(Path(bvec))
    if len(b) != volumes:
        raise FormatError(bval, f"holds {len(b)} b-values for an image of {volumes} volumes")
    if np.any(b < 0):
        raise FormatError(bval, f"negative b-values {b[b < 0][:3].tolist()}")
    if vectors.shape == (3, volumes):
        g = vectors.T.copy()
    elif vectors.shape == (volumes, 3) and volumes != 3:
        g = vectors.copy()
    else:
        raise FormatError(bvec, f"holds a {vectors.shape[0]}×{vectors.shape[1]} table for "
                                f"{volumes} volumes: expected 3 rows of {volumes}")
    norm = np.linalg.norm(g, axis=1)
    lost = (b > 0) & (norm == 0)
    if lost.any():
        raise FormatError(bvec, f"volumes {np.flatnonzero(lost).tolist()} have b > 0 and no "
                                "direction")
    short = (norm > 0) & (np.abs(norm - 1) > NORM_TOLERANCE)
    b = np.where(short, b * norm ** 2, b)
    if np.linalg.det(np.asarray(voxel_to_world, dtype=np.float64)[:3, :3]) > 0:
        g[:, 0] *= -1  # FSL's radiological voxel convention
    return b_matrices(b, g[:, ::-1])  # (i, j, k) -> array axes (z, y, x) = (k, j, i)



def gradient_files(image: Path) -> tuple[Path, Path]:
    """The ``(<stem>.bval, <stem>.bvec)`` written beside a NIfTI image."""
    image = Path(image)
    stem = next(image.name[:-len(s)] for s in _NIFTI_SUFFIXES
                if image.name.lower().endswith(s))
    return image.with_name(stem + ".bval"), image.with_name(stem + ".bvec")


def write_gradient_table(image: Path, b_matrix, voxel_to_world: np.ndarray) -> list[str]:
    """Write the FSL table of ``b_matrix`` (n, 3, 3), s/mm² in array axes (z, y, x), beside
    the NIfTI ``image`` whose voxel-to-world matrix is ``voxel_to_world``: each b-value the
    matrix's trace, each vector its principal axis in voxel axes (i negated when the
    determinant is positive, as FSL reads it). Returns the paths written."""
    b = np.asarray(b_matrix, dtype=np.float64)
    values = np.trace(b, axis1=1, axis2=2)
    vectors = np.linalg.eigh(b)[1][:, ::-1, -1]  # (n, 3) in voxel axes (i, j, k)
    vectors[values <= 0] = 0.0
    vectors *= np.where(vectors[np.arange(len(b)), np.argmax(np.abs(vectors), axis=1)] < 0,
                        -1, 1)[:, None]
    if np.linalg.det(np.asarray(voxel_to_world, dtype=np.float64)[:3, :3]) > 0:
        vectors[:, 0] *= -1
    written = []
    for path, text in zip(gradient_files(image), (
            " ".join(f"{v:.6g}" for v in values) + "\n",
            "\n".join(" ".join(f"{v:.8f}" for v in row) for row in vectors.T) + "\n")):
        with atomic_output(path) as tmp:
            Path(tmp).write_text(text, encoding="ascii")
        written.append(str(path))
    return written
