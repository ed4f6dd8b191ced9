"""`mrmicro convert` streams a volume above its load threshold instead of reading it whole."""

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_mrmicro import cli
from napari_mrmicro.io import Volume, omezarr, write_volume


@pytest.mark.parametrize("threshold, streamed", [(1000, True), (2**30, False)])
def test_convert_streams_above_the_load_threshold(tmp_path, monkeypatch, threshold, streamed):
    labels = np.zeros((24, 20, 18), np.uint16)
    labels[3:20, 4:15, 5:12] = 9
    (tmp_path / "s").mkdir()
    write_volume(tmp_path / "s" / "s.headfile", Volume(labels, (20.0,) * 3,
                                                       layer_type="labels"))
    monkeypatch.setattr(cli, "CONVERT_LOAD_BYTES", threshold)
    seen = []
    write = omezarr.write

    def spy(path, volume, **options):
        seen.append(type(volume.data))
        return write(path, volume, **options)

    monkeypatch.setattr(omezarr, "write", spy)
    out = tmp_path / "v.zarr"
    assert cli.main(["convert", str(tmp_path / "s" / "s.headfile"), str(out), "--labels",
                     "--chunks", "8", "--levels", "2"]) == 0
    assert (seen[0] is da.Array) == streamed and (seen[0] is np.ndarray) != streamed
    group = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(group["0"][...], labels)
    np.testing.assert_array_equal(group["1"][...], labels[::2, ::2, ::2])
