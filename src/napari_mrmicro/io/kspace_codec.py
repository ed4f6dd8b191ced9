"""The k-space codec: one :class:`~napari_mrmicro.core.kspace.KSpace` and its three forms.

A k-space travels as ``KSpace`` (complex data, acquired mask, acquisition, echo position,
coil and multi-slice layout, trajectory and density weights). It is turned into, and read
back from, exactly these forms here and nowhere else (DESIGN.md, "one codec per concept"):

**Volume** (what raw readers return and what the pipeline carries)
    ``data`` is the complex64 k-space, ``(echo, z, y, x)`` (a coil axis first with
    ``coil_axis == 0``; ``(echo, readout, sample)`` for a trajectory), ``spacing_um`` the
    image voxel size (FOV / matrix) and ``metadata`` holds ``kspace: True`` with the
    entries of :data:`KSPACE_KEYS`: ``sampled`` (bool ``(z, y, x)`` mask or None),
    ``sampled_fraction``, ``coil_axis``, ``multislice``, ``echo_position``, ``trajectory``,
    ``density``, ``acquisition`` (the protocol fields the source states, as a dict) and
    ``acquisition_assumed`` (the other fields, as the reader took them: defaults or
    placeholders), so that the protocol is rebuilt exactly.

**Layer** (napari)
    The layer shows ``log(1 + |k|)`` (float32); ``metadata["mrmicro"]`` is the Volume's
    metadata with ``kspace`` holding the complex array itself. The layer tuple (placement,
    name, colormap) is built by :mod:`napari_mrmicro._layers`.

**OME-Zarr store** (OME-NGFF 0.4: Moore et al., Nat Methods 2021;18:1496)
    The multiscale image (level ``0``, what any OME-NGFF viewer shows) is the float32
    log-magnitude; the k-space itself sits beside it, losslessly, in real arrays: ``kspace/data``
    float32 ``data.shape + (2,)`` (real, imaginary), ``kspace/sampled`` uint8, and
    ``kspace/trajectory`` / ``kspace/density`` float32; ``.zattrs["napari-mrmicro"]["kspace"]``
    is a JSON object (:func:`store_attributes`) naming them with the layout flags. No
    array is ever written as text.

This module imports neither napari nor zarr: the store functions take an open zarr group.
The centred-FFT convention of the data is the one of :mod:`napari_mrmicro.core.kspace`.
"""

from __future__ import annotations

import numpy as np

from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.io._common import FormatError, Volume

#: Metadata entries that describe k-space: dropped from the images made from it.
KSPACE_KEYS = ("kspace", "sampled", "sampled_fraction", "coil_axis", "multislice",
               "echo_position", "trajectory", "density", "acquisition_assumed")
#: Version of the OME-Zarr k-space layout written by :func:`store_arrays`.
STORE_VERSION = 1
#: Sub-group of the OME-Zarr store holding the k-space arrays.
STORE_GROUP = "kspace"
_ARRAYS = ("data", "sampled", "trajectory", "density")


def is_kspace(metadata) -> bool:
    """True for the metadata of a k-space Volume (``kspace: True``) or of a k-space layer
    (``kspace`` = the complex array)."""
    value = (metadata or {}).get("kspace") if isinstance(metadata, dict) else None
    return value is True or (isinstance(value, np.ndarray) and np.iscomplexobj(value))


def image_metadata(metadata: dict) -> dict:
    """``metadata`` of a k-space without its k-space entries: what an image reconstructed
    from it inherits (source, header, acquisition ...)."""
    return {k: v for k, v in metadata.items() if k not in KSPACE_KEYS and k != "pyramid"}


def _axis_labels(kspace: KSpace) -> tuple:
    labels = ("echo", "z", "y", "x") if kspace.cartesian else ("echo", "readout", "sample")
    return (("coil",) if kspace.coil_axis is not None else ()) + labels


# --------------------------------------------------------------------------- KSpace <-> Volume


def kspace_to_volume(kspace: KSpace, metadata: dict | None = None, *, stated: dict | None = None,
                     name: str | None = None, origin_um=None, affine_um=None) -> Volume:
    """The :class:`Volume` form of ``kspace``.

    Parameters
    ----------
    kspace : KSpace
    metadata : dict, optional
        Further entries (``format``, ``source``, ``header``, reader-specific ones); its
        k-space entries are replaced by those of ``kspace``.
    stated : dict, optional
        The acquisition fields the source states (a reader's header), stored as
        ``metadata["acquisition"]``, with the values of ``kspace.acquisition``; the other
        fields go to ``metadata["acquisition_assumed"]``. Default: every field.
    name, origin_um, affine_um
        As :class:`Volume`; a trajectory's samples have no grid, so its Volume has no
        placement (spacing 1 on the readout and sample axes).
    """
    check_kspace(kspace)
    full = kspace.acquisition.to_dict()
    stated = full if stated is None else dict(stated)
    assumed = {k: v for k, v in full.items() if k not in stated}
    if Acquisition.from_dict({**assumed, **stated}) != kspace.acquisition:
        raise ValueError(f"kspace_to_volume: stated acquisition {stated} differs from the "
                         "k-space's acquisition")
    meta = {**image_metadata(metadata or {}), **_entries(kspace, stated, assumed)}
    if not kspace.cartesian:
        return Volume(kspace.data, (1.0, 1.0), meta, axis_labels=_axis_labels(kspace),
                      name=name)
    return Volume(kspace.data, kspace.acquisition.voxel_um, meta, origin_um=origin_um,
                  axis_labels=_axis_labels(kspace), name=name, affine_um=affine_um)


def _entries(kspace: KSpace, stated: dict, assumed: dict) -> dict:
    """The k-space entries of a Volume's metadata (:data:`KSPACE_KEYS`, ``acquisition``)."""
    sampled = kspace.sampled
    entries = {"acquisition": stated, "acquisition_assumed": assumed, "kspace": True,
               "sampled": sampled, "coil_axis": kspace.coil_axis,
               "multislice": bool(kspace.multislice), "echo_position": kspace.echo_position,
               "trajectory": kspace.trajectory, "density": kspace.density}
    if sampled is not None:
        entries["sampled_fraction"] = float(np.count_nonzero(sampled) / sampled.size)
    return entries


def volume_to_kspace(volume: Volume) -> KSpace:
    """The :class:`KSpace` of a k-space Volume (a raw reader's, an OME-Zarr store's or a
    pipeline value); ValueError naming the source for an image."""
    where = volume.metadata.get("source") or volume.name or "the volume"
    if volume.metadata.get("kspace") is not True:
        raise ValueError(f"{where} holds an image, not k-space")
    return _kspace(volume.data, volume.metadata, where)


def _kspace(data, md: dict, where) -> KSpace:
    """KSpace from complex ``data`` and the k-space entries of ``md``."""
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"{where}: k-space data of dtype {data.dtype} are not numeric")
    data = data.astype(np.complex64, copy=False)
    coil_axis = md.get("coil_axis")
    trajectory = md.get("trajectory")
    if trajectory is None:  # (z, y, x) k-space of one echo: give it its echo axis
        if data.ndim == 3 and coil_axis is None:
            data = data[None]
        elif data.ndim == 4 and coil_axis is not None:
            data = data[:, None]
        default = {"matrix": data.shape[-3:]}
    else:
        default = {}
    try:
        acquisition = Acquisition.from_dict({**default, **(md.get("acquisition_assumed") or {}),
                                             **(md.get("acquisition") or {})})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: acquisition is not a valid protocol: {error}") from None
    sampled = md.get("sampled")
    kspace = KSpace(data, acquisition,
                    sampled=None if sampled is None else np.asarray(sampled, dtype=bool),
                    coil_axis=coil_axis, multislice=bool(md.get("multislice")),
                    echo_position=md.get("echo_position"),
                    trajectory=None if trajectory is None else
                    np.asarray(trajectory, dtype=np.float32),
                    density=None if md.get("density") is None else
                    np.asarray(md["density"], dtype=np.float32))
    try:
        check_kspace(kspace)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return kspace


def check_kspace(kspace: KSpace) -> None:
    """ValueError naming the attribute when the parts of ``kspace`` do not fit together."""
    data = kspace.data
    if not np.iscomplexobj(data):
        raise ValueError(f"k-space data must be complex, got dtype {data.dtype}")
    if kspace.coil_axis not in (None, 0):
        raise ValueError(f"coil_axis must be None or 0, got {kspace.coil_axis!r}")
    lead = 1 + (kspace.coil_axis is not None)
    core = 3 if kspace.cartesian else 2
    if data.ndim != lead + core:
        layout = ("(coil, " if lead == 2 else "(") + \
            ("echo, z, y, x)" if kspace.cartesian else "echo, readout, sample)")
        raise ValueError(f"k-space data of shape {data.shape} are not {layout}")
    if kspace.sampled is not None:
        sampled = np.asarray(kspace.sampled)
        if sampled.dtype != bool or sampled.shape != data.shape[-core:]:
            raise ValueError(f"sampled must be a bool mask of shape {data.shape[-core:]}, "
                             f"got {sampled.dtype} {sampled.shape}")
    if kspace.cartesian and tuple(kspace.acquisition.matrix) != data.shape[-3:]:
        raise ValueError(f"acquisition matrix {tuple(kspace.acquisition.matrix)} is not the "
                         f"k-space grid {data.shape[-3:]}")
    position = kspace.echo_position
    if position is not None and not (isinstance(position, (int, float, np.integer, np.floating))
                                     and not isinstance(position, bool)
                                     and 0.0 <= position <= 1.0):
        raise ValueError(f"echo_position must be a fraction in [0, 1] or None, got "
                         f"{position!r}")
    if kspace.trajectory is not None:
        trajectory = np.asarray(kspace.trajectory)
        if trajectory.ndim != 3 or trajectory.shape[:2] != data.shape[-2:] \
                or not 1 <= trajectory.shape[2] <= 3:
            raise ValueError(f"trajectory of shape {trajectory.shape} is not (readouts, "
                             f"samples, 1 to 3 axes) for data {data.shape}")
    if kspace.density is not None:
        if kspace.trajectory is None:
            raise ValueError("density weights need a trajectory")
        if np.shape(kspace.density) != data.shape[-2:]:
            raise ValueError(f"density of shape {np.shape(kspace.density)} is not (readouts, "
                             f"samples) {data.shape[-2:]}")


# --------------------------------------------------------------------------- layer


def log_magnitude(data) -> np.ndarray:
    """``log(1 + |k|)`` as float32: how k-space is shown."""
    return np.log1p(np.abs(np.asarray(data))).astype(np.float32)


def layer_data(volume: Volume) -> tuple:
    """``(shown image, metadata["mrmicro"])`` of a k-space layer made from a k-space Volume:
    the log-magnitude, and the Volume's metadata with ``kspace`` = the complex data, both
    of the Volume's shape (its placement applies)."""
    volume_to_kspace(volume)  # the parts fit together
    data = np.asarray(volume.data).astype(np.complex64, copy=False)
    return log_magnitude(data), {**volume.metadata, "kspace": data}


def layer_to_kspace(metadata: dict, name: str = "layer") -> KSpace:
    """The :class:`KSpace` a k-space layer carries in ``metadata["mrmicro"]``; ValueError
    when the layer ``name`` holds no k-space."""
    if not is_kspace(metadata) or metadata.get("kspace") is True:
        raise ValueError(f"layer {name!r} holds no k-space (open raw data or simulate)")
    return _kspace(metadata["kspace"], metadata, f"layer {name!r}")


def layer_volume(volume: Volume) -> Volume:
    """The k-space Volume of a Volume read off a k-space layer (its data the shown
    log-magnitude, its metadata the layer's): the complex data take the data's place, the
    layer's placement is kept."""
    kspace = layer_to_kspace(volume.metadata, volume.name or "layer")
    return kspace_to_volume(kspace, volume.metadata, stated=volume.metadata.get("acquisition"),
                            name=volume.name, origin_um=volume.origin_um,
                            affine_um=volume.affine_um)


# --------------------------------------------------------------------------- OME-Zarr store


def store_arrays(volume: Volume) -> tuple:
    """What an OME-Zarr store of a k-space Volume holds.

    Returns
    -------
    shown : ndarray of float32
        The log-magnitude, written as the multiscale image.
    arrays : dict
        ``{name: real ndarray}`` for the :data:`STORE_GROUP` sub-group: ``data`` (float32,
        real and imaginary on a last axis of 2), ``sampled`` (uint8), ``trajectory`` and
        ``density`` (float32) when present.
    attributes : dict
        JSON-clean description for ``.zattrs["napari-mrmicro"]["kspace"]``.
    """
    kspace = volume_to_kspace(volume)
    data = np.ascontiguousarray(kspace.data, dtype=np.complex64)
    arrays = {"data": data.view(np.float32).reshape(data.shape + (2,))}
    if kspace.sampled is not None:
        arrays["sampled"] = np.asarray(kspace.sampled, dtype=np.uint8)
    if kspace.trajectory is not None:
        arrays["trajectory"] = np.asarray(kspace.trajectory, dtype=np.float32)
    if kspace.density is not None:
        arrays["density"] = np.asarray(kspace.density, dtype=np.float32)
    attributes = store_attributes(kspace, arrays, volume.metadata.get("acquisition_assumed"))
    return log_magnitude(data), arrays, attributes


def store_attributes(kspace: KSpace, arrays: dict, assumed: dict | None = None) -> dict:
    """JSON-clean attributes of a stored k-space: version, layout, shape, flags, the names
    of the ``arrays`` and the ``assumed`` acquisition fields (the stated ones are the
    store's ``acquisition``)."""
    position = kspace.echo_position
    return {"version": STORE_VERSION, "group": STORE_GROUP,
            "layout": "complex64 as float32 (..., 2): real, imaginary",
            "shape": [int(n) for n in kspace.data.shape],
            "coil_axis": kspace.coil_axis, "multislice": bool(kspace.multislice),
            "echo_position": None if position is None else float(position),
            "arrays": sorted(arrays), "acquisition_assumed": dict(assumed or {})}


def store_metadata(root, attributes, acquisition: dict, where) -> tuple:
    """``(complex64 data, k-space metadata entries)`` read from an OME-Zarr store.

    ``root`` is the open zarr group, ``attributes`` its ``napari-mrmicro`` ``kspace``
    entry and ``acquisition`` the stored (stated) protocol; FormatError naming ``where``
    when they do not describe k-space as :func:`store_arrays` writes it.
    """
    if not isinstance(attributes, dict) or attributes.get("version") != STORE_VERSION:
        raise FormatError(where, f"napari-mrmicro 'kspace' is {str(attributes)[:60]!r}, not "
                                 f"a version-{STORE_VERSION} description of the k-space arrays "
                                 "(written by an older napari-mrmicro: save it again)")
    shape, names = attributes.get("shape"), attributes.get("arrays")
    if not (isinstance(shape, list) and shape
            and all(isinstance(n, int) and n > 0 for n in shape)
            and isinstance(names, list) and "data" in names and set(names) <= set(_ARRAYS)):
        raise FormatError(where, f"napari-mrmicro 'kspace' shape {shape!r} / arrays {names!r} "
                                 "are not valid")
    try:
        group = root[STORE_GROUP]
        arrays = {name: group[name] for name in names}
    except KeyError as error:
        raise FormatError(where, f"the k-space array {error} named in the attributes is "
                                 "missing") from None
    expected = {"data": np.float32, "sampled": np.uint8, "trajectory": np.float32,
                "density": np.float32}
    for name, array in arrays.items():
        if array.dtype != expected[name]:
            raise FormatError(where, f"{STORE_GROUP}/{name} must be {np.dtype(expected[name])}"
                                     f", got {array.dtype}")
    if tuple(arrays["data"].shape) != tuple(shape) + (2,):
        raise FormatError(where, f"{STORE_GROUP}/data is {tuple(arrays['data'].shape)}, "
                                 f"expected {tuple(shape) + (2,)}")
    values = {name: array[...] for name, array in arrays.items()}
    data = np.ascontiguousarray(values.pop("data")).view(np.complex64)[..., 0]
    sampled = values.get("sampled")
    if sampled is not None and sampled.size and sampled.max() > 1:
        raise FormatError(where, f"{STORE_GROUP}/sampled holds values other than 0 and 1")
    parts = {"coil_axis": attributes.get("coil_axis"),
             "multislice": attributes.get("multislice"),
             "echo_position": attributes.get("echo_position"),
             "acquisition": {**(attributes.get("acquisition_assumed") or {}), **acquisition},
             **values}
    try:  # the parts must fit together as a KSpace
        kspace = _kspace(data, parts, STORE_GROUP)
    except ValueError as error:
        raise FormatError(where, str(error)) from None
    return kspace.data, _entries(kspace, acquisition,
                                 dict(attributes.get("acquisition_assumed") or {}))
