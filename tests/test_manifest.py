"""The npe2 manifest: valid, shipped inside the wheel, identical to the root napari.yaml."""

import importlib.resources
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from npe2 import PluginManifest

ROOT = Path(__file__).resolve().parents[1]
ROOT_MANIFEST = ROOT / "napari.yaml"


def test_installed_manifest_equals_root_file():
    shipped = importlib.resources.files("napari_mrmicro").joinpath("napari.yaml")
    assert shipped.read_bytes() == ROOT_MANIFEST.read_bytes()


def test_manifest_validates_and_commands_import():
    manifest = PluginManifest.from_distribution("napari-mrmicro")
    assert manifest.name == "napari-mrmicro"
    manifest.validate_imports()
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-mrmicro"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    (path,) = out.glob("napari_mrmicro-*.whl")
    return path


def test_wheel_ships_the_root_manifest(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("napari_mrmicro/napari.yaml") == ROOT_MANIFEST.read_bytes()
        entry_points = zf.read(next(n for n in zf.namelist()
                                    if n.endswith(".dist-info/entry_points.txt"))).decode()
        zf.extractall(tmp_path)
    assert "napari-mrmicro = napari_mrmicro:napari.yaml" in entry_points
    # The manifest as shipped, with its commands imported from the wheel's own package.
    code = ("import napari_mrmicro, npe2, sys; from pathlib import Path; "
            f"assert Path(napari_mrmicro.__file__).parent == Path({str(tmp_path)!r}) / "
            "'napari_mrmicro', napari_mrmicro.__file__; "
            "m = npe2.PluginManifest.from_file(Path(napari_mrmicro.__file__).parent / "
            "'napari.yaml'); m.validate_imports(); print(m.name)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "napari-mrmicro"
