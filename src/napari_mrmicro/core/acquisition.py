"""The MR acquisition protocol, in physical units, as carried between docks and files."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np

#: Gyromagnetic ratios γ/2π in MHz/T (CODATA 2018 for ¹H; ¹³C from the NMR tables).
GAMMA_BAR_MHZ_PER_T = {"1H": 42.577478, "13C": 10.7084}

SEQUENCES = ("spin_echo", "gradient_echo")


def _tuple(value, kind=float) -> tuple:
    return tuple(kind(v) for v in np.atleast_1d(value).tolist())


@dataclass(frozen=True)
class Acquisition:
    """An MR microscopy protocol.

    Axes are in napari's ``(z, y, x)`` order; lengths in µm, times in ms, field in T,
    the full receiver bandwidth in Hz.

    Parameters
    ----------
    matrix : tuple of int
        Acquired voxels along ``(z, y, x)``.
    fov_um : tuple of float
        Field of view along ``(z, y, x)`` in µm.
    b0_tesla : float
        Main field.
    nucleus : {"1H", "13C"}
    sequence : {"spin_echo", "gradient_echo"}
    te_ms : tuple of float
        Echo times, one per echo.
    tr_ms : float
        Repetition time.
    flip_deg : float
        Excitation flip angle.
    bandwidth_hz : float
        Full receiver bandwidth (``bandwidth_hz / matrix[readout_axis]`` per pixel).
    averages : int
        Number of signal averages.
    temperature_k : float
        Sample temperature.
    b0_direction : tuple of float
        Unit vector of B0 in array-axis order ``(z, y, x)``.
    readout_axis : int
        Array axis of the frequency-encoding (readout) direction.
    max_gradient_mT_per_m : float
        The gradient system's maximum amplitude.
    """

    matrix: tuple = (128, 128, 128)
    fov_um: tuple = (12800.0, 12800.0, 12800.0)
    b0_tesla: float = 9.4
    nucleus: str = "1H"
    sequence: str = "spin_echo"
    te_ms: tuple = (10.0,)
    tr_ms: float = 500.0
    flip_deg: float = 90.0
    bandwidth_hz: float = 50_000.0
    averages: int = 1
    temperature_k: float = 298.0
    b0_direction: tuple = (1.0, 0.0, 0.0)
    readout_axis: int = 2
    max_gradient_mT_per_m: float = 1000.0
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("matrix", _tuple(self.matrix, int))
        set_("fov_um", _tuple(self.fov_um))
        set_("te_ms", _tuple(self.te_ms))
        if len(self.fov_um) != len(self.matrix):
            raise ValueError(
                f"Acquisition: fov_um {self.fov_um} and matrix {self.matrix} differ in length"
            )
        if any(n < 1 for n in self.matrix) or any(not f > 0 for f in self.fov_um):
            raise ValueError(f"Acquisition: matrix {self.matrix} and fov_um {self.fov_um} "
                             "must be positive")
        if self.nucleus not in GAMMA_BAR_MHZ_PER_T:
            raise ValueError(f"Acquisition: unknown nucleus {self.nucleus!r}; "
                             f"choose one of {sorted(GAMMA_BAR_MHZ_PER_T)}")
        if self.sequence not in SEQUENCES:
            raise ValueError(f"Acquisition: unknown sequence {self.sequence!r}; "
                             f"choose one of {SEQUENCES}")
        direction = np.asarray(self.b0_direction, dtype=float)
        norm = np.linalg.norm(direction)
        if direction.shape != (3,) or not norm > 0:
            raise ValueError(f"Acquisition: b0_direction {self.b0_direction} "
                             "must be a non-zero 3-vector")
        if abs(norm - 1.0) > 1e-12:  # keep a unit vector bit-exact across round trips
            direction = direction / norm
        set_("b0_direction", _tuple(direction))
        if not 0 <= self.readout_axis < len(self.matrix):
            raise ValueError(f"Acquisition: readout_axis {self.readout_axis} is not an axis "
                             f"of the {len(self.matrix)}-D matrix")
        for name in ("b0_tesla", "tr_ms", "bandwidth_hz", "temperature_k"):
            value = float(getattr(self, name))
            if not value > 0:
                raise ValueError(f"Acquisition: {name} must be positive, got {value}")
            set_(name, value)
        set_("averages", int(self.averages))

    @property
    def voxel_um(self) -> tuple:
        """Voxel size along each axis in µm (FOV / matrix)."""
        return tuple(f / n for f, n in zip(self.fov_um, self.matrix))

    @property
    def gamma_bar_hz_per_t(self) -> float:
        """γ/2π of the nucleus in Hz/T."""
        return GAMMA_BAR_MHZ_PER_T[self.nucleus] * 1e6

    def to_dict(self) -> dict:
        """Plain, JSON-ready dict (tuples become lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "Acquisition":
        """Build from a dict such as :meth:`to_dict` gives; unknown keys go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in names and v is not None}
        extra = dict(known.pop("extra", {}) or {})
        extra.update({k: v for k, v in values.items() if k not in names})
        return cls(**known, extra=extra)

    def to_headfile(self) -> dict:
        """Duke CIVM headfile keys for this protocol (FOV in mm, ``te`` in ms, ``tr`` in µs).

        Fields the CIVM dialect has no key for are written as ``mrmicro_*`` keys, so
        :meth:`from_headfile` restores the protocol exactly.
        """
        if len(self.matrix) != 3:
            raise ValueError("Acquisition.to_headfile: needs a 3-D (z, y, x) matrix")
        (nz, ny, nx), (fz, fy, fx) = self.matrix, self.fov_um
        return {
            "dim_X": nx, "dim_Y": ny, "dim_Z": nz,
            "fovx": fx / 1000.0, "fovy": fy / 1000.0, "fovz": fz / 1000.0,
            "te": self.te_ms[0], "tr": self.tr_ms * 1000.0, "alpha": self.flip_deg,
            "ne": len(self.te_ms), "B_tesla": self.b0_tesla, "S_PSDname": self.sequence,
            "U_nucleus": self.nucleus, "nex": self.averages,
            "mrmicro_te_ms": list(self.te_ms),
            "mrmicro_bandwidth_hz": self.bandwidth_hz,
            "mrmicro_temperature_k": self.temperature_k,
            "mrmicro_b0_direction": list(self.b0_direction),
            "mrmicro_readout_axis": self.readout_axis,
            "mrmicro_max_gradient_mT_per_m": self.max_gradient_mT_per_m,
        }

    @classmethod
    def from_headfile(cls, header: dict) -> "Acquisition":
        """Build from a parsed CIVM headfile (see :func:`napari_mrmicro.io.read_headfile`).

        Keys that are absent or missing keep the dataclass defaults.
        """
        return cls.from_dict(acquisition_from_headfile(header))


def _number(value):
    """A float from a headfile value (scalar or first array element), else None."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def b0_from_headfile(header: dict) -> float | None:
    """Field strength in T from CIVM codes (``7t``, ``9t``, ``bt7``, ``9.4T``) or the
    spectrometer frequency ``z_Agilent_sfrq`` (MHz) / 42.577."""
    for key in ("B_tesla", "S_tesla"):
        value = header.get(key)
        number = _number(value)
        if number is not None and number > 0:
            return number
        if isinstance(value, str):
            match = re.search(r"(\d+(?:\.\d+)?)", value)
            if match and float(match.group(1)) > 0:
                return float(match.group(1))
    sfrq = _number(header.get("z_Agilent_sfrq"))
    if sfrq:
        return sfrq / GAMMA_BAR_MHZ_PER_T["1H"]
    return None


def acquisition_from_headfile(header: dict) -> dict:
    """The :class:`Acquisition` fields a CIVM headfile states, as a dict (others absent)."""
    out = {}
    dims = [_number(header.get(k)) for k in ("dim_Z", "dim_Y", "dim_X")]
    fovs = [_number(header.get(k)) for k in ("fovz", "fovy", "fovx")]
    if all(d and d > 0 for d in dims):
        out["matrix"] = tuple(int(d) for d in dims)
        if all(f and f > 0 for f in fovs):
            out["fov_um"] = tuple(f * 1000.0 for f in fovs)
    te_list = header.get("mrmicro_te_ms")
    if isinstance(te_list, (list, tuple)) and te_list:
        out["te_ms"] = tuple(float(t) for t in te_list)
    elif _number(header.get("te")) is not None:
        out["te_ms"] = (_number(header["te"]),)
    if _number(header.get("tr")):
        out["tr_ms"] = _number(header["tr"]) / 1000.0
    if _number(header.get("alpha")) is not None:
        out["flip_deg"] = _number(header["alpha"])
    b0 = b0_from_headfile(header)
    if b0:
        out["b0_tesla"] = b0
    if header.get("U_nucleus") in GAMMA_BAR_MHZ_PER_T:
        out["nucleus"] = header["U_nucleus"]
    psd = str(header.get("S_PSDname") or "").lower()
    if psd in SEQUENCES:
        out["sequence"] = psd
    elif psd:
        if any(tag in psd for tag in ("gre", "ge3d", "flash", "gradient")):
            out["sequence"] = "gradient_echo"
        elif any(tag in psd for tag in ("se", "rare", "spin")):
            out["sequence"] = "spin_echo"
    if _number(header.get("nex")):
        out["averages"] = int(_number(header["nex"]))
    for key, name in (("mrmicro_bandwidth_hz", "bandwidth_hz"),
                      ("mrmicro_temperature_k", "temperature_k"),
                      ("mrmicro_readout_axis", "readout_axis"),
                      ("mrmicro_max_gradient_mT_per_m", "max_gradient_mT_per_m")):
        if _number(header.get(key)) is not None:
            out[name] = _number(header[key])
    if "readout_axis" in out:
        out["readout_axis"] = int(out["readout_axis"])
    direction = header.get("mrmicro_b0_direction")
    if isinstance(direction, (list, tuple)) and len(direction) == 3:
        out["b0_direction"] = tuple(float(v) for v in direction)
    return out
