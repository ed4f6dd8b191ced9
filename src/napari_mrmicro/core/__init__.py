"""Pure numpy/scipy MR microscopy: no napari or Qt here."""

from napari_mrmicro.core.acquisition import Acquisition

__all__ = ["Acquisition"]
