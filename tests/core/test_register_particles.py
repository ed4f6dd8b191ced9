"""Particles in two modalities: detection, precision, matching, and the dual-mode
microdiamond check (optical rendering vs simulated hyperpolarized ¹³C MRI)."""

import itertools

import numpy as np
import pytest

from napari_mrmicro.core.optical import render_spots
from napari_mrmicro.core import Acquisition, make_specimen, simulate
from napari_mrmicro.core.kspace import centered_ifft
from napari_mrmicro.core.particles import (detect_particles, localisation_precision_um,
                                           match_particles, particle_affine)
from napari_mrmicro.core.transforms import (apply_affine, box_corners_um, displacement_error_um,
                                            rigid_affine, rotation_angle_deg)




def test_detection_in_anisotropic_voxels_is_sub_voxel():
    rng = np.random.default_rng(0)
    shape, spacing, sigma = (30, 60, 60), np.array([4.0, 1.0, 1.0]), np.array([4.0, 2.0, 2.0])
    truth = rng.uniform([20, 8, 8], [100, 52, 52], (12, 3))
    truth = truth[np.all(np.linalg.norm(truth[:, None] - truth[None], axis=2)
                         + 1e3 * np.eye(len(truth)) > 15, axis=1)]
    image = render_spots(shape, spacing, truth, sigma) + rng.normal(0, 0.02, shape)
    found = detect_particles(image, spacing, sigma_um=2.0)
    match = match_particles(found, truth, 3.0)
    assert len(found) == len(truth) and match.fraction_b == 1.0
    # Within a fifth of a voxel on every axis.
    assert np.all(np.abs(match.offsets_um) < 0.2 * spacing)


def test_cramer_rao_bound_matches_monte_carlo():
    # 2-D spot, σ = 1.5 px, SNR (peak / noise) 20: the LoG-parabola estimator's scatter lies
    # between the bound and twice it.
    rng = np.random.default_rng(1)
    spacing, sigma, noise = np.array([1.0, 1.0]), 1.5, 0.05
    centre = np.array([[16.0, 15.0]])  # on a pixel: the sampled amplitude is the peak
    clean = render_spots((32, 32), spacing, centre, (sigma, sigma))
    hits = []
    for _ in range(300):
        image = clean + rng.normal(0, noise, clean.shape)
        found = detect_particles(image, spacing, sigma_um=sigma, threshold=0.3)
        hits.append(found[np.argmin(np.linalg.norm(found - centre, axis=1))])
    scatter = np.std(hits, axis=0)
    bound = localisation_precision_um(clean, spacing, centre, sigma, noise_sigma=noise,
                                      background=0.0)[0]
    # Analytic bound: √(2/π)·σ_n/A·(pixel) = 0.0399 px for unit pixels.
    np.testing.assert_allclose(bound, np.sqrt(2 / np.pi) * noise, rtol=1e-3)
    assert np.all(bound <= scatter) and np.all(scatter < 2.0 * bound)


def test_match_particles_is_optimal_and_gated():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 100, (6, 3))
    b = np.vstack([a[:5] + rng.normal(0, 3, (5, 3)), [[500.0, 500.0, 500.0]]])[::-1]
    match = match_particles(a, b, max_distance_um=20.0)
    assert len(match.pairs) == 5 and match.fraction_a == pytest.approx(5 / 6)
    assert np.all(match.distances_um <= 20.0)
    # Brute force over all assignments: the most gated pairs, then the least total distance.
    def score(perm):
        d = [np.linalg.norm(a[i] - b[j]) for i, j in enumerate(perm)]
        return (-sum(x <= 20.0 for x in d), sum(x for x in d if x <= 20.0))
    best = min(score(perm) for perm in itertools.permutations(range(6)))
    assert best[0] == -5
    assert match.distances_um.sum() == pytest.approx(best[1])
    np.testing.assert_allclose(match.offsets_um, b[match.pairs[:, 1]] - a[match.pairs[:, 0]])
    empty = match_particles(a, np.empty((0, 3)), 10.0)
    assert empty.fraction_a == 0.0 and empty.pairs.shape == (0, 2)
    with pytest.raises(ValueError, match="max_distance_um"):
        match_particles(a, b, 0.0)
    with pytest.raises(ValueError, match="same ndim"):
        match_particles(a, b[:, :2], 10.0)


def test_detect_particles_arguments():
    image = np.zeros((10, 10, 10))
    with pytest.raises(ValueError, match="exactly one"):
        detect_particles(image, 1.0)
    with pytest.raises(ValueError, match="diameter_um"):
        detect_particles(image, 1.0, diameter_um=-1)
    image[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detect_particles(image, 1.0, diameter_um=2.0)


def _microdiamonds_mri():
    """Hyperpolarized ¹³C MRI (50 µm voxels) of 40 microdiamonds in tissue, simulated from a
    2× finer specimen; returns the magnitude image, its voxel-0 position (µm) and the truth."""
    specimen = make_specimen("microdiamonds", (64, 128, 128), 25.0, seed=3, count=40,
                             diameter_um=50.0)
    acq = Acquisition(matrix=(32, 64, 64), fov_um=(1600.0, 3200.0, 3200.0), b0_tesla=9.4,
                      nucleus="13C", sequence="gradient_echo", te_ms=(0.5,), tr_ms=5.0,
                      flip_deg=5.0, bandwidth_hz=100_000.0)
    kspace = simulate(specimen, acq, seed=1, polarization=0.3)
    image = np.abs(centered_ifft(kspace.data[0]))
    return image, np.asarray(kspace.truth["origin_um"]), specimen.truth["particle_centres_um"]


def test_dual_mode_microdiamonds_match_within_one_mr_voxel():
    mri, origin_um, truth = _microdiamonds_mri()
    mr_voxel = np.full(3, 50.0)
    # Optical stack (moving): 20 µm pixels, PSF σ 30 µm axial / 15 µm lateral, a known rigid
    # pose: optical world → specimen (MRI world) = pose.
    pose = rigid_affine((3.0, -2.0, 4.0), (30.0, -45.0, 25.0), centre_um=(800, 1600, 1600))
    opt_shape, opt_spacing, psf = (80, 160, 160), np.full(3, 20.0), np.array([30.0, 15.0, 15.0])
    rng = np.random.default_rng(5)
    optical = render_spots(opt_shape, opt_spacing, apply_affine(np.linalg.inv(pose), truth),
                            psf, amplitude=1.0, background=0.02)   # tissue autofluorescence
    optical += rng.normal(0, 0.03, opt_shape).astype(np.float32)

    # MRI: the ~1-voxel spots ring (Gibbs) in the magnitude image: peaks 3 voxels apart.
    mr_um = detect_particles(mri, mr_voxel, diameter_um=100.0, min_distance_um=150.0) + origin_um
    opt_um = detect_particles(optical, opt_spacing, sigma_um=15.0)
    fit, match = particle_affine(opt_um, mr_um, max_distance_um=150.0, kind="rigid")

    # ≥ 95 % of the particles matched, offsets within one MR voxel.
    assert match.fraction_a >= 0.95
    assert len(match.pairs) >= 0.95 * len(truth)
    assert np.all(np.abs(match.offsets_um) < 50.0)
    assert match_particles(mr_um, truth, 50.0).fraction_b >= 0.95
    # The pose itself: rotation and worst-corner displacement over the optical stack.
    assert rotation_angle_deg(fit.affine @ np.linalg.inv(pose)) < 0.5
    assert displacement_error_um(fit.affine, pose,
                                 box_corners_um(opt_shape, opt_spacing)).max() < 25.0
    # Each mode's precision: the bounds add up to about the observed pair scatter.
    pairs = match.pairs
    mr_bound = localisation_precision_um(mri, mr_voxel, mr_um[pairs[:, 1]] - origin_um, 50.0)
    opt_bound = localisation_precision_um(optical, opt_spacing, opt_um[pairs[:, 0]], psf)
    assert np.all(np.median(opt_bound, axis=0) < np.median(mr_bound, axis=0))
    assert np.all(match.scatter_um < 25.0)
