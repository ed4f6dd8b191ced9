"""Registration benchmark: 128³ rigid 3-D ↔ 3-D mutual-information refinement (start 5 voxels
and 5° off, different contrasts) and a 2-D ↔ 3-D plane search (128² section, start 3 voxels
and 3° off; then the same section 15 % shrunk, started turned 120° on its slide, with
``scale=True``): wall time, metric evaluations, final worst-corner error. Baselines timed in the
same run: one full 128³ trilinear resampling (scipy), and SimpleITK's Mattes MI rigid
registration of the same pair when SimpleITK is installed.
Usage: ``python benchmarks/bench_register.py [n]``."""

import sys
import time

import numpy as np
from scipy import ndimage as ndi

from napari_mrmicro.core.register import (mutual_information_affine, reslice,
                                          section_plane_affine, section_scale)
from napari_mrmicro.core.reslice import oblique_plane_affine
from napari_mrmicro.io.transform_files import affine_to_itk, itk_to_affine
from napari_mrmicro.core.transforms import (box_corners_um, displacement_error_um,
                                            rigid_affine, rotation_angle_deg)

VOXEL_UM = 30.0


def phantom(n, seed=0):
    """One random 4-tissue layout in two contrasts (non-monotonic remap), with noise."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(n, n, n)).astype(np.float32), n / 12)
    labels = np.digitize(field, np.quantile(field, [0.3, 0.55, 0.8])).astype(np.uint8)
    fixed = ndi.gaussian_filter(np.array([0.0, 1.0, 0.4, 0.7], np.float32)[labels], 0.7)
    other = ndi.gaussian_filter(np.array([0.5, 0.1, 1.0, 0.0], np.float32)[labels], 0.7)
    fixed += rng.normal(0, 0.03, fixed.shape).astype(np.float32)
    return fixed, other, rng


def offset(degrees, voxels, centre):
    return rigid_affine((degrees / np.sqrt(3),) * 3, (voxels * VOXEL_UM / np.sqrt(3),) * 3,
                        centre_um=centre)


def simpleitk_rigid(moving, fixed, spacing, start):
    """SimpleITK Mattes MI, 4-2-1 pyramid, regular-step gradient descent; → our affine."""
    import SimpleITK as sitk

    def image(a):
        img = sitk.GetImageFromArray(a)
        img.SetSpacing(tuple(spacing[::-1] / 1000))
        return img

    matrix, translation, _ = affine_to_itk(start)
    init = sitk.Euler3DTransform()
    init.SetCenter(tuple((np.asarray(fixed.shape[::-1]) - 1) / 2 * spacing[::-1] / 1000))
    init.SetMatrix(tuple(matrix.ravel()))
    init.SetTranslation(tuple(translation - init.GetCenter() + matrix @ init.GetCenter()))
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(10000 / fixed.size, seed=1)
    reg.SetInterpolator(sitk.sitkLinear)
    voxel_mm = float(spacing.max()) / 1000  # steps are physical shifts (mm): 2 → 0.002 voxels
    reg.SetOptimizerAsRegularStepGradientDescent(2 * voxel_mm, 2e-3 * voxel_mm, 200)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()  # voxels, not mm
    reg.SetInitialTransform(init, inPlace=False)
    out = reg.Execute(image(fixed), image(moving))
    rigid = sitk.Euler3DTransform(sitk.CompositeTransform(out).GetNthTransform(0))
    return itk_to_affine(np.reshape(rigid.GetMatrix(), (3, 3)), rigid.GetTranslation(),
                         rigid.GetCenter())


def main(n=128):
    spacing = np.full(3, VOXEL_UM)
    fixed, other, rng = phantom(n)
    centre = (n - 1) / 2 * spacing
    truth = rigid_affine((4.0, -3.0, 2.0), (90.0, -60.0, 45.0), centre_um=centre)
    moving = reslice(other, spacing, truth, (n, n, n), spacing)
    moving += rng.normal(0, 0.03, moving.shape).astype(np.float32)
    start = offset(5.0, 5.0, centre) @ truth
    corners = box_corners_um((n, n, n), spacing)

    t0 = time.perf_counter()
    reslice(moving, spacing, start, (n, n, n), spacing)
    t_resample = time.perf_counter() - t0

    t0 = time.perf_counter()
    fit = mutual_information_affine(moving, spacing, fixed, spacing, start)
    t_mi = time.perf_counter() - t0
    err = displacement_error_um(fit.affine, truth, corners).max() / VOXEL_UM
    rot = rotation_angle_deg(fit.affine @ np.linalg.inv(truth))
    start_err = displacement_error_um(start, truth, corners).max() / VOXEL_UM
    print(f"3-D MI rigid {n}³: {t_mi:.2f} s, {fit.evaluations} evaluations, worst-corner error "
          f"{start_err:.2f} -> {err:.3f} voxels, rotation {rot:.3f}°; "
          f"ratio to one {n}³ trilinear resampling ({t_resample:.2f} s): "
          f"{t_mi / t_resample:.1f}")
    try:
        t0 = time.perf_counter()
        peer = simpleitk_rigid(moving, fixed, spacing, start)
        t_peer = time.perf_counter() - t0
        peer_err = displacement_error_um(peer, truth, corners).max() / VOXEL_UM
        print(f"  SimpleITK Mattes MI (same start, 10000 samples): {t_peer:.2f} s, error "
              f"{peer_err:.3f} voxels; ours / SimpleITK time {t_mi / t_peer:.2f}")
    except ImportError:
        print("  SimpleITK not installed: no peer timing")

    shape, sec_spacing = (n, n), np.array([20.0, 20.0])
    plane = oblique_plane_affine(centre + [40.0, -30.0, 20.0], (10.0, 20.0, -15.0), shape,
                                 sec_spacing)
    section = reslice(other, spacing, plane, shape, sec_spacing)
    section += rng.normal(0, 0.03, shape).astype(np.float32)
    local_centre = [0.0, *((np.asarray(shape) - 1) / 2 * sec_spacing)]
    start = plane @ offset(3.0, 3.0, local_centre)
    plane_corners = np.column_stack([np.zeros(4), box_corners_um(shape, sec_spacing)])
    t0 = time.perf_counter()
    found = section_plane_affine(section, sec_spacing, fixed, spacing, start)
    t_plane = time.perf_counter() - t0
    err = displacement_error_um(found.affine, plane, plane_corners).max() / VOXEL_UM
    start_err = displacement_error_um(start, plane, plane_corners).max() / VOXEL_UM
    print(f"2-D {n}² section in {n}³ volume: {t_plane:.2f} s, {found.evaluations} evaluations, "
          f"worst-corner error {start_err:.2f} -> {err:.3f} voxels; ratio to one {n}³ "
          f"resampling {t_plane / t_resample:.1f}")

    # a histological section: 15 % shrunk, on its slide at another angle
    shrunk = reslice(other, spacing, plane, shape, sec_spacing / 0.85)
    shrunk += rng.normal(0, 0.03, shape).astype(np.float32)
    truth = plane @ np.diag([1.0, 1 / 0.85, 1 / 0.85, 1.0])  # from the nominal pixel µm
    start = plane @ offset(3.0, 3.0, local_centre) @ rigid_affine(
        (120.0, 0.0, 0.0), (0.0, 0.0, 0.0), centre_um=local_centre)
    t0 = time.perf_counter()
    found = section_plane_affine(shrunk, sec_spacing, fixed, spacing, start, scale=True)
    t_plane = time.perf_counter() - t0
    err = displacement_error_um(found.affine, truth, plane_corners).max() / VOXEL_UM
    start_err = displacement_error_um(start, truth, plane_corners).max() / VOXEL_UM
    print(f"  the section 15 % shrunk, turned 120°, scale fitted: {t_plane:.2f} s, "
          f"{found.evaluations} evaluations, worst-corner error {start_err:.2f} -> {err:.3f} "
          f"voxels, scale {section_scale(found.affine):.4f} (truth {1 / 0.85:.4f}); ratio to "
          f"one {n}³ resampling {t_plane / t_resample:.1f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
