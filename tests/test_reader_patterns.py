"""napari offers our reader only for what we read: named patterns, folders after a sniff."""

import numpy as np
import pytest
from npe2 import PluginManager

from napari_mrmicro._reader import get_reader
from napari_mrmicro.io import Volume, write_volume


@pytest.fixture(scope="module")
def offered():
    manager = PluginManager()
    manager.discover(include_npe1=False)

    def ours(path) -> bool:
        return any(r.command.startswith("napari-mrmicro.")
                   for r in manager.iter_compatible_readers([str(path)]))

    return ours


@pytest.mark.parametrize("name", ["scan.headfile", "scan.nii.gz", "scan.NII", "stack.ome.tif",
                                  "stack.TIFF", "2dseq", "fid", "rawdata.job0", "raw.mrd",
                                  "scan.tnt", "image.zarr", "headfile"])
def test_named_formats_are_offered(offered, tmp_path, name):
    assert offered(tmp_path / name)


@pytest.mark.parametrize("name", ["notes.txt", "photo.png", "table.csv", "README", "data.npy"])
def test_other_files_are_not(offered, tmp_path, name):
    assert not offered(tmp_path / name)


def test_folders_only_after_a_content_check(offered, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert offered(empty)  # napari asks us about folders ...
    assert get_reader(str(empty)) is None  # ... and we decline one we cannot read
    scan = tmp_path / "N1images"
    scan.mkdir()
    write_volume(scan / "N1.headfile", Volume(np.ones((2, 3, 4), np.uint16), (10.0,) * 3, {}))
    assert get_reader(str(scan)) is not None
    plain = tmp_path / "2dseq"  # an extension-less name we know, but not its content
    plain.write_bytes(b"\0" * 64)
    assert offered(plain) and get_reader(str(plain)) is None
