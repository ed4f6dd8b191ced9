"""Layer plumbing shared by the docks: k-space and images as napari LayerData."""

from __future__ import annotations

import numpy as np

from napari_mrmicro._layers import UM, volume_to_layer_data
from napari_mrmicro.core.kspace import KSpace
from napari_mrmicro.core.recon import reconstruct
from napari_mrmicro.io import Volume, kspace_codec


def add_layers(viewer, layer_data: list[tuple]) -> list:
    """Add LayerData tuples to a viewer; return the layers."""
    from napari.layers import Layer

    return [viewer.add_layer(Layer.create(data, kwargs, layer_type))
            for data, kwargs, layer_type in layer_data]


def kspace_layers(kspace: KSpace, name: str, truth: bool = True, image=None) -> list[tuple]:
    """LayerData for a k-space (log-magnitude shown, complex data in metadata), its image
    as magnitude and phase, and optionally the simulation's ground truth.

    A single echo loses its echo axis; several keep it first. The k-space layer is drawn
    over the image's field of view (napari cannot mix 1/µm and µm axes), hidden at first.
    """
    acq = kspace.acquisition
    spacing = acq.voxel_um
    if image is None:
        image = reconstruct(kspace)
    base = {"acquisition": acq.to_dict(), "source": name}
    shown, k_meta = kspace_codec.layer_data(kspace_codec.kspace_to_volume(kspace, base))
    if shown.shape[0] == 1:
        shown, image = shown[0], image[0]
    origin = tuple(kspace.truth.get("origin_um", (0.0, 0.0, 0.0)))
    lead = shown.ndim - 3
    k_meta["k_spacing_per_um"] = tuple(1.0 / f for f in acq.fov_um)
    layers = [(shown, {
        "name": f"{name} k-space", "scale": (1.0,) * lead + spacing,
        "translate": (0.0,) * lead + origin,
        "units": ("pixel",) * lead + (UM,) * 3,
        "axis_labels": ("echo",) * lead + ("z", "y", "x"), "colormap": "magma",
        "visible": False, "metadata": {"mrmicro": k_meta}}, "image")]
    layers += volume_to_layer_data(Volume(image, spacing, dict(base), origin_um=origin,
                                          name=name))
    if truth and kspace.truth:
        for key, colormap in (("proton_density", "gray"), ("chi_ppm", "PiYG"),
                              ("field_ppm", "PiYG")):
            if key in kspace.truth:
                values = kspace.truth[key]
                limit = float(np.abs(values).max()) or 1.0
                limits = (0.0, limit) if key == "proton_density" else (-limit, limit)
                layers.append((values, {
                    "name": f"{name} truth {key}", "scale": spacing, "translate": origin,
                    "units": (UM,) * 3,
                    "axis_labels": ("z", "y", "x"), "colormap": colormap,
                    "contrast_limits": limits, "visible": False,
                    "metadata": {"mrmicro": {**base, "truth": key}}}, "image"))
        if "labels" in kspace.truth:
            layers.append((kspace.truth["labels"], {
                "name": f"{name} truth labels", "scale": spacing, "translate": origin,
                "units": (UM,) * 3,
                "axis_labels": ("z", "y", "x"), "visible": False,
                "metadata": {"mrmicro": {**base, "truth": "labels"}}}, "labels"))
    return layers
