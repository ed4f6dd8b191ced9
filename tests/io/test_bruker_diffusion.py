"""ParaVision DTI scans: each frame's b-matrix in the array axes, against ParaVision's own
image-axis b-matrix and a fibre placed in the world.

The geometry and b-matrix rows below are numbers read from real scans (facts, not files):
scan 27 of the PV 6.0.1 study fli-iam/dicomifier-data 20160718_115906_plateforme_fantome_
nouille (DtiStandard, coronal, read along H-F, so the 2dseq is transposed and its slices
step against VisuCoreOrientation's normal), and PV 360.3.6 DtiEpi (cecilyen/PV360_StdData,
axial tilted 2°). On those files (whose 2dseq this project does not hold) the reader's
b-matrices equal the method's PVM_DwBMatImag to the last digit for every frame.
"""

import numpy as np
import pytest

from napari_mrmicro.core import geometry
from napari_mrmicro.core.diffusion_tensor import b_matrices, fit_diffusion
from napari_mrmicro.io import bruker

from tests.io.test_bruker import volume_visu, write_scan

CORONAL = [1, 0, 0, 0, 0, -1, 0, 1, 0]  # scan 27: rows x, y, normal in subject LPS
CORONAL_START = np.array([-16.854884, 7.68664, 34.7172])  # mm; the slices step −1 mm in y
OBLIQUE = [-0.99939082701909576, 0, -0.034899496702500969, 0, -1, 0,
           -0.034899496702500969, 0, 0.99939082701909576]  # PV 360 DtiEpi
# VisuAcqDiffusionBMatrix (subject frame) and PVM_DwBMatImag (image axes) of scan 27,
# frames 0 (A0: the spoilers' 25 s/mm²), 5 and 12, s/mm²
VISU_B = [[7.677103007, 9.0498229453, -7.677103007, 9.0498229453, 10.8673926781,
           -9.0498229453, -7.677103007, -9.0498229453, 7.677103007],
          [53.1690976264, 118.8431351449, 100.7928226789, 118.8431351449, 265.9884509354,
           225.2912985552, 100.7928226789, 225.2912985552, 191.0732654324],
          [13.7242040919, 21.8914821762, -112.9480569098, 21.8914821762, 35.547039283,
           -183.7483180718, -112.9480569098, -183.7483180718, 959.3032586185]]
IMAGE_B = [[7.677103007, 7.677103007, 9.0498229453, 7.677103007, 7.677103007,
            9.0498229453, 9.0498229453, 9.0498229453, 10.8673926781],
           [53.1690976264, -100.7928226789, 118.8431351449, -100.7928226789, 191.0732654324,
            -225.2912985552, 118.8431351449, -225.2912985552, 265.9884509354],
           [13.7242040919, 112.9480569098, 21.8914821762, 112.9480569098, 959.3032586185,
            183.7483180718, 21.8914821762, 183.7483180718, 35.547039283]]


def dti_scan(root, orientation, start_mm, step_mm, b_subject, images=None,
             size=(10, 20), extent=(35.0, 40.0), slices=3):
    """A 2-D multi-slice DTI scan as ParaVision writes it: FG_SLICE (fastest) then
    FG_DIFFUSION, positions and orientation per slice, the b-matrix per diffusion frame."""
    points = len(b_subject)
    positions = [[float(v) for v in start_mm + k * np.asarray(step_mm)] for k in range(slices)]
    groups = [[slices, "FG_SLICE", "", 0, 2], [points, "FG_DIFFUSION", "diffusion", 2, 1]]
    visu = volume_visu(size, extent, frames=points * slices, word="_32BIT_FLOAT",
                       VisuFGOrderDescDim=2, VisuFGOrderDesc=groups,
                       VisuGroupDepVals=[["VisuCoreOrientation", 0], ["VisuCorePosition", 0],
                                         ["VisuAcqDiffusionBMatrix", 0]],
                       VisuCoreOrientation=[[float(v) for v in orientation]] * slices,
                       VisuCorePosition=positions, VisuCoreFrameThickness=[1.0],
                       VisuSubjectPosition="Head_Prone",
                       VisuAcqDiffusionBMatrix=np.asarray(b_subject).reshape(-1, 9).tolist())
    if images is None:
        images = np.ones((points, slices, size[1], size[0]))
    return write_scan(root, np.asarray(images, "<f4"), visu, scan=27)


def test_b_matrices_along_the_image_axes_are_paravisions_own(tmp_path):
    scan = dti_scan(tmp_path, CORONAL, CORONAL_START, (0, -1.0, 0), VISU_B)
    volume = bruker.read(scan)
    assert volume.axis_labels == ("diffusion", "z", "y", "x")
    b = np.asarray(volume.metadata["acquisition"]["b_matrix_s_per_mm2"])
    # (z, y, x) -> ParaVision's image axes (x, y, slice)
    np.testing.assert_allclose(b[:, ::-1, ::-1].reshape(-1, 9), IMAGE_B, atol=1e-9)


@pytest.mark.parametrize("orientation, start, step", [
    (CORONAL, CORONAL_START, (0, -1.0, 0)),
    (OBLIQUE, np.array([-9.1, -9.8, -2.7]), 1.05 * np.asarray(OBLIQUE[6:])),
], ids=["coronal-transposed", "oblique-axial"])
@pytest.mark.parametrize("fibre_ras", [(0.0, 0.0, 1.0), (0.6, -0.3, 0.74)])
def test_a_fibre_reads_back_where_it_lies_in_the_world(tmp_path, orientation, start, step,
                                                       fibre_ras):
    """Signals of a fibre along ``fibre_ras`` (world RAS) under b-matrices stated in the
    subject frame (LPS: x and y negated), read, fitted and turned into world directions
    by the layer's placement."""
    rng = np.random.default_rng(7)
    g = rng.normal(size=(12, 3))
    b = np.concatenate([np.zeros((1, 3, 3)), b_matrices(np.full(12, 1200.0), g)])
    fibre = np.asarray(fibre_ras) / np.linalg.norm(fibre_ras)
    fibre_subject = geometry.LPS_TO_RAS @ fibre
    d = 0.2 * np.eye(3) + 1.5 * np.outer(fibre_subject, fibre_subject)
    signal = 1000.0 * np.exp(-1e-3 * np.einsum("nij,ij->n", b, d))
    images = np.broadcast_to(signal[:, None, None, None], (13, 3, 20, 10))
    volume = bruker.read(dti_scan(tmp_path, orientation, start, step, b, images))
    fit = fit_diffusion(np.asarray(volume.data), volume.metadata["acquisition"][
        "b_matrix_s_per_mm2"], mask=np.ones(volume.data.shape[1:], bool))
    world = volume.affine_um
    napari_axes = (world[:3, :3] / geometry.voxel_sizes(world)[None, :]) @ fit.principal[
        :, 1, 5, 5]
    assert abs(napari_axes[::-1] @ fibre) == pytest.approx(1.0, abs=1e-5)


def test_a_scan_without_a_visu_b_matrix_states_none(tmp_path):
    """ParaVision 5 wrote the b-matrices only in the method's gradient frame; without
    ParaVision's own statement in the image's frame none is invented."""
    scan = dti_scan(tmp_path, CORONAL, CORONAL_START, (0, -1.0, 0), VISU_B)
    visu = scan / "pdata" / "1" / "visu_pars"
    text = visu.read_text()
    visu.write_text(text.replace("VisuAcqDiffusionBMatrix", "VisuAcqDiffusionBMatriz"))
    assert "b_matrix_s_per_mm2" not in bruker.read(scan).metadata["acquisition"]


def test_a_paravision_dti_converted_to_nifti_opens_in_dipy(tmp_path):
    """`mrmicro convert` of a ParaVision DTI scan writes the NIfTI and its FSL table; DIPY,
    reading both as FSL files, fits the same MD and FA as this plugin does from the scan."""
    dipy_dti = pytest.importorskip("dipy.reconst.dti")
    from dipy.core.gradients import gradient_table
    from dipy.io import read_bvals_bvecs

    from napari_mrmicro.cli import main

    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(9)
    g = rng.normal(size=(12, 3))
    b = np.concatenate([np.zeros((1, 3, 3)), b_matrices(np.full(12, 1000.0), g)])
    fibre_subject = np.array([0.48, 0.6, 0.64])
    d = 0.25 * np.eye(3) + 1.3 * np.outer(fibre_subject, fibre_subject)
    signal = 900.0 * np.exp(-1e-3 * np.einsum("nij,ij->n", b, d))
    images = np.abs(np.broadcast_to(signal[:, None, None, None], (13, 3, 20, 10))
                    + rng.normal(0, 5, (13, 3, 20, 10)))
    scan = dti_scan(tmp_path, OBLIQUE, np.array([-9.1, -9.8, -2.7]),
                    1.05 * np.asarray(OBLIQUE[6:]), b, images)
    assert main(["convert", str(scan), str(tmp_path / "dwi.nii.gz")]) == 0
    bvals, bvecs = read_bvals_bvecs(str(tmp_path / "dwi.bval"), str(tmp_path / "dwi.bvec"))
    data = nib.load(tmp_path / "dwi.nii.gz").get_fdata()
    peer = dipy_dti.TensorModel(gradient_table(bvals, bvecs=bvecs)).fit(data)
    ours = fit_diffusion(np.asarray(bruker.read(scan).data), bruker.read(scan).metadata[
        "acquisition"]["b_matrix_s_per_mm2"], mask=np.ones((3, 20, 10), bool))
    np.testing.assert_allclose(peer.md.T * 1e3, ours.md(), rtol=1e-4)
    np.testing.assert_allclose(peer.fa.T, ours.fa(), atol=1e-4)


def test_the_coronal_scan_as_a_napari_layer_keeps_its_fibre_in_the_world(tmp_path):
    """Scan 27's coronal, transposed geometry is stored with its first array axis along
    world A; the layer napari gets has its axes reordered to the world's, and its
    b-matrices with them: the fibre still points where it lies."""
    from napari_mrmicro._layers import volume_to_layer_data

    rng = np.random.default_rng(7)
    b = np.concatenate([np.zeros((1, 3, 3)), b_matrices(np.full(12, 1200.0),
                                                         rng.normal(size=(12, 3)))])
    fibre = np.array([0.6, -0.3, 0.74]) / np.linalg.norm([0.6, -0.3, 0.74])
    fibre_subject = geometry.LPS_TO_RAS @ fibre
    d = 0.2 * np.eye(3) + 1.5 * np.outer(fibre_subject, fibre_subject)
    signal = 1000.0 * np.exp(-1e-3 * np.einsum("nij,ij->n", b, d))
    images = np.broadcast_to(signal[:, None, None, None], (13, 3, 20, 10))
    volume = bruker.read(dti_scan(tmp_path, CORONAL, CORONAL_START, (0, -1.0, 0), b, images))
    (data, kwargs, _), = volume_to_layer_data(volume)
    assert kwargs["metadata"]["mrmicro"]["array_axes_from_file"] != (0, 1, 2)
    fit = fit_diffusion(np.asarray(data), kwargs["metadata"]["mrmicro"]["acquisition"][
        "b_matrix_s_per_mm2"], mask=np.ones(data.shape[1:], bool))
    linear = np.asarray(kwargs["affine"])[-4:-1, -4:-1]
    rotation = linear / np.linalg.norm(linear, axis=0)[None, :]
    centre = tuple(n // 2 for n in data.shape[1:])
    world = rotation @ fit.principal[(slice(None), *centre)]
    assert abs(world[::-1] @ fibre) == pytest.approx(1.0, abs=1e-5)
