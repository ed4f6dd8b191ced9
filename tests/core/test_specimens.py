import numpy as np
import pytest

from napari_mrmicro.core.physics import larmor_hz, magnitude_with_noise, spin_echo_signal
from napari_mrmicro.core.specimens import PROPERTIES, make_specimen


def test_tooth_has_its_tissues_and_is_deterministic():
    a = make_specimen("tooth", (96, 48, 48), 250.0, seed=1)
    b = make_specimen("tooth", (96, 48, 48), 250.0, seed=1)
    assert np.array_equal(a.labels, b.labels)
    counts = np.bincount(a.labels.ravel(), minlength=4)
    assert a.tissue_names == ("air", "enamel", "dentin", "pulp")
    assert np.all(counts > 0)
    # Pulp is enclosed by dentin but for the apical foramina at the root tips.
    pulp = a.labels == 3
    touching = np.zeros_like(pulp)
    for axis in range(3):
        for shift in (1, -1):
            touching |= pulp & (np.roll(a.labels, shift, axis) == 0)
    assert np.count_nonzero(touching) < 0.03 * np.count_nonzero(pulp)
    assert np.nonzero(touching)[0].max(initial=0) < 0.2 * a.labels.shape[0]
    # Physical size is kept when the grid changes: dentin volume agrees within 5 %.
    fine = make_specimen("tooth", (192, 96, 96), 125.0, seed=1)
    vol = lambda s, sp: np.count_nonzero(s.labels == 2) * sp**3  # noqa: E731
    assert vol(fine, 125.0) == pytest.approx(vol(a, 250.0), rel=0.05)


def test_property_maps_follow_the_table():
    s = make_specimen("tooth", (32, 16, 16), 700.0)
    for prop in PROPERTIES:
        m = s.property_map(prop)
        assert m.dtype == np.float32 and m.shape == s.labels.shape
    t2 = s.property_map("t2_ms")
    assert np.all(t2[s.labels == 3] == s.tissues[3].t2_ms)
    with pytest.raises(ValueError, match="property"):
        s.property_map("t3_ms")
    with pytest.raises(ValueError, match="unknown specimen"):
        make_specimen("brain", (8, 8, 8), 10.0)


def test_spin_echo_signal_and_larmor():
    assert larmor_hz(2.35) == pytest.approx(100.057e6, rel=1e-4)
    s = spin_echo_signal(1.0, 1000.0, 50.0, te_ms=50.0, tr_ms=1000.0)
    assert s == pytest.approx((1 - np.exp(-1)) * np.exp(-1))


def test_rician_noise_level():
    rng = np.random.default_rng(0)
    background = magnitude_with_noise(np.zeros(200_000), 2.0, rng)
    # Rayleigh mean σ·√(π/2)
    assert background.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.01)
