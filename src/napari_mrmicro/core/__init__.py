"""Pure numpy/scipy MR microscopy: no napari or Qt here."""

from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.core.qsm import dipole_kernel, forward_field
from napari_mrmicro.core.simulate import simulate
from napari_mrmicro.core.specimens import make_specimen

__all__ = ["Acquisition", "KSpace", "dipole_kernel", "forward_field", "make_specimen",
           "simulate"]
