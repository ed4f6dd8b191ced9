"""Quantitative susceptibility mapping, one module per stage."""

from napari_mrmicro.core.qsm.background import lbv, pdf, sharp, vsharp
from napari_mrmicro.core.qsm.echoes import FieldFit, fit_field, remove_phase_offset
from napari_mrmicro.core.qsm.field_map import b0_direction_from_affine, qsm_from_field
from napari_mrmicro.core.qsm.kernel import dipole_kernel, forward_field
from napari_mrmicro.core.qsm.mask import (
    MaskReport, mask_from_labels, mask_from_magnitude, signal_mask)
from napari_mrmicro.core.qsm.medi import invert_medi
from napari_mrmicro.core.qsm.metrics import hfen, nrmse, xsim
from napari_mrmicro.core.qsm.pipeline import QSMCancelled, QSMResult, qsm, qsm_stages
from napari_mrmicro.core.qsm.tikhonov import invert_tikhonov
from napari_mrmicro.core.qsm.tkd import invert_tkd
from napari_mrmicro.core.qsm.tv import invert_tv
from napari_mrmicro.core.qsm.unwrap import unwrap_echoes, unwrap_laplacian, unwrap_region_growing

__all__ = ["FieldFit", "MaskReport", "QSMCancelled", "QSMResult", "b0_direction_from_affine",
           "dipole_kernel", "fit_field",
           "forward_field", "hfen", "invert_medi", "invert_tikhonov", "invert_tkd",
           "invert_tv", "lbv", "mask_from_labels", "mask_from_magnitude", "nrmse", "pdf",
           "qsm", "qsm_from_field", "qsm_stages", "remove_phase_offset", "sharp", "unwrap_echoes",
           "signal_mask", "unwrap_laplacian", "unwrap_region_growing", "vsharp", "xsim"]
