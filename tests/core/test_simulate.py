"""The simulator against truth: noise statistics, SNR laws, diffusion, shifts, fields, blur."""

import numpy as np
import pytest
from skimage.registration import phase_cross_correlation

from napari_mrmicro.core import Acquisition
from napari_mrmicro.core.kspace import centered_ifft
from napari_mrmicro.core.physics import snr_water
from napari_mrmicro.core.simulate import Effects, simulate
from napari_mrmicro.core.specimens import AIR, Specimen, Tissue

WATER = Tissue("water", 1.0, 3000.0, 2000.0, 1000.0, 2.3, 0.0, 0.0)
ONLY_NOISE = Effects(relaxation=False, diffusion=False, readout_decay=False,
                     chemical_shift=False, susceptibility=False)
CLEAN = Effects(relaxation=False, noise=False, diffusion=False, readout_decay=False,
                chemical_shift=False, susceptibility=False)


def coords(shape, spacing):
    """Voxel-centre coordinates (µm) relative to the volume centre, broadcastable."""
    return [((np.arange(n) - (n - 1) / 2) * s).reshape([-1 if i == a else 1 for i in range(3)])
            for a, (n, s) in enumerate(zip(shape, np.broadcast_to(spacing, (3,))))]


def specimen(labels, spacing, *tissues):
    return Specimen("test", labels.astype(np.uint8), (float(spacing),) * 3, (AIR, *tissues))


def acquisition(matrix=(32, 32, 32), voxel=50.0, **kw):
    return Acquisition(matrix=matrix, fov_um=tuple(voxel * m for m in matrix), **kw)


def image(kspace, echo=0):
    return centered_ifft(kspace.data[echo])


def test_noise_only_acquisition_has_the_predicted_sigma():
    acq = acquisition((32, 48, 40), bandwidth_hz=40_000, averages=2)
    empty = specimen(np.zeros((64, 96, 80)), 25.0)
    k = simulate(empty, acq, seed=3, effects=ONLY_NOISE)
    predicted = 1.0 / snr_water(acq)
    im = image(k)
    assert k.truth["sigma"] == pytest.approx(predicted)
    assert im.real.std() == pytest.approx(predicted, rel=0.05)
    assert im.imag.std() == pytest.approx(predicted, rel=0.05)
    # Rayleigh background: mean |noise| = σ√(π/2)
    assert np.abs(im).mean() == pytest.approx(predicted * np.sqrt(np.pi / 2), rel=0.05)
    again = simulate(empty, acq, seed=3, effects=ONLY_NOISE)
    np.testing.assert_array_equal(again.data, k.data)


def measured_snr(acq, seed=0):
    """SNR of a uniform water block filling the central half of the FOV."""
    n = np.array(acq.matrix) * 2
    labels = np.zeros(n, np.uint8)
    labels[tuple(slice(m // 4, 3 * m // 4) for m in n)] = 1
    k = simulate(specimen(labels, acq.fov_um[0] / n[0], WATER), acq, seed=seed,
                 effects=ONLY_NOISE)
    im = image(k)
    inner = tuple(slice(m * 3 // 8, m * 5 // 8) for m in acq.matrix)
    # the object is real, so the imaginary channel is all noise: σ from every voxel
    return im.real[inner].mean() / im.imag.std()


def test_snr_laws():
    base = acquisition((24, 24, 24), voxel=100.0, bandwidth_hz=30_000)
    snr = measured_snr(base)
    assert snr == pytest.approx(snr_water(base), rel=0.05)
    half = acquisition((24, 24, 24), voxel=50.0, bandwidth_hz=30_000)
    assert snr / measured_snr(half, seed=1) == pytest.approx(8.0, rel=0.05)
    four = acquisition((24, 24, 24), voxel=100.0, bandwidth_hz=30_000, averages=4)
    assert measured_snr(four, seed=2) / snr == pytest.approx(2.0, rel=0.05)
    warm = acquisition((24, 24, 24), voxel=100.0, bandwidth_hz=30_000, temperature_k=596.0)
    assert snr / measured_snr(warm, seed=4) == pytest.approx(2.0, rel=0.05)


def test_uniform_water_is_attenuated_by_exp_minus_bD():
    """256 readout points at 50 kHz, 10 µm voxels: G = 459 mT/m; at the echo a dephaser
    of half the readout plus half the readout give b = ⅔γ²G²τ³ (τ = half readout)."""
    matrix, voxel, bw = (4, 4, 256), 10.0, 50_000.0
    acq = Acquisition(matrix=matrix, fov_um=tuple(voxel * m for m in matrix),
                      bandwidth_hz=bw, readout_axis=2)
    water = specimen(np.ones(tuple(2 * m for m in matrix)), voxel / 2, WATER)
    on = Effects(relaxation=False, noise=False, readout_decay=False, chemical_shift=False,
                 susceptibility=False)
    with_d = simulate(water, acq, effects=on).data[(0, 2, 2, 128)]
    without = simulate(water, acq, effects=CLEAN).data[(0, 2, 2, 128)]
    gamma = 2 * np.pi * 42.577478e6
    gradient = bw / (42.577478e6 * 256 * voxel * 1e-6)
    tau = 128 / bw
    b = 2 / 3 * gamma**2 * gradient**2 * tau**3 * 1e-6  # s/mm²
    assert b == pytest.approx(168, rel=0.01)
    assert abs(with_d / without) == pytest.approx(np.exp(-b * 2.3e-3), rel=0.02)


def centroid(weights, axis):
    profile = weights.sum(axis=tuple(a for a in range(3) if a != axis))
    return (profile * np.arange(profile.size)).sum() / profile.sum()


def test_chemical_shift_moves_a_species_along_the_readout_only():
    matrix, voxel = (32, 32, 32), 50.0
    fat = Tissue("fat", 1.0, 3000.0, 2000.0, 1000.0, 0.0, 0.0, -3.4)
    z, y, x = coords(tuple(2 * m for m in matrix), voxel / 2)
    block = (np.abs(z) < 300) & (np.abs(y - 100) < 300) & (np.abs(x) < 150)
    acq = acquisition(matrix, voxel, b0_tesla=9.4, bandwidth_hz=32 * 600.0, readout_axis=1)
    shift_on = Effects(relaxation=False, noise=False, diffusion=False, readout_decay=False,
                       susceptibility=False)
    predicted = 3.4 * 42.577478 * 9.4 / 600.0  # px; −3.4 ppm moves to higher index
    assert predicted == pytest.approx(2.27, rel=0.01)
    for tissue, expected in ((fat, predicted), (WATER, 0.0)):
        sample = specimen(np.where(block, 1, 0), voxel / 2, tissue)
        shifted = image(simulate(sample, acq, effects=shift_on))
        still = image(simulate(sample, acq, effects=CLEAN))
        # sub-pixel shift by upsampled phase correlation of the complex images
        # (Guizar-Sicairos et al., Opt Lett 2008); it returns the registering shift
        found, _, _ = phase_cross_correlation(still, shifted, upsample_factor=200)
        np.testing.assert_allclose(-found, (0.0, expected, 0.0), atol=0.01)


def test_phase_around_a_chi_sphere_is_the_lorentz_corrected_field():
    matrix, voxel, radius = (64, 64, 64), 20.0, 200.0  # radius 10 voxels
    fine = tuple(2 * m for m in matrix)
    z, y, x = coords(fine, voxel / 2)
    r_fine = np.sqrt(z**2 + y**2 + x**2)
    para = Tissue("para", 1.0, 3000.0, 2000.0, 1000.0, 0.0, 1.0, 0.0)
    sample = specimen(np.where(r_fine <= radius, 2, 1), voxel / 2, WATER, para)
    te, b0 = 2.0, 9.4
    acq = acquisition(matrix, voxel, b0_tesla=b0, te_ms=(te,), sequence="gradient_echo",
                      bandwidth_hz=200_000.0)
    k = simulate(sample, acq, effects=Effects(relaxation=False, noise=False, diffusion=False,
                                              readout_decay=False, chemical_shift=False))
    field = np.angle(image(k)) / (2 * np.pi * 42.577478 * b0 * te * 1e-3)  # ppm
    z, y, x = coords(matrix, voxel)
    r = np.sqrt(z**2 + y**2 + x**2)
    cos = z / np.maximum(r, 1e-9)  # B0 along z
    a = (np.count_nonzero(r_fine <= radius) * (voxel / 2) ** 3 * 3 / (4 * np.pi)) ** (1 / 3)
    analytic = (a / np.maximum(r, 1e-9)) ** 3 * (3 * cos**2 - 1) / 3
    shell = (r > 1.5 * a) & (r < 3 * a)
    error, peak = field[shell] - analytic[shell], np.abs(analytic[shell]).max()
    # what remains is Gibbs ringing of the phase step at the surface, as in real data
    assert np.sqrt(np.mean(error**2)) < 0.015 * peak
    assert np.abs(error).max() < 0.07 * peak
    assert np.abs(field[r < 0.6 * a]).max() < 0.02
    np.testing.assert_allclose(k.truth["chi_ppm"][r < 0.6 * a], 1.0)


def fwhm(profile):
    """Full width at half maximum of a single peak, by linear interpolation."""
    peak = np.argmax(profile)
    half = profile[peak] / 2
    left = peak - np.argmax(profile[peak::-1] < half)
    right = peak + np.argmax(profile[peak:] < half)
    x_left = left + (half - profile[left]) / (profile[left + 1] - profile[left])
    x_right = right - 1 + (profile[right - 1] - half) / (profile[right - 1] - profile[right])
    return x_right - x_left


def test_t2star_blur_matches_lorentzian_width():
    """Around a spin echo the signal decays as exp(−|t − TE|/T2'); its Lorentzian PSF has
    FWHM 1/(π·T2'·BW_px) pixels (T2 ≫ T2* so that T2' = T2*)."""
    matrix, voxel, bw_px = (8, 8, 64), 50.0, 200.0
    t2star = 1.0 / (5 * np.pi * bw_px)  # 5 px wide
    sheet_tissue = Tissue("sheet", 1.0, 3000.0, 1e9, t2star * 1e3, 0.0, 0.0, 0.0)
    labels = np.zeros(tuple(2 * m for m in matrix))
    labels[:, :, 64] = 1
    acq = acquisition(matrix, voxel, bandwidth_hz=bw_px * 64, readout_axis=2)
    k = simulate(specimen(labels, voxel / 2, sheet_tissue), acq, effects=Effects(
        relaxation=False, noise=False, diffusion=False, chemical_shift=False,
        susceptibility=False))
    profile = np.abs(image(k))[4, 4]
    assert fwhm(profile) == pytest.approx(5.0, rel=0.10)


def test_grid_must_fit_the_acquisition():
    acq = acquisition((16, 16, 16), 50.0)
    with pytest.raises(ValueError, match="integer multiple"):
        simulate(specimen(np.zeros((24, 32, 32)), 25.0), acq)
    with pytest.raises(ValueError, match="FOV"):
        simulate(specimen(np.zeros((32, 32, 32)), 20.0), acq)


def test_hyperpolarized_c13_is_spent_as_cos_alpha_to_the_n():
    """One excitation per phase-encode line (linear order, outer axis slowest), no T1
    recovery: line n carries sin α·cos^n α of the initial polarization."""
    matrix, voxel = (8, 16, 16), 100.0
    diamond = Tissue("diamond", 0.0, 1e6, 1e6, 1e6, 0.0, 0.0, 0.0, c13_density=1.0)
    z, y, x = coords(tuple(2 * m for m in matrix), voxel / 2)
    sample = specimen(np.where(z**2 + y**2 + x**2 < 500**2, 1, 0), voxel / 2, diamond)

    def lines(flip):
        acq = acquisition(matrix, voxel, nucleus="13C", flip_deg=flip, readout_axis=2,
                          sequence="gradient_echo", te_ms=(1.0,), tr_ms=10.0)
        k = simulate(sample, acq, effects=CLEAN, polarization=0.2).data[0]
        return k[:, :, 8] / np.sin(np.deg2rad(flip))  # the readout's k = 0 sample

    alpha = 10.0
    spent, fresh = lines(alpha), lines(0.01)
    n = np.arange(8 * 16).reshape(8, 16)
    strong = np.abs(fresh) > 1e-3 * np.abs(fresh).max()
    np.testing.assert_allclose((spent / fresh)[strong], np.cos(np.deg2rad(alpha)) ** n[strong],
                               rtol=1e-4)
    # the hyperpolarized signal dwarfs the thermal one: 20 % against ~8e-6 at 9.4 T
    assert np.abs(fresh).max() > 1e3


def test_gradient_nonlinearity_displaces_more_far_from_the_centre():
    """A grid of calibration tubes: with no non-linearity every tube sits where the
    specimen says; with c = 5 % a tube at radius r moves out by c·r³/R² (R = half the
    largest FOV), within the half fine voxel of the nearest-neighbour encoding."""
    import scipy.ndimage as ndi
    from scipy.spatial import cKDTree

    from napari_mrmicro.core import make_specimen

    matrix, voxel = (8, 64, 64), 50.0
    acq = acquisition(matrix, voxel, readout_axis=2)
    tubes = make_specimen("tube", tuple(2 * n for n in matrix), voxel / 2, axis=0, grid=True,
                          inner_diameter_um=200.0, wall_thickness_um=50.0, grid_pitch_um=600.0)
    truth = tubes.truth["tube_centres_um"][:, 1:]
    centre = np.array(tubes.truth["volume_centre_um"])[1:]
    radius = np.linalg.norm(truth - centre, axis=1)
    big_r = 0.5 * max(acq.fov_um)
    for c in (0.0, 0.05):
        k = simulate(tubes, acq, effects=Effects(
            relaxation=False, noise=False, diffusion=False, readout_decay=False,
            chemical_shift=False, susceptibility=False, gradient_nonlinearity=c))
        img = np.abs(image(k))[4]
        lab, n = ndi.label(img > 0.5 * img.max())
        assert n == len(truth)
        found = np.array(ndi.center_of_mass(img, lab, range(1, n + 1))) * voxel
        found += np.array(k.truth["origin_um"])[1:]
        _, nearest = cKDTree(found).query(truth)
        moved = np.linalg.norm(found[nearest] - centre, axis=1) - radius
        expected = c * radius**3 / big_r**2
        far = radius > 1000
        assert np.abs(moved - expected).max() < (0.1 if c == 0 else 0.75 * voxel / 2)
        if c:
            assert np.all(moved[far] > 30) and np.all(np.abs(moved[radius < 700]) < 1)


def test_noise_depends_on_the_seed_only_not_on_the_cores(monkeypatch):
    from napari_mrmicro.core import _slabs

    acq = acquisition((16, 16, 16), bandwidth_hz=40_000)
    empty = specimen(np.zeros((32, 32, 32)), 25.0)
    k = simulate(empty, acq, seed=7, effects=ONLY_NOISE).data
    monkeypatch.setattr(_slabs, "core_count", lambda: 1)
    np.testing.assert_array_equal(simulate(empty, acq, seed=7, effects=ONLY_NOISE).data, k)
    assert not np.array_equal(simulate(empty, acq, seed=8, effects=ONLY_NOISE).data, k)


def test_a_tissue_split_under_two_labels_gives_the_same_kspace():
    """Tissues with one k-space modulation share a transform; which label a voxel carries
    must not matter (here with every effect on, non-linearity and χ included)."""
    acq = acquisition((16, 16, 16), voxel=50.0, b0_tesla=9.4, sequence="gradient_echo",
                      te_ms=(3.0, 6.0), tr_ms=50.0, flip_deg=20.0)
    z, y, x = coords((32, 32, 32), 25.0)
    para = Tissue("para", 0.8, 1200.0, 50.0, 20.0, 1.0, 0.5, 0.0)
    one = np.where(z**2 + y**2 + x**2 < 300**2, 2, np.where(np.abs(z) < 350, 1, 0))
    two = np.where((one == 1) & (x > 0), 3, one)
    effects = Effects(noise=False, gradient_nonlinearity=0.05)
    a = simulate(specimen(one, 25.0, WATER, para), acq, effects=effects).data
    b = simulate(specimen(two, 25.0, WATER, para, WATER), acq, effects=effects).data
    np.testing.assert_allclose(b, a, atol=1e-6 * np.abs(a).max())


def test_gradient_nonlinearity_moves_signal_but_keeps_its_total():
    """Encoded farther out, blocks grow by (1 + k r²)²(1 + 3k r²) and thin out by as
    much: the k = 0 sample (the total signal) does not change. Nine water blocks of
    24³ fine voxels, one central and eight towards the corners; c = 10 %."""
    from napari_mrmicro.core.encoding import encode

    matrix, voxel = (64, 64, 64), 25.0
    labels = np.zeros((128, 128, 128), np.uint8)
    for corner in [(52, 52, 52), *np.ndindex(2, 2, 2)]:
        start = [c if c > 1 else 16 + 72 * c for c in corner]
        labels[tuple(slice(a, a + 24) for a in start)] = 1
    sample = specimen(labels, voxel / 2, WATER)
    acq = acquisition(matrix, voxel)
    still = simulate(sample, acq, effects=CLEAN)
    moved = simulate(sample, acq, effects=Effects(
        relaxation=False, noise=False, diffusion=False, readout_decay=False,
        chemical_shift=False, susceptibility=False, gradient_nonlinearity=0.1))
    grown = np.count_nonzero(encode(labels, sample.spacing_um, nonlinearity=0.1,
                                    radius_um=800.0)[0]) / np.count_nonzero(labels)
    assert grown > 1.2  # the blocks cover 20 % more voxels once encoded ...
    dc = (0, 32, 32, 32)  # ... but carry the same signal
    assert abs(moved.data[dc]) == pytest.approx(abs(still.data[dc]), rel=5e-3)


def test_a_simulation_that_will_not_fit_is_refused_before_it_starts(monkeypatch):
    from napari_mrmicro.core import memory

    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(MemoryError, match="simulate: a .* specimen .* coarser specimen grid"):
        simulate(specimen(np.zeros((64, 64, 64)), 25.0), acquisition())


def test_a_diffusion_preparation_gives_the_tensor_back():
    """A block of fibrous tissue (3× faster along z than across) and one of water,
    prepared at b 0 and along six directions: the tensor fitted to the reconstructed
    images is each tissue's own, whatever the imaging gradients' weighting of every
    k-space sample (the same in every image), and the fibres point along z."""
    from napari_mrmicro.core.diffusion_tensor import b_matrices, fit_diffusion

    nerve = Tissue("nerve", 0.8, 3000.0, 2000.0, 1000.0, 0.8, 0.0, 0.0,
                   axial_to_radial=3.0, fibre_axis=(1.0, 0.0, 0.0))
    labels = np.zeros((32, 32, 32))
    labels[4:28, 4:28, 4:16], labels[4:28, 4:28, 16:28] = 1, 2
    phantom = specimen(labels, 50.0, WATER, nerve)
    directions = [(1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1)]
    b = b_matrices([0.0] + [1000.0] * 6, np.r_[np.zeros((1, 3)), directions])
    on = Effects(relaxation=False, noise=False, readout_decay=False, chemical_shift=False,
                 susceptibility=False)
    images = [np.abs(image(simulate(phantom, acquisition(
        (16, 16, 16), 100.0, extra={"diffusion_b_matrix_s_per_mm2": bk.tolist()}),
        effects=on))) for bk in b]
    water_part, nerve_part = np.zeros((2, 16, 16, 16), bool)  # away from the edges
    water_part[4:12, 4:12, 3:7], nerve_part[4:12, 4:12, 9:13] = True, True
    fit = fit_diffusion(np.stack(images).astype(np.float32), b, mask=water_part | nerve_part)
    assert fit.fitted[water_part | nerve_part].all()
    assert np.median(fit.md()[water_part]) == pytest.approx(2.3, rel=0.01)
    assert np.median(fit.fa()[water_part]) < 0.01
    assert np.median(fit.md()[nerve_part]) == pytest.approx(0.8, rel=0.01)
    assert np.median(fit.eigenvalues[0][nerve_part]) == pytest.approx(1.44, rel=0.01)
    assert np.all(np.abs(fit.principal[0][nerve_part]) > 0.999)  # along z
    with pytest.raises(ValueError, match="diffusion_b_matrix"):
        simulate(phantom, acquisition((16, 16, 16), 100.0, extra={
            "diffusion_b_matrix_s_per_mm2": [[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]]}))
