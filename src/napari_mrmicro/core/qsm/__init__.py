"""Quantitative susceptibility mapping, one module per stage."""

from napari_mrmicro.core.qsm.kernel import dipole_kernel, forward_field

__all__ = ["dipole_kernel", "forward_field"]
