"""Pure numpy/scipy MR microscopy: no napari or Qt here.

The public names below are imported on first use (PEP 562), so that importing one
submodule (a reader needs :mod:`.geometry`) does not load every method: ``from
napari_mrmicro.core import simulate`` works as before, at a fraction of the import time.
"""

import importlib
import sys
import types

#: Public name -> the submodule that defines it.
_SOURCES = {
    "Acquisition": "acquisition",
    "cs_reconstruct": "compressed_sensing",
    "KSpace": "kspace",
    "centerline": "morphometry", "cross_section_areas": "morphometry",
    "region_table": "morphometry",
    "dipole_kernel": "qsm", "forward_field": "qsm", "invert_tkd": "qsm", "invert_tv": "qsm",
    "qsm": "qsm", "qsm_from_field": "qsm", "unwrap_laplacian": "qsm", "vsharp": "qsm",
    "reconstruct_noncartesian": "nufft",
    "fit_relaxation": "relaxometry", "fit_t1": "t1_mapping",
    "image_parts": "recon", "reconstruct": "recon",
    "landmark_affine": "register", "reslice": "register",
    "poisson_disc_mask": "sampling", "variable_density_mask": "sampling",
    "simulate": "simulate",
    "snr_estimate": "snr", "snr_map": "snr",
    "make_specimen": "specimens",
}

__all__ = sorted(_SOURCES)


class _Core(types.ModuleType):
    """This package's module type: ``qsm`` here is the function of the public API, which
    the import system would replace by the subpackage of the same name on its first
    import."""

    def __setattr__(self, name, value):
        if name == "qsm" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Core


def __getattr__(name):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
