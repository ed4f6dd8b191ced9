"""OME-Zarr (OME-NGFF): chunked multiscale volumes for data larger than memory.

Written as NGFF 0.4 (Moore et al., "OME-NGFF: a next-generation file format for expanding
bioimaging data-access strategies", Nat Methods 2021;18:1496; specification
https://ngff.openmicroscopy.org/0.4/): a Zarr v2 group whose ``.zattrs`` hold
``multiscales`` — the ``axes`` (``z``, ``y``, ``x`` of type ``space`` in ``micrometer``;
leading echo/channel axes) and, per resolution level, a ``scale`` and ``translation``
coordinate transformation — and one array per level (``0`` full resolution, ``1`` half, ...)
with ``/``-separated chunk keys. The reader also takes NGFF 0.5 (Zarr v3, metadata under
``attributes["ome"]``) and any length unit of the NGFF list.

Levels halve every spatial axis longer than one voxel: 2×2×2 means for images, every second
voxel for labels (``multiscales[0]["type"]`` says which), so a label never becomes a
fractional one. A level's voxel centre ``i`` sits at ``origin + (f − 1)/2 · s₀ + i · f · s₀``
(f the level's factor, s₀ the full-resolution spacing), which is the ``translation`` written.
What NGFF cannot say (acquisition, layer type, name, the header of the file the volume came
from, the world affine of a rotated or flipped volume — NGFF 0.4 holds only scale and
translation) goes into ``.zattrs["napari-mrmicro"]``. k-space is stored as
:mod:`~napari_mrmicro.io.kspace_codec` lays it out: the image (one level) is its
log-magnitude, the complex data, acquired mask and trajectory sit losslessly in real arrays
of the ``kspace`` sub-group, described by ``.zattrs["napari-mrmicro"]["kspace"]``.

The source is read one slab of chunks (along z) at a time; each slab's chunks are compressed
and stored in parallel, and the slab is halved in memory for the next level, which is
written the same way as its slabs fill up. Writing needs memory for one slab (128 slices by
default) plus a slab per smaller level, never for the volume, and reads nothing back; lazy
reading needs a few chunks.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from napari_mrmicro.io import kspace_codec
from napari_mrmicro.core import _slabs, geometry
from napari_mrmicro.io._common import (LAZY_BYTES, FormatError, Volume, apply_payload,
                                       atomic_output, parse_payload, payload_dtype,
                                       payload_text, spacing_known, unit_to_s,
                                       unit_to_um)

WRITE_SUFFIXES = (".zarr",)
#: Edge of the default chunk (voxels per spatial axis).
DEFAULT_CHUNK = 128
#: Automatic pyramids stop once the largest spatial axis is at most this long.
PYRAMID_STOP = 256
MAX_LEVELS = 10
PAYLOAD_ATTR = "napari-mrmicro"
_MAX_ATTRS_BYTES = 16 * 2**20
_SPATIAL = ("z", "y", "x")


# --------------------------------------------------------------------------- reading


def _attrs(path: Path) -> tuple[dict, int]:
    """(group attributes, zarr format) of a Zarr group folder; raises FormatError."""
    for name, fmt in ((".zattrs", 2), ("zarr.json", 3)):
        file = path / name
        if file.is_file():
            if file.stat().st_size > _MAX_ATTRS_BYTES:
                raise FormatError(path, f"{name} is {file.stat().st_size} bytes, too large "
                                        "for Zarr metadata")
            try:
                value = json.loads(file.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                raise FormatError(path, f"{name} is not valid JSON: {error}") from None
            if not isinstance(value, dict):
                raise FormatError(path, f"{name} is not a JSON object")
            if fmt == 3:
                value = value.get("attributes") or {}
                value = {**value, **(value.get("ome") or {})}  # NGFF 0.5: under "ome"
            return value, fmt
    raise FormatError(path, "not a Zarr group (no .zattrs or zarr.json)")


def can_read(path: Path) -> bool:
    """A folder that is a Zarr group with OME-NGFF ``multiscales``."""
    try:
        path = Path(path)
        if not path.is_dir():
            return False
        attrs, _ = _attrs(path)
        return isinstance(attrs.get("multiscales"), list) and bool(attrs["multiscales"])
    except (OSError, FormatError):
        return False


def _multiscale(path: Path, attrs: dict) -> tuple[list, list, list]:
    """(axes, level paths, per-level (scale, translation)) of the first multiscale."""
    ms = attrs["multiscales"][0]
    if not isinstance(ms, dict):
        raise FormatError(path, "multiscales[0] is not an object")
    axes = ms.get("axes")
    datasets = ms.get("datasets")
    if not isinstance(axes, list) or not axes or not isinstance(datasets, list) \
            or not datasets:
        raise FormatError(path, "multiscales[0] needs 'axes' and 'datasets'")
    axes = [a if isinstance(a, dict) else {"name": str(a)} for a in axes]
    paths, transforms = [], []
    for level, ds in enumerate(datasets):
        if not isinstance(ds, dict) or not isinstance(ds.get("path"), str):
            raise FormatError(path, f"multiscales[0].datasets[{level}] has no 'path'")
        scale, translation = [1.0] * len(axes), [0.0] * len(axes)
        for t in list(ms.get("coordinateTransformations") or []) \
                + list(ds.get("coordinateTransformations") or []):
            values = t.get("scale") if t.get("type") == "scale" else t.get("translation")
            if t.get("type") not in ("scale", "translation"):
                continue
            if not isinstance(values, list) or len(values) != len(axes):
                raise FormatError(path, f"dataset {ds['path']!r}: {t.get('type')} "
                                        f"{values!r} does not have one value per axis "
                                        f"({len(axes)})")
            if t["type"] == "scale":
                scale = [a * float(b) for a, b in zip(scale, values)]
            else:
                translation = [a + float(b) for a, b in zip(translation, values)]
        paths.append(ds["path"])
        transforms.append((scale, translation))
    return axes, paths, transforms


def _spatial_axes(path: Path, axes: list) -> list[int]:
    spatial = [i for i, a in enumerate(axes) if a.get("type") == "space"]
    if not spatial:  # untyped axes: the trailing z/y/x names
        spatial = [i for i, a in enumerate(axes) if a.get("name") in _SPATIAL]
    if not 1 <= len(spatial) <= 3 or spatial != list(range(len(axes) - len(spatial),
                                                            len(axes))):
        raise FormatError(path, f"axes {[a.get('name') for a in axes]}: expected 1 to 3 "
                                "space axes, last")
    return spatial


def _unit_factor(path: Path, axes: list, spatial: list) -> list[float]:
    factors = []
    for i in spatial:
        unit = axes[i].get("unit")
        factor = 1.0 if unit is None else unit_to_um(unit)
        if factor is None:
            raise FormatError(path, f"axis {axes[i].get('name')!r} has unit {unit!r}, which "
                                    "is not a length")
        factors.append(factor)
    return factors


def read(path: Path, lazy: bool | None = None) -> Volume:
    """Read an OME-Zarr image as a :class:`Volume` in µm.

    Lazy (``lazy=True``, or None with more than ``LAZY_BYTES`` of full-resolution data):
    ``data`` is a dask array with the file's chunks and ``metadata["pyramid"]`` lists every
    level as a dask array (full resolution first) for napari's multiscale display. In memory
    the full-resolution level only. A k-space store is read as its complex k-space, in
    memory (:func:`~napari_mrmicro.io.kspace_codec.store_metadata`), not as the
    log-magnitude image beside it.
    """
    import dask.array as da
    import zarr

    path = Path(path)
    attrs, fmt = _attrs(path)
    if not isinstance(attrs.get("multiscales"), list) or not attrs["multiscales"]:
        raise FormatError(path, "a Zarr group without OME-NGFF 'multiscales'")
    axes, level_paths, transforms = _multiscale(path, attrs)
    spatial = _spatial_axes(path, axes)
    factors = _unit_factor(path, axes, spatial)
    try:
        group = zarr.open_group(str(path), mode="r")
        arrays = [group[p] for p in level_paths]
    except (KeyError, ValueError, OSError) as error:
        raise FormatError(path, f"cannot open the level arrays {level_paths}: {error}") \
            from None
    for p, array in zip(level_paths, arrays):
        if not isinstance(array, zarr.Array) or array.ndim != len(axes):
            raise FormatError(path, f"level {p!r} is not a {len(axes)}-D array")
    scale, translation = transforms[0]
    spacing = tuple(scale[i] * f for i, f in zip(spatial, factors))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise FormatError(path, f"scale {scale} gives spacing {spacing} µm; it must be "
                                "positive")
    origin = tuple(translation[i] * f for i, f in zip(spatial, factors))
    payload = attrs.get(PAYLOAD_ATTR) if isinstance(attrs.get(PAYLOAD_ATTR), dict) else None
    if payload and payload.get("all_chunks_stored"):
        for p, array in zip(level_paths, arrays):
            if array.nchunks_initialized < array.nchunks:
                raise FormatError(path, f"level {p!r}: {array.nchunks - array.nchunks_initialized}"
                                        f" of its {array.nchunks} chunks are missing")
    labels = tuple(str(a.get("name")) for a in axes)
    metadata = {"format": "omezarr", "source": str(path), "header": attrs,
                "acquisition": {}, "zarr_format": fmt,
                "ngff_version": str(attrs["multiscales"][0].get("version")
                                    or attrs.get("version") or ""),
                "unit": "µm", "levels": len(arrays)}
    unitless = [str(axes[i].get("name")) for i in spatial if axes[i].get("unit") is None]
    if unitless:  # NGFF's unit is optional: a number without one is no length
        metadata.update(spacing_known=False, spacing_source={
            name: "no unit in the file: 1 µm per step assumed" for name in unitless})
        if len(unitless) == len(spatial):
            metadata["uncalibrated"] = True
    timed = [i for i, a in enumerate(axes[:-len(spatial)]) if a.get("type") == "time"
             and unit_to_s(a.get("unit")) and np.isfinite(scale[i]) and scale[i] > 0]
    if len(timed) == 1:  # the time series' step, in s (an axis named "t" carries it)
        metadata["time_step_s"] = float(scale[timed[0]]) * unit_to_s(axes[timed[0]]["unit"])
    labels, layer_type, name = apply_payload(payload, metadata, labels)
    full = arrays[0]
    nbytes = math.prod(full.shape) * full.dtype.itemsize
    if lazy is None:
        lazy = nbytes > LAZY_BYTES
    if payload and "kspace" in payload:  # the image is its log-magnitude; read the k-space
        data, entries = kspace_codec.store_metadata(group, payload["kspace"],
                                                    metadata["acquisition"], path)
        metadata.update(entries)
    elif lazy:
        levels = [da.from_zarr(a) for a in arrays]
        data = levels[0]
        if len(levels) > 1:
            metadata["pyramid"] = levels
    else:
        data = full[...]
        target = payload_dtype(payload, data)
        if target is not None:
            data = data.astype(target)
    channel_axis = None
    lead = [a for a in range(len(axes)) if a not in spatial]
    if payload and isinstance(payload.get("channel_axis"), int) \
            and payload["channel_axis"] in lead:
        channel_axis = payload["channel_axis"]
    elif payload is None:  # another program's file: NGFF's channel axis and omero list
        typed = [a for a in lead if axes[a].get("type") == "channel"]
        if len(typed) == 1 and full.shape[typed[0]] > 1:
            channel_axis = typed[0]
        named = _omero_channels(attrs, 1 if channel_axis is None
                                else full.shape[channel_axis])
        if named:
            metadata["channels"] = named
    affine = geometry.stored_affine((payload or {}).get("affine_um"), len(spatial))
    return Volume(data, spacing, metadata, origin_um=origin, axis_labels=labels,
                  channel_axis=channel_axis, layer_type=layer_type,
                  name=name or path.name.removesuffix(".zarr").removesuffix(".ome"),
                  affine_um=affine)


# --------------------------------------------------------------------------- writing


def _chunk_shape(shape: tuple, n_spatial: int, chunks) -> tuple:
    lead = len(shape) - n_spatial
    edge = np.broadcast_to(np.asarray(chunks if chunks is not None else DEFAULT_CHUNK),
                           (n_spatial,)).astype(int)
    if np.any(edge < 1):
        raise ValueError(f"chunks {chunks!r} must be positive")
    return (1,) * lead + tuple(int(min(n, c)) for n, c in zip(shape[lead:], edge))


def _level_factors(shape: tuple, n_spatial: int, levels) -> list[tuple]:
    """Per-level downsampling factors of the spatial axes."""
    spatial = shape[len(shape) - n_spatial:]
    factors = [(1,) * n_spatial]
    while len(factors) < (MAX_LEVELS if levels is None else int(levels)):
        current = [n // f for n, f in zip(spatial, factors[-1])]
        if levels is None and max(current) <= PYRAMID_STOP:
            break
        if all(c < 2 for c in current):
            if levels is None:
                break
            raise ValueError(f"levels={levels}: the volume {shape} cannot be halved "
                             f"{levels - 1} times")
        factors.append(tuple(f * 2 if c >= 2 else f for f, c in zip(factors[-1], current)))
    return factors


def _level_shape(shape: tuple, step: tuple, labels: bool) -> tuple:
    """Shape after halving the spatial axes marked 2 in ``step``: ``ceil(n / 2)`` for
    labels (every second voxel), ``n // 2`` for images (whole 2×2×2 blocks only)."""
    lead = len(shape) - len(step)
    return shape[:lead] + tuple((n + 1) // 2 if labels and s > 1 else n // s
                                for n, s in zip(shape[lead:], step))


def _halve(block: np.ndarray, step: tuple, lead: int, labels: bool, out: np.ndarray) -> None:
    """``out`` = ``block`` halved on the spatial axes marked 2 in ``step`` (the first
    spatial axis of ``block`` holds whole pairs): every second voxel for labels, else the
    block mean in float32 (rounded for integers, as ``dask.array.coarsen(np.mean)``)."""
    if labels:
        out[...] = block[(slice(None),) * lead + tuple(slice(None, None, s) for s in step)]
        return
    trimmed = block[(slice(None),) * lead + tuple(slice(0, n - n % s) for n, s in
                                                  zip(block.shape[lead:], step))]
    split = trimmed.shape[:lead]
    for n, s in zip(trimmed.shape[lead:], step):
        split += (n // s, s)
    axes = tuple(lead + 2 * i + 1 for i in range(len(step)))
    mean = np.mean(trimmed.astype(np.float32).reshape(split), axis=axes)
    if np.issubdtype(out.dtype, np.integer):
        np.round(mean, out=mean)
    out[...] = mean


#: Planes halved for the next level at a time (even: block means take pairs).
_PASS_PLANES = 16


class _LevelWriter:
    """One resolution level written as it streams past, and the levels below it.

    Planes along the first spatial axis arrive in order (:meth:`add`); whole slabs of
    chunks are compressed and stored at once, their chunks in parallel on ``pool``
    (Blosc releases the GIL), straight into the array's folder with the Zarr v2 chunk
    layout (``/``-separated keys, edge chunks padded with the fill value 0). The same
    planes are halved in memory for the next level, so no level is read back from disk.
    """

    def __init__(self, folder: Path, shape: tuple, dtype, chunk: tuple, lead: int,
                 compressor, pool, labels: bool, steps: list):
        self.folder, self.shape, self.dtype = folder, shape, np.dtype(dtype)
        self.chunk = tuple(min(c, n) for c, n in zip(chunk, shape))
        self.lead, self.compressor, self.pool, self.labels = lead, compressor, pool, labels
        self.depth = self.chunk[lead]
        self.buffer = None  # planes waiting for a whole slab of chunks
        self.filled = self.written = self.seen = 0
        self.carry = None  # a last plane waiting for its pair (block means)
        self.step = steps[0] if steps else None
        self.next = None
        if steps:
            self.next = _LevelWriter(folder.parent / str(int(folder.name) + 1),
                                     _level_shape(shape, self.step, labels), dtype, chunk,
                                     lead, compressor, pool, labels, steps[1:])

    def _plane(self, index) -> tuple:
        return (slice(None),) * self.lead + (index,)

    def add(self, block: np.ndarray) -> None:
        """Take the next planes (a numpy array with this level's other dimensions)."""
        n, done = block.shape[self.lead], 0
        while done < n:
            left = self.shape[self.lead] - self.written
            if self.filled == 0 and (n - done >= self.depth or n - done == left):
                # whole chunk planes straight from the block, without a copy
                whole = n - done if n - done == left else (n - done) // self.depth * self.depth
                self._store(block[self._plane(slice(done, done + whole))])
                done += whole
                continue
            if self.buffer is None:
                self.buffer = np.empty(self.shape[:self.lead] + (self.depth,) +
                                       self.shape[self.lead + 1:], self.dtype)
            take = min(n - done, self.depth - self.filled)
            self.buffer[self._plane(slice(self.filled, self.filled + take))] = \
                block[self._plane(slice(done, done + take))]
            self.filled += take
            done += take
            if self.filled == self.depth or self.filled == left:
                self._store(self.buffer[self._plane(slice(0, self.filled))])
        if self.next is not None:  # a few planes at a time: small temporaries
            for start in range(0, n, _PASS_PLANES):
                self._pass_down(block[self._plane(slice(start, start + _PASS_PLANES))])

    def _pass_down(self, block: np.ndarray) -> None:
        pair = self.step[0]
        if pair == 1 or self.labels:
            first = (-self.seen) % pair  # labels keep the planes of even index
            self.seen += block.shape[self.lead]
            part = block[self._plane(slice(first, None, pair))]
            if part.shape[self.lead]:
                rest = (1,) + self.step[1:]
                out = np.empty(_level_shape(part.shape, rest, self.labels), self.dtype)
                _halve(part, rest, self.lead, self.labels, out)
                self.next.add(out)
            return
        if self.carry is not None:
            block = np.concatenate([self.carry, block], axis=self.lead)
            self.carry = None
        n = block.shape[self.lead]
        if n % 2:
            self.carry = block[self._plane(slice(n - 1, n))].copy()
            block = block[self._plane(slice(0, n - 1))]
        if n < 2:
            return
        out = np.empty(_level_shape(block.shape, self.step, False), self.dtype)
        pairs = out.shape[self.lead]
        size = max(1, pairs // (4 * _slabs.core_count()))

        def work(start):
            stop = min(pairs, start + size)
            _halve(block[self._plane(slice(2 * start, 2 * stop))], self.step, self.lead,
                   False, out[self._plane(slice(start, stop))])

        list(self.pool.map(work, range(0, pairs, size)))
        self.next.add(out)

    def _store(self, slab: np.ndarray) -> None:
        """Compress and write the chunks of ``slab``: the planes from ``written`` on, whole
        chunks along the first spatial axis except at the volume's end."""
        offset = [0] * len(self.chunk)
        offset[self.lead] = self.written
        jobs = []
        for origin in itertools.product(*(range(0, n, c) for n, c in
                                          zip(slab.shape, self.chunk))):
            piece = slab[tuple(slice(o, o + c) for o, c in zip(origin, self.chunk))]
            key = [(o + d) // c for o, d, c in zip(origin, offset, self.chunk)]
            jobs.append(self.pool.submit(self._write_chunk, piece, key))
        for job in jobs:
            job.result()
        self.written += slab.shape[self.lead]
        self.filled = 0

    def _write_chunk(self, piece: np.ndarray, key: list) -> None:
        if piece.shape != self.chunk:  # Zarr v2 edge chunks are stored whole, padded
            full = np.zeros(self.chunk, self.dtype)
            full[tuple(slice(0, n) for n in piece.shape)] = piece
            piece = full
        piece = np.ascontiguousarray(piece)
        encoded = piece.tobytes() if self.compressor is None else \
            self.compressor.encode(piece)
        target = self.folder.joinpath(*(str(k) for k in key))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encoded)

    def close(self) -> None:
        """Check every plane of every level arrived (a short source is a bug here)."""
        if self.written != self.shape[self.lead]:
            raise RuntimeError(f"OME-Zarr level {self.folder.name}: {self.written} of "
                               f"{self.shape[self.lead]} planes written")
        if self.next is not None:
            self.next.close()


def _is_zarr_store(path: Path) -> bool:
    """True for a zarr group or array folder (v2 or v3): an earlier output to replace."""
    return any((path / name).is_file() for name in (".zgroup", ".zarray", "zarr.json"))


def _stream_slabs(top: _LevelWriter, source, lead: int) -> None:
    """Feed ``source`` (numpy, memory-mapped or dask) to ``top`` one slab of chunk planes
    at a time: a dask slab is computed into one reused buffer (its chunks in parallel,
    no concatenated copy), a numpy slab is passed as the view it is."""
    import dask.array as da

    buffer = None
    for start in range(0, source.shape[lead], top.depth):
        index = (slice(None),) * lead + (slice(start, start + top.depth),)
        part = source[index]
        if isinstance(part, da.Array):
            if buffer is None or buffer.shape != part.shape:
                buffer = np.empty(part.shape, part.dtype)
            da.store(part, buffer, lock=False)
            part = buffer
        top.add(np.asarray(part, dtype=top.dtype))
    top.close()


def _store_kspace(group, arrays: dict, chunk: tuple, compressor) -> None:
    """The k-space arrays of :func:`kspace_codec.store_arrays` in their sub-group: data
    and mask chunked as the image, trajectory and density in one chunk."""
    sub = group.require_group(kspace_codec.STORE_GROUP)
    for name, values in arrays.items():
        edges = {"data": chunk + (2,), "sampled": chunk[-3:]}.get(name, values.shape)
        sub.create_array(name, shape=values.shape, dtype=values.dtype,
                         chunks=tuple(min(c, n) for c, n in zip(edges, values.shape)),
                         compressors=compressor, fill_value=0,
                         chunk_key_encoding={"name": "v2", "separator": "/"})[...] = values


def _omero(volume: Volume) -> dict | None:
    """NGFF's ``omero`` channel list (label, colour, display window) from the volume's
    ``channels``, so that other OME-Zarr viewers name and colour them; None without."""
    channels = volume.metadata.get("channels") or []
    count = 1 if volume.channel_axis is None else volume.data.shape[volume.channel_axis]
    if len(channels) != count:
        return None
    out = []
    for channel in channels:
        entry = {"active": True, "color": str(channel.get("color") or "#ffffff")
                 .removeprefix("#").upper()}
        if channel.get("name"):
            entry["label"] = str(channel["name"])
        if channel.get("contrast_limits"):
            low, high = (float(v) for v in channel["contrast_limits"])
            entry["window"] = {"start": low, "end": high, "min": low, "max": high}
        out.append(entry)
    return {"channels": out}


def _omero_channels(attrs: dict, count: int) -> list:
    """Our ``channels`` from a file's NGFF ``omero`` list of ``count`` channels (name,
    ``#rrggbb`` colour, display window); empty when it has none that fits."""
    entries = (attrs.get("omero") or {}).get("channels") if isinstance(
        attrs.get("omero"), dict) else None
    if not isinstance(entries, list) or len(entries) != count:
        return []
    out = []
    for entry in entries:
        entry = entry if isinstance(entry, dict) else {}
        channel = {}
        if isinstance(entry.get("label"), str) and entry["label"]:
            channel["name"] = entry["label"]
        if isinstance(entry.get("color"), str) and re.fullmatch(r"[0-9A-Fa-f]{6}",
                                                                entry["color"]):
            channel["color"] = "#" + entry["color"].lower()
        window = entry.get("window") if isinstance(entry.get("window"), dict) else {}
        if all(isinstance(window.get(k), (int, float)) for k in ("start", "end")) \
                and window["end"] > window["start"]:
            channel["contrast_limits"] = [float(window["start"]), float(window["end"])]
        out.append(channel)
    return out if any(out) else []


def _axes(volume: Volume, n_spatial: int) -> list[dict]:
    """NGFF axes: a time axis (``t``, or any with a step in seconds) typed ``time``, the
    channel axis (or the receiver coils') ``channel``, any other leading axis (echoes)
    untyped, NGFF 0.4's custom axis, so that viewers show echoes on a slider instead of
    splitting them into channel layers; space in micrometres, or without a unit when the
    spacing was only assumed (an uncalibrated image)."""
    lead = len(volume.data.shape) - n_spatial
    channel = volume.channel_axis
    if channel is None and "coil" in volume.axis_labels[:lead]:
        channel = volume.axis_labels.index("coil")
    axes = []
    for i, (label, (_, unit)) in enumerate(zip(volume.axis_labels[:lead],
                                               volume.lead_steps())):
        if unit == "second":  # a time series: its step is the axis' scale
            axes.append({"name": str(label), "type": "time", "unit": "second"})
            continue
        kind = "time" if label == "t" else "channel" if i == channel else None
        axes.append({"name": str(label), **({"type": kind} if kind else {})})
    unit = {"unit": "micrometer"} if spacing_known(volume.metadata) else {}
    return axes + [{"name": _SPATIAL[3 - n_spatial + i], "type": "space", **unit}
                   for i in range(n_spatial)]


def write(path: Path, volume: Volume, chunks=None, levels: int | None = None,
          compression: str | None = "zstd") -> list[str]:
    """Write ``volume`` as an OME-Zarr (NGFF 0.4) multiscale image, atomically.

    Parameters
    ----------
    path : Path
        The ``.zarr`` folder (replaced as a whole when it exists).
    volume : Volume
        numpy, memory-mapped or dask data; dask data are written chunk by chunk and never
        held in memory as a whole.
    chunks : int or 3 ints, optional
        Chunk edge per spatial axis (default 128; leading axes get chunks of 1).
    levels : int, optional
        Resolution levels; default halves until the largest axis is at most 256 voxels.
        k-space volumes always get one level (their log-magnitude).
    compression : {"zstd", "lz4", None}
        Blosc codec (bit-shuffled) or none.

    Returns
    -------
    list of str
        The folder written.
    """
    import dask.array as da
    import numcodecs
    import zarr

    path = Path(path)
    if not str(path).lower().endswith(WRITE_SUFFIXES):
        raise FormatError(path, "an OME-Zarr output must be a folder named *.zarr")
    if compression not in ("zstd", "lz4", None):
        raise FormatError(path, f"compression must be 'zstd', 'lz4' or None, got "
                                f"{compression!r}")
    data = volume.data
    n_spatial = len(volume.spacing_um)
    shape = tuple(int(n) for n in data.shape)
    lead = len(shape) - n_spatial
    if len(shape) > 5 or math.prod(shape) == 0:
        raise FormatError(path, f"cannot write data of shape {shape} (OME-Zarr holds up to "
                                "5 non-empty axes)")
    kspace = kspace_codec.is_kspace(volume.metadata)
    if kspace:
        try:
            data, kspace_arrays, kspace_attrs = kspace_codec.store_arrays(volume)
        except ValueError as error:
            raise FormatError(path, str(error)) from None
    elif np.issubdtype(data.dtype, np.complexfloating):
        raise FormatError(path, "complex image data: save the magnitude and phase (only "
                                "k-space is stored complex)")
    labels = volume.layer_type == "labels"
    try:
        chunk = _chunk_shape(shape, n_spatial, chunks)
        factors = _level_factors(shape, n_spatial, 1 if kspace else levels)
    except ValueError as error:
        raise FormatError(path, str(error)) from None
    source = data if isinstance(data, (da.Array, np.ndarray)) else np.asarray(data)
    dtype = np.dtype(np.float32) if source.dtype == np.float64 else source.dtype
    compressor = None if compression is None else numcodecs.Blosc(
        cname=compression, clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)
    s0 = volume.spacing_um
    origin = volume.origin_um or (0.0,) * n_spatial
    rotated = volume.affine_um is not None and not geometry.is_axis_aligned(volume.affine_um)
    if volume.affine_um is not None:  # NGFF 0.4: voxel sizes and voxel 0's place
        s0 = tuple(float(v) for v in geometry.voxel_sizes(volume.affine_um))
        origin = tuple(float(v) for v in np.asarray(volume.affine_um)[:-1, -1])
    datasets = []
    for level, f in enumerate(factors):
        scale = [step for step, _ in volume.lead_steps()] + [s * k for s, k in zip(s0, f)]
        translation = [0.0] * lead + [o + (k - 1) / 2 * s for o, s, k in zip(origin, s0, f)]
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": scale}, {"type": "translation",
                                                "translation": translation}]})
    payload = parse_payload(payload_text(volume, "omezarr", data.dtype))
    payload["channel_axis"] = volume.channel_axis
    payload["all_chunks_stored"] = True  # empty chunks too: a missing one is a lost one
    if rotated:  # NGFF 0.4 has no rotation: the full world affine travels in our payload
        payload["affine_um"] = np.asarray(volume.affine_um).tolist()
    if kspace:
        payload["kspace"] = kspace_attrs
    omero = _omero(volume)
    attrs = {"multiscales": [{
        "version": "0.4", "name": volume.name or path.name.removesuffix(".zarr"),
        "axes": _axes(volume, n_spatial), "datasets": datasets,
        "type": "nearest" if labels else "mean",
        "metadata": {"method": "every second voxel" if labels else
                     "mean of 2x2x2 blocks (dask.array.coarsen)"}}],
        **({"omero": omero} if omero else {}), PAYLOAD_ATTR: payload}
    with atomic_output(path, directory=True, replaces=_is_zarr_store) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        level_shape = shape
        for level, f in enumerate(factors):
            if level:
                step = tuple(a // b for a, b in zip(f, factors[level - 1]))
                level_shape = _level_shape(level_shape, step, labels)
            group.create_array(
                str(level), shape=level_shape, dtype=dtype,
                chunks=tuple(min(c, n) for c, n in zip(chunk, level_shape)),
                compressors=compressor, fill_value=0, config={"write_empty_chunks": True},
                chunk_key_encoding={"name": "v2", "separator": "/"})
        steps = [tuple(a // b for a, b in zip(f, g)) for g, f in zip(factors, factors[1:])]
        with ThreadPoolExecutor(_slabs.core_count()) as pool:
            top = _LevelWriter(Path(tmp) / "0", shape, dtype, chunk, lead,
                               compressor, pool, labels, steps)
            _stream_slabs(top, source, lead)
        if kspace:
            _store_kspace(group, kspace_arrays, chunk, compressor)
        group.attrs.update(json.loads(json.dumps(attrs, default=str)))
    return [str(path)]
