"""k-space apodization: separable windows that trade resolution for less Gibbs ringing.

A window is defined on the acquired k-space extent of an axis, centred on DC (index
``N // 2``) with value 1 there, as a function of ``u = (k − N//2) / (N/2)`` in [−1, 1):

- ``"hann"``: ½(1 + cos πu); ``"hamming"``: 0.54 + 0.46 cos πu (Harris, Proc IEEE
  1978;66:51);
- ``"tukey"`` (``alpha``, default 0.5): flat for |u| ≤ 1 − α, a Hann taper over the outer
  fraction α (α = 0: no window, α = 1: Hann) (Harris 1978);
- ``"fermi"`` (``radius`` 0.8, ``width`` 0.1, both as fractions of k_max):
  1 / (1 + e^{(|u| − radius)/width}), the Fermi filter used in MRI (Bernstein, King & Zhou,
  *Handbook of MRI Pulse Sequences*, 2004, §13.1).
"""

from __future__ import annotations

import numpy as np

WINDOWS = ("hann", "hamming", "tukey", "fermi")
_PARAMETERS = {"hann": (), "hamming": (), "tukey": ("alpha",), "fermi": ("radius", "width")}


def window_1d(name: str, n: int, **params) -> np.ndarray:
    """The float32 window ``name`` over ``n`` k-space samples, 1 at index ``n // 2``."""
    if name not in WINDOWS:
        raise ValueError(f"window: unknown window {name!r}; one of {WINDOWS}")
    unknown = set(params) - set(_PARAMETERS[name])
    if unknown:
        raise ValueError(f"window: {name!r} takes {_PARAMETERS[name] or 'no parameters'}, "
                         f"got {sorted(unknown)}")
    if int(n) != n or n < 1:
        raise ValueError(f"window: n must be a positive integer, got {n!r}")
    n = int(n)
    u = (np.arange(n) - n // 2) / max(n / 2, 1)
    if name == "hann":
        w = 0.5 * (1 + np.cos(np.pi * u))
    elif name == "hamming":
        w = 0.54 + 0.46 * np.cos(np.pi * u)
    elif name == "tukey":
        alpha = float(params.get("alpha", 0.5))
        if not 0 <= alpha <= 1:
            raise ValueError(f"window: tukey alpha must be in [0, 1], got {alpha}")
        edge = np.clip((np.abs(u) - (1 - alpha)) / alpha, 0, 1) if alpha > 0 else 0 * u
        w = 0.5 * (1 + np.cos(np.pi * edge))
    else:
        radius = float(params.get("radius", 0.8))
        width = float(params.get("width", 0.1))
        if not (radius > 0 and width > 0):
            raise ValueError(f"window: fermi radius and width must be positive, got "
                             f"{radius} and {width}")
        w = 1 / (1 + np.exp((np.abs(u) - radius) / width))
        w = w / w[n // 2]
    return w.astype(np.float32)


def _spec(spec, where: str) -> tuple:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "name" in spec:
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise ValueError(f"window: {where} must be a window name or a dict with 'name' and its "
                     f"parameters (e.g. {{'name': 'tukey', 'alpha': 0.3}}), got {spec!r}")


def apodization_factors(shape, window, axes) -> dict:
    """1-D window vectors ``{axis: float32 (shape[axis],)}`` for the k-space ``axes``.

    ``window`` is None (no window), a name or ``{"name": ..., <parameters>}`` applied to
    every axis in ``axes``, or a dict ``{axis: name or spec}`` for chosen axes only (axes
    counted like numpy, negative from the end).
    """
    ndim = len(shape)
    axes = [int(a) % ndim for a in axes]
    if window is None:
        return {}
    if isinstance(window, dict) and "name" not in window:
        factors = {}
        for axis, spec in window.items():
            if not isinstance(axis, (int, np.integer)) or int(axis) % ndim not in axes:
                raise ValueError(f"window: axis {axis!r} is not one of the k-space axes "
                                 f"{tuple(a - ndim for a in axes)}")
            if spec is None:
                continue
            name, params = _spec(spec, f"window[{axis}]")
            factors[int(axis) % ndim] = window_1d(name, shape[int(axis) % ndim], **params)
        return factors
    name, params = _spec(window, "window")
    return {a: window_1d(name, shape[a], **params) for a in axes if shape[a] > 1}
