import numpy as np
import pytest

from napari_mrmicro.core.qsm.mask import combined_magnitude, mask_from_labels, mask_from_magnitude

SHAPE = (30, 48, 40)
SPACING = (2.0, 1.0, 1.25)  # µm
RADIUS = 18.0  # µm


def radius_um():
    axes = [(np.arange(n) - n / 2) * s for n, s in zip(SHAPE, SPACING)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(z**2 + y**2 + x**2), (z, y, x)


def sphere_echoes(seed=0):
    """Three echoes of a sphere (signal decaying 1, 0.8, 0.64) with an air bubble inside,
    a bright speck outside, and complex noise σ = 0.1 (Rayleigh background)."""
    rng = np.random.default_rng(seed)
    r, (z, y, x) = radius_um()
    sphere = r <= RADIUS
    bubble = (z - 4) ** 2 + (y + 5) ** 2 + x**2 <= 5.0**2
    speck = (z + 24) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 2.0**2
    signal = (sphere & ~bubble) | speck
    decay = np.array([1.0, 0.8, 0.64])[:, None, None, None]
    data = decay * signal + 0.1 * (rng.normal(size=(3,) + SHAPE)
                                   + 1j * rng.normal(size=(3,) + SHAPE))
    return np.abs(data).astype(np.float32), sphere, bubble, speck


def test_combined_magnitude_is_root_sum_of_squares():
    magnitudes, *_ = sphere_echoes()
    np.testing.assert_allclose(combined_magnitude(magnitudes),
                               np.sqrt((magnitudes.astype(np.float64) ** 2).sum(0)), rtol=1e-6)
    np.testing.assert_array_equal(combined_magnitude(-magnitudes[0]), magnitudes[0])


def test_mask_from_magnitude_finds_the_filled_sphere():
    magnitudes, sphere, bubble, speck = sphere_echoes()
    mask = mask_from_magnitude(magnitudes)  # Otsu on the echo-combined magnitude
    assert mask.dtype == bool and mask.shape == SHAPE
    assert mask[bubble].all()  # the air bubble is filled
    assert not mask[speck].any()  # the speck is not the largest part
    # Otsu at SNR ~14 (combined): only a few boundary voxels of the sphere differ
    assert np.count_nonzero(mask ^ sphere) < 0.01 * np.count_nonzero(sphere)
    # without clean-up the bubble stays a hole and the speck stays in
    raw = mask_from_magnitude(magnitudes, fill_holes=False, keep_largest=False)
    assert not raw[bubble].any() and raw[speck].all()


def test_erosion_in_physical_units():
    """Eroding by e µm leaves the ball of radius R − e (anisotropic voxels)."""
    magnitudes, *_ = sphere_echoes()
    r, _ = radius_um()
    for erode_um in (3.0, 6.0):
        mask = mask_from_magnitude(magnitudes, erode_um=erode_um, spacing_um=SPACING)
        expected = r <= RADIUS - erode_um
        # voxelised boundary: disagreement within the shell one voxel (≤ 2 µm) wide
        shell = np.abs(r - (RADIUS - erode_um)) <= 2.0
        assert not (mask ^ expected)[~shell].any()
        assert np.count_nonzero(mask & ~shell) > 0.5 * np.count_nonzero(expected)


def test_threshold_and_array_border():
    magnitudes, sphere, *_ = sphere_echoes()
    low = mask_from_magnitude(magnitudes[0], threshold=0.5)
    assert np.count_nonzero(low ^ sphere) < 0.02 * np.count_nonzero(sphere)
    # a specimen touching the array border is eroded from the border too: by 1 µm, the
    # 1-µm y faces go, the 2-µm z and 1.25-µm x faces stay
    cube = np.ones(SHAPE, np.float32)
    cube[0] = 0.0
    eroded = mask_from_magnitude(cube, threshold=0.5, erode_um=1.0, spacing_um=SPACING)
    expected = cube > 0
    expected[:, [0, -1]] = False
    np.testing.assert_array_equal(eroded, expected)


def test_mask_from_labels():
    labels = np.zeros(SHAPE, np.uint16)
    labels[2:5] = 3
    labels[10:12] = 7
    np.testing.assert_array_equal(mask_from_labels(labels), labels > 0)
    np.testing.assert_array_equal(mask_from_labels(labels, include=7), labels == 7)
    np.testing.assert_array_equal(mask_from_labels(labels, include=[3, 7]), labels > 0)


@pytest.mark.parametrize("call, match", [
    (lambda m: mask_from_magnitude(m, threshold=10.0), "the mask is empty: lower the threshold"),
    (lambda m: mask_from_magnitude(m, erode_um=30.0, spacing_um=SPACING), "lower erode_um"),
    (lambda m: mask_from_magnitude(m, erode_um=2.0), "spacing_um"),
    (lambda m: mask_from_magnitude(m, erode_um=-1.0, spacing_um=SPACING), "erode_um"),
    (lambda m: mask_from_magnitude(m, threshold=np.nan), "threshold"),
    (lambda m: mask_from_magnitude(np.where(m > 1, np.nan, m)), "magnitude contains NaN"),
    (lambda m: mask_from_magnitude(m[0, 0]), "magnitude must be"),
    (lambda m: mask_from_magnitude(np.zeros(SHAPE)), "constant"),
    (lambda m: mask_from_labels(np.zeros(SHAPE, int)), "the mask is empty"),
    (lambda m: mask_from_labels(np.ones(SHAPE, int), include=5), r"include \[5\] matches none"),
    (lambda m: mask_from_labels(np.ones(SHAPE, int), include=0.5), "include must be"),
    (lambda m: mask_from_labels(np.full(SHAPE, 0.5)), "labels must hold integer"),
])
def test_bad_input_names_the_parameter(call, match):
    magnitudes, *_ = sphere_echoes()
    with pytest.raises(ValueError, match=match):
        call(magnitudes)


def test_signal_mask_leaves_out_partial_volume_edge_voxels_of_a_void():
    """Tissue filling the array around a void drawn with partial volume (4³ subvoxels):
    the edge voxels that are a third void or more leave, whole voxels stay, and the array's
    faces are not an edge."""
    from napari_mrmicro.core.qsm.mask import PARTIAL_FRACTION, signal_mask

    shape, fine = (24, 24, 24), 4
    axes = [(np.arange(n * fine) + 0.5) / fine - n / 2 for n in shape]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    void = (z**2 + y**2 + x**2 <= 6.3**2).astype(np.float32)
    void_fraction = void.reshape(shape[0], fine, shape[1], fine, shape[2], fine).mean((1, 3, 5))
    rng = np.random.default_rng(2)
    signal = 1 - void_fraction
    data = signal + 0.01 * (rng.normal(size=shape) + 1j * rng.normal(size=shape))
    magnitude = np.abs(data).astype(np.float32)
    kept, report = signal_mask(magnitude, partial_fraction=PARTIAL_FRACTION)
    everything, plain = signal_mask(magnitude, partial_fraction=0)
    dim_edge = everything & ~kept
    assert report.partial == dim_edge.sum() > 0 and plain.partial == 0
    assert (void_fraction[dim_edge] >= 0.25).all()  # partial volume, not whole tissue
    assert kept[void_fraction == 0].all()  # whole voxels, the array's faces included
    assert not kept[void_fraction > 0.5].any()
    assert "dim at the edge" in report.summary()


def test_the_noise_is_measured_where_otsu_counts_dim_tissue_as_background():
    """Half the volume noise (σ 2), a fifth dim tissue at 7.5σ, the rest bright: Otsu puts
    the dim tissue with the noise (its median reads σ 1.3× high); refined below the
    noise's 99.9 % quantile, σ is right within 2 %."""
    from scipy.special import chdtri

    from napari_mrmicro.core.qsm.mask import background_sigma
    from napari_mrmicro.core.segmentation import otsu_threshold

    truth = np.zeros((20, 50, 40))
    truth[:, 25:35] = 15.0
    truth[:, 35:] = 300.0
    rng = np.random.default_rng(1)
    image = np.abs(truth + rng.normal(0, 2, truth.shape) + 1j * rng.normal(0, 2, truth.shape))
    otsu = np.median(image[image <= otsu_threshold(image)]) / np.sqrt(chdtri(2, 0.5))
    assert otsu > 1.25 * 2
    assert background_sigma(image) == pytest.approx(2.0, rel=0.02)
    # several echoes: the combined magnitude's noise is σ√χ²(2E)
    echoes = np.abs(truth[None] + rng.normal(0, 2, (3,) + truth.shape)
                    + 1j * rng.normal(0, 2, (3,) + truth.shape))
    assert background_sigma(combined_magnitude(echoes), 3) == pytest.approx(2.0, rel=0.02)


def test_the_noise_of_a_real_rodent_head(realdata):
    """ParaVision FLASH (scan 6): σ where the image above the head holds only noise (its
    first 10 rows, away from the read direction's filtered edges) against σ measured over
    the whole image, which counts the head's dim tissue and ghosts with the background
    when taken below Otsu's threshold alone (305, 40 % high)."""
    from scipy.special import chdtri

    from napari_mrmicro.core.qsm.mask import background_sigma
    from napari_mrmicro.io import read_volume

    image = np.asarray(read_volume(realdata("bruker_pv/pv360_rodent/6")).data, np.float32)
    above_head = np.median(image[:, :10, 16:240]) / np.sqrt(chdtri(2, 0.5))
    assert 210 < above_head < 225
    assert background_sigma(image) == pytest.approx(above_head, rel=0.05)
