"""Chunked steps equal their whole-volume counterparts (scipy, scikit-image, region_table)."""

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from napari_mrmicro.core.chunked import (connected_components_chunked,
                                         gaussian_filter_chunked, otsu_threshold_chunked,
                                         region_volumes_chunked, threshold_chunked)
from napari_mrmicro.core.morphometry import region_table


def _blobs(shape=(40, 36, 44), seed=0, level=0.6):
    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.normal(size=shape), 1.5)
    return smooth > level * smooth.std()


def _same_partition(ours: np.ndarray, ref: np.ndarray) -> bool:
    """Both label volumes split the foreground into the same parts (up to numbering)."""
    if not np.array_equal(ours > 0, ref > 0):
        return False
    pairs = np.unique(np.stack([ours[ref > 0], ref[ref > 0]]), axis=1)
    return pairs.shape[1] == len(np.unique(ours[ours > 0])) == len(np.unique(ref[ref > 0]))


def test_gaussian_equals_scipy_on_the_whole_volume_with_anisotropic_voxels():
    rng = np.random.default_rng(2)
    volume = rng.normal(size=(30, 26, 34)).astype(np.float32)
    spacing = (20.0, 10.0, 10.0)
    sigma_um = 25.0
    lazy = gaussian_filter_chunked(da.from_array(volume, chunks=(7, 9, 11)), sigma_um, spacing)
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float32
    expected = ndi.gaussian_filter(volume, (1.25, 2.5, 2.5), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_otsu_equals_skimage(dtype):
    rng = np.random.default_rng(3)
    volume = np.concatenate([rng.normal(300, 40, 5000), rng.normal(1500, 200, 3000)])
    volume = np.clip(volume, 0, None).astype(dtype).reshape(20, 20, 20)
    chunked = otsu_threshold_chunked(da.from_array(volume, chunks=7))
    assert chunked == pytest.approx(float(threshold_otsu(volume)), rel=1e-6)
    mask = threshold_chunked(volume, threshold=None).compute()
    np.testing.assert_array_equal(mask, volume > chunked)


def test_otsu_refuses_constant_and_nan_only_volumes():
    with pytest.raises(ValueError, match="constant"):
        otsu_threshold_chunked(np.full((4, 4, 4), 3.0))
    with pytest.raises(ValueError, match="no finite values"):
        otsu_threshold_chunked(np.full((4, 4, 4), np.nan))


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_components_match_scipy_across_many_chunk_faces(connectivity):
    mask = _blobs()
    structure = ndi.generate_binary_structure(3, connectivity)
    ref, n_ref = ndi.label(mask, structure=structure)
    labels, count = connected_components_chunked(da.from_array(mask, chunks=(7, 8, 9)),
                                                 connectivity)
    ours = labels.compute()
    assert count == n_ref and ours.max() == count and ours.dtype == np.int32
    assert _same_partition(ours, ref)


def test_a_diagonal_chain_is_joined_only_with_corner_connectivity():
    mask = np.zeros((8, 8, 8), bool)
    for i in range(8):
        mask[i, i, i] = True  # touches the next voxel by a corner, across every chunk
    assert connected_components_chunked(da.from_array(mask, chunks=3), 3)[1] == 1
    assert connected_components_chunked(da.from_array(mask, chunks=3), 2)[1] == 8
    with pytest.raises(ValueError, match="connectivity"):
        connected_components_chunked(mask, 4)


def test_region_volumes_equal_region_table():
    ref, _ = ndi.label(_blobs(seed=5))
    ref = ref.astype(np.uint16)
    spacing = (20.0, 15.0, 10.0)
    table = region_volumes_chunked(da.from_array(ref, chunks=(11, 10, 13)), spacing)
    full = region_table(ref, spacing)
    for column in ("label", "voxel_count", "volume_um3", "volume_mm3",
                   "centroid_z_um", "centroid_y_um", "centroid_x_um"):
        np.testing.assert_allclose(table[column], full[column], rtol=1e-9, err_msg=column)


def test_region_volumes_of_a_box_and_bad_input():
    labels = np.zeros((10, 10, 10), np.int64)
    labels[2:6, 1:4, 5:10] = 9
    table = region_volumes_chunked(labels, (10.0,) * 3)
    assert table["label"].tolist() == [9] and table["voxel_count"].tolist() == [60]
    assert table["volume_um3"][0] == pytest.approx(60_000.0)
    assert (table["centroid_z_um"][0], table["centroid_x_um"][0]) == pytest.approx((35.0, 70.0))
    with pytest.raises(ValueError, match="integer"):
        region_volumes_chunked(labels.astype(float), (10.0,) * 3)
    with pytest.raises(ValueError, match="3-D"):
        region_volumes_chunked(labels[0], (10.0,) * 3)
    with pytest.raises(ValueError, match="spacing_um"):
        region_volumes_chunked(labels, (1.0, -1.0, 1.0))
