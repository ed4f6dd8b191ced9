"""QSM with its defaults on an independent forward model, input checks, χ from field maps."""

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, gaussian_filter

from napari_mrmicro.core import qsm_from_field
from napari_mrmicro.core.qsm import (
    b0_direction_from_affine, forward_field, nrmse, pdf, qsm_stages, signal_mask)
from napari_mrmicro.core.qsm.pipeline import BOUNDARY_PASSES, passes_converged

from qsm_forward_phantom import CYLINDER_CHI, forward_scan  # noqa: E402  (tests/core/qsm)

pytest.importorskip("qsm_forward")


@pytest.fixture(scope="module")
def scan():
    # air bubble outside the specimen, bone-like signal void inside
    return forward_scan(voids=("bone", "bubble"))


def cylinder_errors(scan, result):
    """Each cylinder's χ relative to the mask mean, against the truth's, as a fraction."""
    inside = result.local_mask
    errors = []
    for core, _ in zip(scan.cylinders, CYLINDER_CHI):
        core = core & inside
        measured = result.chi_ppm[core].mean() - result.chi_ppm[inside].mean()
        truth = scan.chi_ppm[core].mean() - scan.chi_ppm[inside].mean()
        errors.append(abs(measured - truth) / abs(truth))
    return np.array(errors)


def test_defaults_recover_the_cylinders_of_qsm_forward(scan):
    result = qsm_stages(scan.magnitude, scan.phase, scan.te_ms, scan.b0_tesla,
                        scan.spacing_um, scan.b0_direction)
    errors = cylinder_errors(scan, result)
    assert (errors <= 0.20).sum() >= 4, errors  # measured 5 of 5, all within 11 %
    tissue = result.local_mask & scan.tissue
    assert nrmse(result.chi_ppm, scan.chi_ppm, tissue) <= 12.0  # measured 10.6 % (issue: 30 %)
    # the mask: the bone void and the dephased shell next to the bubble are out
    report = result.mask_report
    assert report is not None and report.misfit_checked
    assert not (result.mask & binary_erosion(scan.voids)).any()
    assert (result.mask & scan.voids).sum() < 0.1 * scan.voids.sum()  # a few edge voxels
    assert report.voids > 0 and report.misfit > 0 and report.dim > 0
    assert result.mask[scan.tissue].mean() > 0.8
    assert "left out" in report.summary()


def test_partial_volume_edge_of_voids_out_of_the_mask_helps_with_an_air_pocket():
    """With an air pocket (χ +9.4 ppm) inside too, the mask's dim edge voxels, part void,
    are strong sources; leaving them out lowers NRMSE (measured 27.4 → 14.4 %)."""
    s = forward_scan(voids=("bone", "air", "bubble"))
    scores = []
    for fraction in (0.0, 0.7):
        mask, _ = signal_mask(s.magnitude, phase=s.phase, te_ms=s.te_ms,
                              partial_fraction=fraction)
        result = qsm_stages(s.magnitude, s.phase, s.te_ms, s.b0_tesla, s.spacing_um,
                            s.b0_direction, mask=mask)
        assert (cylinder_errors(s, result) <= 0.20).sum() >= 4
        scores.append(nrmse(result.chi_ppm, s.chi_ppm, result.local_mask & s.tissue))
    assert scores[1] < scores[0] - 8 and scores[1] <= 16.0, scores


@pytest.mark.parametrize("config, limit", [
    # the same phantom, B0 oblique to the cylinders, another noise draw: measured 11.5 %
    (dict(voids=("bone", "bubble"), seed=1, b0_direction=(1.0, 0.3, 0.5)), 13.0),
    # other χ, one cylinder at 0.05 ppm, B0 along y: measured 8.0 %
    (dict(voids=("bone", "bubble"), seed=3, b0_direction=(0.0, 1.0, 0.0),
          cylinder_chi=(0.3, -0.15, 0.05, -0.3, 0.15)), 10.0),
])
def test_defaults_hold_on_other_configurations(config, limit):
    s = forward_scan(**config)
    result = qsm_stages(s.magnitude, s.phase, s.te_ms, s.b0_tesla, s.spacing_um,
                        s.b0_direction)
    assert (cylinder_errors(s, result) <= 0.20).sum() >= 4
    assert nrmse(result.chi_ppm, s.chi_ppm, result.local_mask & s.tissue) <= limit


def test_lbv_boundary_passes_put_back_the_local_field_at_the_surface(scan):
    """Plain LBV takes the local field to vanish on the mask boundary; the cylinders' field
    reaches it, so their χ comes out low. The passes measure 24.2 → 10.6 % and stop by the
    noise rule after three."""
    stages = []
    plain = qsm_stages(scan.magnitude, scan.phase, scan.te_ms, scan.b0_tesla,
                       scan.spacing_um, scan.b0_direction, boundary_passes=0)
    passes = qsm_stages(scan.magnitude, scan.phase, scan.te_ms, scan.b0_tesla,
                        scan.spacing_um, scan.b0_direction, boundary_passes=6,
                        progress=lambda stage, f: stages.append((stage, f)))
    scores = [nrmse(r.chi_ppm, scan.chi_ppm, r.local_mask & scan.tissue)
              for r in (plain, passes)]
    assert scores[1] < scores[0] - 10, scores
    ran = {stage for stage, _ in stages if "boundary pass" in stage}
    assert 2 <= len(ran) < 6, ran  # stopped by the noise rule, not by the cap
    # the progress never runs back, though how many passes run is not known ahead
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # the local field no longer vanishes next to the boundary (measured 2.1× plain LBV's)
    rim = passes.local_mask & ~binary_erosion(passes.local_mask)
    assert np.abs(passes.local_field_ppm[rim]).mean() > 1.5 * np.abs(
        plain.local_field_ppm[rim]).mean()
    with pytest.raises(ValueError, match="boundary_passes"):
        qsm_stages(scan.magnitude, scan.phase, scan.te_ms, scan.b0_tesla, scan.spacing_um,
                   boundary_passes=-1)


@pytest.mark.parametrize("background, limit", [("vsharp", 17.0), ("pdf", 17.0)])
def test_boundary_passes_undo_the_bias_of_every_background_removal(scan, background, limit):
    """V-SHARP with its published radii and PDF alone return χ 40–60 % low here (no
    cylinder within 20 %, NRMSE 61 and 53 %); with the passes measured 4 and 5 of 5,
    NRMSE 14.3 and 12.7 %."""
    results = [qsm_stages(scan.magnitude, scan.phase, scan.te_ms, scan.b0_tesla,
                          scan.spacing_um, scan.b0_direction, background=background,
                          boundary_passes=passes) for passes in (0, BOUNDARY_PASSES)]
    alone, passes = (cylinder_errors(scan, r) for r in results)
    assert (alone > 0.2).sum() >= 4, alone
    assert (passes <= 0.2).sum() >= 4, passes
    assert nrmse(results[1].chi_ppm, scan.chi_ppm, results[1].local_mask & scan.tissue) <= limit


def test_passes_do_not_stop_early_where_the_noise_is_high():
    """At peak SNR 30 the field's error is 11 % of the local field's RMS; stopping within
    it left PDF + TV after 2 passes at NRMSE 46 % (1 of 5). Measured with PASS_TOL: 20
    passes, 14.7 %, 5 of 5 (17.4 % with 300 PDF iterations)."""
    s = forward_scan(voids=("bone", "bubble"), peak_snr=30.0)
    result = qsm_stages(s.magnitude, s.phase, s.te_ms, s.b0_tesla, s.spacing_um,
                        s.b0_direction, background="pdf")
    assert (cylinder_errors(s, result) <= 0.2).sum() >= 4
    assert nrmse(result.chi_ppm, s.chi_ppm, result.local_mask & s.tissue) <= 22.0


def test_pdf_alone_takes_the_local_field_of_sources_near_the_surface(scan):
    """Why PDF needs the passes: given the cylinders' own field and no background at all,
    it removes about half of it (measured 52 % of the RMS in 30 iterations, 54 % in 300)."""
    mask = scan.tissue
    local = forward_field(np.where(mask, scan.chi_ppm, 0).astype(np.float32),
                          scan.spacing_um, scan.b0_direction)
    found, _ = pdf(np.where(mask, local, 0), mask, scan.spacing_um, scan.b0_direction,
                   max_iter=30)
    lost = (local - found)[mask]
    kept = local[mask] - local[mask].mean()
    assert np.sqrt(np.mean((lost - lost.mean()) ** 2)) > 0.4 * np.sqrt(np.mean(kept**2))


def test_passes_stop_within_the_error_of_their_fixed_point():
    level = 1.0
    assert not passes_converged([0.9], level)  # one change tells nothing of the rate
    assert not passes_converged([1.2], level)
    # a step below the error, but contracting slowly: 0.9·0.9/0.1 = 8.1 left
    assert not passes_converged([1.0, 0.9], level)
    assert passes_converged([1.2, 0.6], level)  # 0.6 left
    assert passes_converged([0.5, 0.6], level)  # not shrinking: the inversions' noise


def test_mask_leaves_out_voids_without_phase():
    """Magnitude alone cannot tell a void's Gibbs ringing from tissue; the phase can."""
    s = forward_scan(n=32, voids=("bone",), seed=1)
    plain, plain_report = signal_mask(s.magnitude, partial_fraction=0)
    checked, report = signal_mask(s.magnitude, phase=s.phase, te_ms=s.te_ms,
                                  partial_fraction=0)
    assert not plain_report.misfit_checked and report.misfit_checked
    assert (checked & s.voids).sum() < (plain & s.voids).sum()
    assert checked[s.tissue & ~s.voids].mean() > 0.95


@pytest.mark.parametrize("change, message", [
    (lambda m, p, te: (m, m, te), "same data"),
    (lambda m, p, te: (m, p * 10, te), "not a wrapped phase"),
    (lambda m, p, te: (-m, p, te), "negative"),
    (lambda m, p, te: (m, p, te[:2]), "one TE per echo"),
    (lambda m, p, te: (m + 1j, p, te), "complex"),
])
def test_bad_input_is_refused_before_any_work(change, message):
    rng = np.random.default_rng(0)
    magnitude = rng.uniform(1, 2, (3, 8, 8, 8)).astype(np.float32)
    phase = rng.uniform(-np.pi, np.pi, (3, 8, 8, 8)).astype(np.float32)
    m, p, te = change(magnitude, phase, (2.0, 4.0, 6.0))
    seen = []
    with pytest.raises(ValueError, match=message):
        qsm_stages(m, p, te, 9.4, 50.0, progress=lambda stage, f: seen.append(stage))
    assert seen == []  # refused before the first stage


def test_phase_in_degrees_is_accepted_when_declared():
    rng = np.random.default_rng(0)
    phase = rng.uniform(-180, 180, (3, 8, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="phase_unit"):
        qsm_stages(np.ones_like(phase), phase, (2, 4, 6), 9.4, 50.0)
    with pytest.raises(ValueError, match="phase_unit must be"):
        qsm_stages(np.ones_like(phase), phase, (2, 4, 6), 9.4, 50.0, phase_unit="grad")


def test_qsm_from_field_in_hz_equals_ppm_and_recovers_a_sphere():
    n, spacing = 40, 50.0
    g = np.arange(n) - n / 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    chi = np.where(z**2 + y**2 + x**2 < 5**2, 0.3, 0.0).astype(np.float32)
    mask = z**2 + y**2 + x**2 < 16**2
    field = forward_field(chi, spacing, (1.0, 0.0, 0.0))
    larmor = 400.3078e6
    chi_ppm, _, inside = qsm_from_field(field, mask, spacing, (1.0, 0.0, 0.0), method="tkd")
    chi_hz, _, _ = qsm_from_field(field * larmor * 1e-6, mask, spacing, (1.0, 0.0, 0.0),
                                  field_unit="Hz", larmor_hz=larmor, method="tkd")
    np.testing.assert_allclose(chi_hz, chi_ppm, atol=1e-4)
    core = (z**2 + y**2 + x**2 < 3**2) & inside
    assert chi_ppm[core].mean() - chi_ppm[inside & ~(chi > 0)].mean() == pytest.approx(0.3,
                                                                                     rel=0.2)
    with pytest.raises(ValueError, match="larmor_hz"):
        qsm_from_field(field, mask, spacing, field_unit="Hz")
    with pytest.raises(ValueError, match="field_unit"):
        qsm_from_field(field, mask, spacing, field_unit="T")
    with pytest.raises(ValueError, match="background"):
        qsm_from_field(field, mask, spacing, background="sharp")


def test_b0_direction_from_affine():
    assert b0_direction_from_affine(np.eye(4)) == pytest.approx((1.0, 0.0, 0.0))
    # a slab tilted by 30° about the R axis: B0 (world S) leans into array axis y
    a = np.deg2rad(30)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    b0 = b0_direction_from_affine(rotation)
    assert np.asarray(rotation) @ np.asarray(b0) == pytest.approx((1.0, 0.0, 0.0))
    # with the voxel scale inside the affine, the physical direction is the same
    spacing = (50.0, 20.0, 20.0)
    assert b0_direction_from_affine(rotation @ np.diag(spacing), spacing) == pytest.approx(b0)
    with pytest.raises(ValueError, match="singular"):
        b0_direction_from_affine(np.zeros((3, 3)))


def test_paravision_field_map_gives_finite_ppm(realdata):
    from napari_mrmicro.io import read_volume

    path = realdata("bruker_pv/pv360_rodent/8/pdata/1/2dseq")
    volume = read_volume(path)
    assert volume.metadata["value_unit"] == "Hz"
    mask = volume.data != 0  # ParaVision zeroes the map where it has no signal
    b0 = b0_direction_from_affine(volume.affine_um, volume.spacing_um)
    assert max(abs(v) for v in b0) == pytest.approx(1.0)  # an axial slab: B0 along one axis
    chi, local, inside = qsm_from_field(volume.data, mask, volume.spacing_um, b0,
                                        field_unit="Hz", larmor_hz=400.3078e6, max_iter=50)
    assert inside.sum() > 0.5 * mask.sum()
    assert np.all(np.isfinite(chi)) and chi.dtype == np.float32
    # brain tissue: χ within a few tenths of a ppm of its mean, local field well below 1 ppm
    assert np.percentile(np.abs(chi[inside]), 99) < 1.0
    assert np.percentile(np.abs(local[inside]), 99) < 0.5


def test_the_rim_of_a_real_field_map_is_eroded_away(realdata):
    """Scan 8's map jumps between neighbours next to air (-640 Hz beside 0): with its
    non-zero voxels as the mask, 22 voxels get |χ| of 1-6 ppm; eroded by 250 µm (about a
    voxel), none above 1 ppm."""
    from napari_mrmicro.core.qsm.field_map import field_map_mask
    from napari_mrmicro.io import read_volume

    volume = read_volume(realdata("bruker_pv/pv360_rodent/8/pdata/1/2dseq"))
    field = np.asarray(volume.data)
    b0 = b0_direction_from_affine(volume.affine_um, volume.spacing_um)
    peaks = []
    for erode_um in (0.0, 250.0):
        mask = field_map_mask(field, volume.spacing_um, erode_um)
        assert mask.sum() == ((field != 0).sum() if erode_um == 0 else 52879)
        chi, _, _ = qsm_from_field(field, mask, volume.spacing_um, b0, field_unit="Hz",
                                   larmor_hz=400.3078e6)
        peaks.append(float(np.abs(chi).max()))
    assert peaks[0] > 5 and peaks[1] < 1, peaks
    with pytest.raises(ValueError, match="spacing_um"):
        field_map_mask(field, None, 250.0)
    with pytest.raises(ValueError, match="zero or not finite everywhere"):
        field_map_mask(np.zeros((4, 4, 4)))


def test_background_removals_agree_on_a_real_field_map_with_the_passes(realdata):
    """ParaVision field map scan 8 (a rodent head, 0.234 mm): no truth, but three
    independent background removals. With the passes, χ of LBV and V-SHARP agree better
    (correlation measured 0.63 → 0.71: V-SHARP's missing low frequencies come back), and
    finer than 2 voxels, deeper than 3, the passes keep what all three share (0.69–0.80;
    0.66–0.80 without them). PDF's coarser χ agrees with neither, with or without."""
    from napari_mrmicro.io import read_volume

    volume = read_volume(realdata("bruker_pv/pv360_rodent/8/pdata/1/2dseq"))
    mask = volume.data != 0
    b0 = b0_direction_from_affine(volume.affine_um, volume.spacing_um)
    found, stages = {}, []
    for background, passes in (("lbv", 0), ("vsharp", 0), ("lbv", BOUNDARY_PASSES),
                               ("vsharp", BOUNDARY_PASSES), ("pdf", BOUNDARY_PASSES)):
        found[background, passes] = qsm_from_field(
            volume.data, mask, volume.spacing_um, b0, field_unit="Hz",
            larmor_hz=400.3078e6, background=background, boundary_passes=passes,
            report=lambda stage, f: stages.append((background, stage)))
    # without the field's error the passes stop within PASS_TOL of their fixed point:
    # LBV measured 3, V-SHARP 7
    ran = {stage for background, stage in stages if "boundary pass" in stage
           and background != "pdf"}
    assert 0 < len(ran) < BOUNDARY_PASSES, ran
    common = mask.copy()
    for key in found:
        common &= found[key][2]
    interior = common & binary_erosion(mask, iterations=3)

    def correlation(a, b, fine=False):
        x, y = found[a][0], found[b][0]
        if not fine:
            return np.corrcoef(x[common], y[common])[0, 1]
        # χ minus its mean over 2 voxels (Gaussian, normalised in the mask), deep inside
        weight = gaussian_filter(interior.astype(np.float64), 2)
        x, y = (v - gaussian_filter(np.where(interior, v, 0), 2) / np.maximum(weight, 1e-6)
                for v in (x, y))
        return np.corrcoef(x[interior], y[interior])[0, 1]

    plain = correlation(("lbv", 0), ("vsharp", 0))
    passes = correlation(("lbv", BOUNDARY_PASSES), ("vsharp", BOUNDARY_PASSES))
    assert passes > plain + 0.04, (plain, passes)
    for a, b in (("lbv", "vsharp"), ("lbv", "pdf"), ("vsharp", "pdf")):
        fine = correlation((a, BOUNDARY_PASSES), (b, BOUNDARY_PASSES), fine=True)
        assert fine > 0.6, (a, b, fine)


def test_field_error_grows_with_the_misfit_where_the_phase_bends():
    from napari_mrmicro.core.qsm import fit_field

    te = np.array([2.0, 4.0, 6.0, 8.0])
    phase = 2 * np.pi * 30.0 * te[:, None, None, None] * 1e-3 * np.ones((4, 4, 4, 4))
    phase[3, 0] += 0.5  # one plane's last echo off the line
    fit = fit_field(phase, te, np.ones_like(phase), b0_tesla=9.4, noise_sigma=0.01)
    error = fit.error_std_ppm()
    np.testing.assert_allclose(error[1:], fit.noise_std_ppm[1:])  # linear: the noise
    factor = np.sqrt(fit.misfit[0] / fit.misfit_dof)
    np.testing.assert_allclose(error[0], fit.noise_std_ppm[0] * factor, rtol=1e-5)
    assert factor.min() > 10
    one = fit_field(phase[:1], te[:1], np.ones_like(phase[:1]), b0_tesla=9.4,
                    noise_sigma=0.01)
    assert one.error_std_ppm() is one.noise_std_ppm  # no degree of freedom left


def test_field_fit_misfit_is_chi_square_where_the_phase_is_linear():
    from napari_mrmicro.core.qsm import fit_field

    rng = np.random.default_rng(3)
    te = np.array([2.0, 4.0, 6.0, 8.0])
    sigma, shape = 0.02, (16, 16, 16)
    field_hz = rng.uniform(-50, 50, shape)
    phase = 2 * np.pi * field_hz * te[:, None, None, None] * 1e-3 + 0.3
    signal = np.exp(1j * phase) + sigma * (rng.standard_normal((4,) + shape)
                                           + 1j * rng.standard_normal((4,) + shape))
    unwrapped = phase + np.angle(signal * np.exp(-1j * phase))  # noise only, no wraps
    fit = fit_field(unwrapped, te, np.abs(signal), noise_sigma=sigma)
    assert fit.misfit_dof == 2
    assert fit.misfit.mean() == pytest.approx(2.0, rel=0.1)  # E[χ²(2)] = 2
    bent = unwrapped.copy()
    bent[3] += 1.0  # the last echo off the line by 1 rad
    assert fit_field(bent, te, np.abs(signal), noise_sigma=sigma).misfit.min() > 100
