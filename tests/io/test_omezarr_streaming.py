"""The streaming OME-Zarr writer: every level computed from the slab in memory equals the
pyramid dask computes from the whole volume, and zarr reads the chunks it stores."""

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_mrmicro.io import Volume, omezarr


def _reference_levels(data, n_spatial, levels, labels):
    """The pyramid computed from the whole volume: every second voxel for labels, the
    2×2×2 block mean (``dask.array.coarsen``) for images."""
    shape = data.shape
    lead = len(shape) - n_spatial
    factors = omezarr._level_factors(shape, n_spatial, levels)
    out = [np.asarray(data, np.float32 if data.dtype == np.float64 else data.dtype)]
    for previous, current in zip(factors, factors[1:]):
        step = [b // a for a, b in zip(previous, current)]
        level = out[-1]
        if labels:
            level = level[(slice(None),) * lead + tuple(slice(None, None, s) for s in step)]
        else:
            mean = da.coarsen(np.mean, da.from_array(level.astype(np.float32)),
                              {lead + i: s for i, s in enumerate(step) if s > 1},
                              trim_excess=True)
            if np.issubdtype(level.dtype, np.integer):
                mean = da.round(mean)
            level = mean.astype(level.dtype).compute()
        out.append(np.asarray(level))
    return out


CASES = [  # shape, spacing axes, chunks, levels, dtype
    ((37, 30, 21), 3, 8, 3, np.uint16),
    ((33, 17, 40), 3, (5, 7, 16), 3, np.float32),
    ((2, 21, 18, 14), 3, 6, 2, np.float64),
    ((1, 45, 9), 3, 4, 3, np.int16),
    ((27, 31), 2, 10, 3, np.uint8),
]


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("shape, n_spatial, chunks, levels, dtype", CASES)
def test_streamed_levels_equal_the_whole_volume_pyramid(tmp_path, shape, n_spatial, chunks,
                                                        levels, dtype, labels, lazy):
    rng = np.random.default_rng(sum(shape))
    data = (rng.integers(0, 200, shape) if np.dtype(dtype).kind in "iu"
            else rng.normal(size=shape) * 50).astype(dtype)
    volume = Volume(da.from_array(data, chunks=(1,) * (len(shape) - 1) + (-1,)) if lazy
                    else data, (10.0,) * n_spatial, layer_type="labels" if labels else "image")
    path = tmp_path / "v.zarr"
    omezarr.write(path, volume, chunks=chunks, levels=levels)
    group = zarr.open_group(str(path), mode="r")
    expected = _reference_levels(data, n_spatial, levels, labels)
    assert len(group) == len(expected)
    for level, want in enumerate(expected):
        got = group[str(level)][...]
        assert got.dtype == want.dtype and got.shape == want.shape
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, want)


def test_uncompressed_chunks_are_read_back(tmp_path):
    data = np.arange(20 * 12 * 9, dtype=np.int32).reshape(20, 12, 9)
    omezarr.write(tmp_path / "raw.zarr", Volume(data, (1.0,) * 3), chunks=8, levels=2,
                  compression=None)
    back = omezarr.read(tmp_path / "raw.zarr", lazy=False)
    np.testing.assert_array_equal(back.data, data)
    half = zarr.open_group(str(tmp_path / "raw.zarr"), mode="r")["1"][...]
    np.testing.assert_array_equal(half, _reference_levels(data, 3, 2, False)[1])
