"""Dock "MR Reconstruction": k-space layer -> magnitude and phase in physical units."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_error, show_info

from napari_mrmicro._layers import layer_geometry, volume_to_layer_data
from napari_mrmicro.core import KSpace, backend, cs_reconstruct, reconstruct, snr_estimate
from napari_mrmicro.core.geometry import regridded_affine, voxel_sizes
from napari_mrmicro.core.sampling import acquired_or_retrospective_mask
from napari_mrmicro.io import Volume, kspace_codec
from napari_mrmicro.pipeline import unwarp_epi
from napari_mrmicro.widgets._dock import (
    JobDock, device_picker, device_suffix, layer_picker, on_device, restore_defaults_button)
from napari_mrmicro.widgets._results import add_layers
from napari_mrmicro.widgets._worker import progress_worker

AXES = {"z": -3, "y": -2, "x": -1}


class ReconstructionWidget(Container, JobDock):
    """Reconstruct a k-space layer: window, zero-fill, partial Fourier, compressed sensing.

    Runs in a worker thread with progress; compressed sensing can be cancelled. Adds
    magnitude and phase layers (echo axis first) with the voxel size after zero-filling
    and reports the SNR estimate (signal region vs background, Rayleigh-corrected).
    """

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.layer = ComboBox(label="k-space layer", choices=self._kspace_layers,
                              tooltip="k-space layer to reconstruct, from MR Simulation or a "
                                      "raw file: ParaVision 360 rawdata.job0 (or fid of "
                                      "PV 5-7; a scan folder opens its pdata image), Varian "
                                      "fid, ISMRMRD, Tecmag .tnt.")
        self.field_map = layer_picker(
            self.viewer, "EPI field map", ("field map",), nullable=True,
            tooltip="A B0 field map (Hz, or ppm) of the same specimen, e.g. ParaVision's B0 "
                    "map scan: an EPI reconstruction is unwarped along its phase encode "
                    "with it (Jezzard & Balaban, Magn Reson Med 1995;34:65). The EPI must "
                    "state its echo spacing and encoding direction (ParaVision raw does). "
                    "Empty: no unwarping.")
        self.window = ComboBox(label="window", choices=["none", "hann", "hamming", "tukey",
                                                        "fermi"],
                               tooltip="k-space apodization: tapers the edges of k-space to "
                                       "reduce Gibbs ringing at the cost of resolution "
                                       "(Harris, Proc IEEE 1978;66:51); none keeps the "
                                       "full resolution.")
        self.alpha = FloatSpinBox(label="Tukey α", min=0.0, max=1.0, step=0.05, value=0.5,
                                  tooltip="Tapered fraction of the Tukey window (0–1): 0 is no "
                                          "window, 1 a Hann window.")
        self.zero_fill = ComboBox(label="zero-fill", choices=[1.0, 1.5, 2.0, 4.0],
                                  tooltip="Zero-filling factor (1–4): sinc interpolation onto a "
                                          "finer grid; smaller voxels, no new resolution "
                                          "(Bernstein et al., J Magn Reson Imaging 2001;14:270).")
        self.pf_method = ComboBox(label="partial Fourier", choices=["auto", "homodyne",
                                                                    "pocs"],
                                  tooltip="Partial-Fourier reconstruction of an asymmetric "
                                          "echo: auto (from the sampling mask), homodyne (Noll "
                                          "et al., IEEE TMI 1991;10:154) or POCS (Haacke et "
                                          "al., J Magn Reson 1991;92:126).")
        self.pf_axis = ComboBox(label="partial Fourier axis", choices=["detected", *AXES],
                                value="detected",
                                tooltip="Axis (z, y, x) along which k-space is partly acquired; "
                                        "detected: the one the layer's sampling mask (else its "
                                        "zero samples) shows, e.g. x for a ParaVision partial "
                                        "echo.")
        self.pf_fraction = FloatSpinBox(label="acquired fraction", min=0.5, max=1.0,
                                        step=0.0625, value=1.0,
                                        tooltip="Acquired fraction of k-space along that axis "
                                                "(0.5–1; 1 = full).")
        self.cs_method = ComboBox(label="compressed sensing", choices=["off", "l1_wavelet",
                                                                       "tv"],
                                  tooltip="Compressed sensing for undersampled k-space: "
                                          "l1-wavelet (FISTA; Lustig et al., Magn Reson Med "
                                          "2007;58:1182) or total variation (ADMM); off: "
                                          "plain inverse FFT.")
        self.acceleration = FloatSpinBox(label="retrospective R (if fully sampled)",
                                         min=1.0, max=16.0, step=0.5, value=1.0,
                                         tooltip="Undersampling factor R (1–16) applied to "
                                                 "fully sampled k-space with a Poisson-disc "
                                                 "mask, to try compressed sensing.")
        self.lam = FloatSpinBox(label="λ (rel. to max)", min=0.0, max=1.0, step=0.001,
                                value=0.005,
                                tooltip="Regularization weight λ relative to the largest "
                                        "k-space magnitude (0–1): larger is smoother.")
        self.iterations = SpinBox(label="iterations", min=1, max=1000, value=50,
                                  tooltip="Most solver iterations (1–1000); it stops earlier "
                                          "when the image no longer changes.")
        self.device = device_picker(
            "the inverse FFT (non-Cartesian data: cuFINUFFT), window, zero-filling and "
            "compressed sensing run (partial Fourier and coil combination stay on the CPU)")
        super().__init__(widgets=[
            self.layer, self.field_map, self.window, self.alpha, self.zero_fill, self.pf_method,
            self.pf_axis, self.pf_fraction, self.cs_method, self.acceleration, self.lam,
            self.iterations, self.device,
            *self.job_controls("Reconstruct", status_label="SNR")])  # status: the SNR
        self.insert(len(self) - 2, restore_defaults_button(self))
        self.native.layout().addStretch()  # a tall dock keeps its rows together at the top
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.layer.reset_choices)

    def _kspace_layers(self, _widget=None):
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)
                and kspace_codec.is_kspace(layer.metadata.get("mrmicro"))]

    def options(self) -> dict:
        """The reconstruction the widgets describe, as core keyword arguments."""
        window = None
        if self.window.value == "tukey":
            window = {"name": "tukey", "alpha": self.alpha.value}
        elif self.window.value != "none":
            window = self.window.value
        partial = None  # "auto": detected from the layer's sampling mask
        if self.pf_method.value != "auto":
            partial = {"method": self.pf_method.value}
            if self.pf_axis.value in AXES:
                partial["axis"] = AXES[self.pf_axis.value]
            if self.pf_fraction.value < 1:
                partial["fraction"] = self.pf_fraction.value
        return {"window": window, "zero_fill": float(self.zero_fill.value),
                "partial_fourier": partial,
                "cs": None if self.cs_method.value == "off" else {
                    "method": self.cs_method.value, "lam": self.lam.value,
                    "iterations": self.iterations.value,
                    "acceleration": self.acceleration.value}}

    def run(self, *_):
        """Reconstruct in a worker thread; results arrive as layers."""
        layer = self.layer.value
        if layer is None:
            show_error("MR Reconstruction: choose a k-space layer (simulate, or open raw data: "
                       "ParaVision <scan>/rawdata.job0 or fid, Varian .fid, ISMRMRD, .tnt)")
            return None
        try:
            kspace = kspace_codec.layer_to_kspace(layer.metadata.get("mrmicro") or {},
                                                  layer.name)
        except ValueError as error:
            show_error(f"MR Reconstruction: {error}")
            return None
        options = self.options()
        try:
            device = backend.check_device(self.device.value)
        except RuntimeError as error:
            show_error(f"MR Reconstruction: {error}")
            return None
        field, placement = self.field_map.value, layer_geometry(layer).affine_um
        if field is not None:
            geo = layer_geometry(field)
            field = Volume(np.asarray(field.data), geo.spacing_um,
                           dict(field.metadata.get("mrmicro") or {}), affine_um=geo.affine_um)
        worker = progress_worker(on_device(device, lambda report: _reconstruct(
            kspace, options, report, field, placement)), "MR reconstruction")
        return self.start_job(worker, "MR Reconstruction",
                              lambda result: self._add_results(result, layer))

    def _add_results(self, result, source):
        image, snr, meta = result
        name = (f"{source.name.removesuffix(' k-space')} {recon_label(meta['recon'])}"
                f"{' unwarped' if 'unwarped' in meta else ''}{device_suffix(meta['device'])}")
        # placed like the k-space layer; zero-filling regrids around the FOV centre
        grid = tuple(meta["acquisition"]["matrix"])
        affine = regridded_affine(layer_geometry(source).affine_um, grid, image.shape[-3:])
        spacing = tuple(float(v) for v in voxel_sizes(affine))
        add_layers(self.viewer, volume_to_layer_data(
            Volume(image, spacing, meta, name=name, affine_um=affine)))
        text = "n/a (no background)" if snr is None else f"{snr['snr']:.1f}"
        self.status.value = text
        show_info(f"MR Reconstruction: {name}, SNR {text}")


def recon_label(options: dict) -> str:
    """A result's name suffix saying how it was reconstructed, e.g. ``"POCS zf2 hann"``."""
    cs = options.get("cs")
    if cs:
        parts = [f"CS {cs['method']} λ{cs['lam']:g} {cs['iterations']} it"]
        if cs.get("acceleration", 1) > 1:
            parts.append(f"R{cs['acceleration']:g}")
        return " ".join(parts)
    partial = options.get("partial_fourier")
    parts = [partial["method"] if partial else "recon"]
    if options.get("zero_fill", 1) != 1:
        parts.append(f"zf{options['zero_fill']:g}")
    window = options.get("window")
    if window:
        parts.append(window["name"] if isinstance(window, dict) else str(window))
    return " ".join(parts)


def _reconstruct(kspace: KSpace, options: dict, report, field=None, placement=None):
    """The dock's job: reconstruction (or compressed sensing), unwarped with the ``field``
    map Volume when one is given (the k-space layer placed by ``placement``), and its SNR
    estimate."""
    options = dict(options)
    cs = options.pop("cs")
    acq = kspace.acquisition
    if cs:
        report(0.0, "sampling mask")
        mask = acquired_or_retrospective_mask(kspace, cs["acceleration"])
        image = cs_reconstruct(kspace, mask=mask, method=cs["method"], lam=cs["lam"],
                               iterations=cs["iterations"],
                               callback=lambda i, n: report(i / n, cs["method"]))
    else:
        report(0.1, "inverse FFT")
        image = reconstruct(kspace, **options)
    meta = {"acquisition": acq.to_dict(), "source": "MR Reconstruction",
            "recon": {**options, "cs": cs}, "device": backend.resolve()}
    if field is not None:
        report(0.9, "unwarping")
        affine = regridded_affine(placement, tuple(acq.matrix), image.shape[-3:])
        unwarped = unwarp_epi(Volume(image, voxel_sizes(affine), meta, affine_um=affine),
                              field)
        image, meta["unwarped"] = unwarped.data, unwarped.metadata["unwarped"]
    report(1.0, "SNR")
    try:
        meta["snr"] = snr = snr_estimate(image[0] if image.ndim == 4 else image)
    except ValueError:
        meta["snr"] = snr = None
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    return image, snr, meta
