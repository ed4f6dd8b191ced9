"""Pure numpy/scipy MR microscopy: no napari or Qt here."""

from napari_mrmicro.core.acquisition import Acquisition
from napari_mrmicro.core.compressed_sensing import cs_reconstruct
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.core.morphometry import centerline, cross_section_areas, region_table
from napari_mrmicro.core.qsm import (
    dipole_kernel,
    forward_field,
    invert_tkd,
    invert_tv,
    qsm,
    qsm_from_field,
    unwrap_laplacian,
    vsharp,
)
from napari_mrmicro.core.nufft import reconstruct_noncartesian
from napari_mrmicro.core.recon import image_parts, reconstruct
from napari_mrmicro.core.register import landmark_affine, reslice
from napari_mrmicro.core.sampling import poisson_disc_mask, variable_density_mask
from napari_mrmicro.core.simulate import simulate
from napari_mrmicro.core.snr import snr_estimate, snr_map
from napari_mrmicro.core.specimens import make_specimen

__all__ = ["Acquisition", "KSpace", "centerline", "cross_section_areas", "cs_reconstruct", "dipole_kernel", "forward_field",
           "image_parts", "landmark_affine", "reconstruct_noncartesian", "make_specimen", "poisson_disc_mask",
           "invert_tkd", "invert_tv", "qsm", "qsm_from_field", "reconstruct", "reslice", "simulate",
           "region_table", "unwrap_laplacian", "vsharp",
           "snr_estimate", "snr_map", "variable_density_mask"]
