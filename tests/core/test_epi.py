"""EPI regridding against an analytic forward model: ramp-sampled readouts of a known object
computed by the direct (off-grid) DFT (``tests/epi_scanner.py``), alternate lines reversed,
with a polarity phase and a Nyquist ghost put in, must give back the object's Cartesian
k-space."""

import numpy as np
import pytest
from scipy import ndimage
from epi_scanner import echo_trains, trapezoid_trajectory

from napari_mrmicro.core.epi import (correct_nyquist_ghost, fit_nyquist_ghost,
                                     image_entropy, regrid_echo_train, regrid_operator)
from napari_mrmicro.core.kspace import centered_fft, centered_ifft

N, LINES, SAMPLES = 64, 24, 64


def band_limited_object(band: int, seed: int = 0):
    """(image, Cartesian k-space) of a random object whose readout spectrum is zero beyond
    ``|k| > band``."""
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(LINES, N)) + 1j * rng.normal(size=(LINES, N))
    k[:, np.abs(np.arange(N) - N // 2) > band] = 0
    return centered_ifft(k.astype(np.complex64), axes=(-1,)), k.astype(np.complex64)


@pytest.fixture
def scene():
    trajectory = trapezoid_trajectory(SAMPLES, ramp=14, excursion=44.0)
    image, truth = band_limited_object(band=20)
    polarity = 0.9 * np.sin(np.linspace(0, np.pi, SAMPLES))  # eddy-current B0, radians
    # a slope of 2π/N shifts the odd lines by one k sample: the object stays band-limited,
    # so the forward model is exact on the grid
    ghost = (0.4, -2 * np.pi / N)
    return trajectory, image, truth, polarity, ghost


def test_ramp_sampled_train_gives_the_cartesian_kspace(scene):
    trajectory, image, truth, polarity, ghost = scene
    train = echo_trains(image, trajectory, polarity, ghost)
    lines, covered = regrid_echo_train(train, trajectory, N, polarity_phase=polarity)
    correct_nyquist_ghost(lines, np.array(ghost))
    assert lines.dtype == np.complex64 and lines.shape == (LINES, N)
    # the lobe spans ±22 cycles/FOV: 45 grid points, the rest was never measured
    assert np.flatnonzero(covered).tolist() == list(range(N // 2 - 22, N // 2 + 23))
    assert np.abs(lines[:, ~covered]).max() < 1e-5 * np.abs(lines).max()
    error = np.linalg.norm(lines - truth) / np.linalg.norm(truth)
    assert error < 1e-4


@pytest.mark.parametrize("missing", ["polarity_phase", "ghost", "trajectory"])
def test_each_correction_is_needed(scene, missing):
    """Leaving out one correction leaves the N/2 ghost (or the ramp blur) in the image."""
    trajectory, image, truth, polarity, ghost = scene
    train = echo_trains(image, trajectory, polarity, ghost)
    used = trajectory
    if missing == "trajectory":  # samples taken as equally spaced across the lobe
        used = np.linspace(0, trajectory.max(), SAMPLES)
    lines, _ = regrid_echo_train(train, used, N, polarity_phase=None
                                 if missing == "polarity_phase" else polarity)
    if missing != "ghost":
        correct_nyquist_ghost(lines, np.array(ghost))
    assert np.linalg.norm(lines - truth) / np.linalg.norm(truth) > 0.05


def test_leading_axes_and_ghost_per_train(scene):
    """Trains of several slices and receivers each take their own ghost coefficients."""
    trajectory, image, truth, polarity, _ = scene
    slope = 2 * np.pi / N
    ghosts = np.array([[[0.1, -slope], [-0.3, slope]], [[0.5, 0.0], [0.0, -slope]]])  # 2 x 2
    trains = np.stack([np.stack([echo_trains(image, trajectory, polarity, g) for g in row])
                       for row in ghosts])
    lines, _ = regrid_echo_train(trains, trajectory, N, polarity_phase=polarity)
    correct_nyquist_ghost(lines, ghosts)
    assert lines.shape == (2, 2, LINES, N)
    for i in range(2):
        for j in range(2):
            assert np.linalg.norm(lines[i, j] - truth) / np.linalg.norm(truth) < 1e-4


@pytest.mark.parametrize("ghost", [(0.4, -2 * np.pi / N), (-1.2, 0.0), (0.9, 2 * np.pi / N)])
def test_ghost_found_from_the_image_alone(scene, ghost):
    """Without the scanner's coefficients, the (φ0, φ1) that minimise the image's entropy
    are the ghost put in, for a compact object (a soft-edged ellipse, band-limited along
    x)."""
    trajectory, _, _, polarity, _ = scene
    y, x = np.meshgrid(np.arange(LINES) - LINES / 2, np.arange(N) - N / 2, indexing="ij")
    ellipse = ndimage.gaussian_filter(((y / 8) ** 2 + (x / 20) ** 2 <= 1).astype(float), 1.0)
    head = centered_fft(ellipse.astype(np.complex64), axes=(-1,))
    head[:, np.abs(np.arange(N) - N // 2) > 20] = 0
    head = centered_ifft(head, axes=(-1,))                  # image, band-limited along x
    hybrid = centered_fft(head, axes=(0,))                  # lines (ky) x readout image
    train = echo_trains(hybrid, trajectory, polarity, ghost)
    lines, _ = regrid_echo_train(train, trajectory, N, polarity_phase=polarity)
    found = fit_nyquist_ghost(lines, np.arange(LINES), LINES)
    np.testing.assert_allclose(found, ghost, atol=2e-3)
    corrected = correct_nyquist_ghost(lines.copy(), found)
    image = centered_ifft(centered_ifft(corrected, axes=(-1,)), axes=(0,))
    np.testing.assert_allclose(np.abs(image), np.abs(head), atol=2e-3 * np.abs(head).max())
    assert image_entropy(image) < image_entropy(centered_ifft(centered_ifft(
        lines, axes=(-1,)), axes=(0,))) - 0.1


def test_operator_on_the_grid_is_the_identity():
    positions = np.arange(-20, 20, dtype=float)
    operator, covered = regrid_operator(positions, 48)
    assert covered.sum() == 40
    np.testing.assert_allclose(operator[covered], np.eye(40), atol=1e-5)
    assert not operator[~covered].any()


def test_ghost_correction_removes_a_linear_phase():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, 8, 32)) + 1j * rng.normal(size=(2, 8, 32))
    ghost = np.array([[0.2, 0.05], [-0.7, -0.01]])
    corrupted = image.copy()
    corrupted[:, 1::2] *= np.exp(-1j * (ghost[:, 0, None, None]
                                        + ghost[:, 1, None, None] * np.arange(32)))
    lines = centered_fft(corrupted.astype(np.complex64), axes=(-1,))
    correct_nyquist_ghost(lines, ghost)
    np.testing.assert_allclose(centered_ifft(lines, axes=(-1,)), image, atol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: regrid_operator([0.0, np.nan, 2.0], 8), "finite"),
    (lambda: regrid_operator([0.0, 1.0, 30.0], 64), "cannot determine"),
    (lambda: regrid_echo_train(np.zeros((4, 10)), np.arange(8.0), 8), "8 samples"),
    (lambda: regrid_echo_train(np.zeros((4, 8)), np.arange(8.0), 8,
                               polarity_phase=np.zeros(7)), "polarity_phase"),
    (lambda: correct_nyquist_ghost(np.zeros((4, 8), np.complex64), [0.1]), "ghost"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
