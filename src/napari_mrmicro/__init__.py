"""napari-mrmicro: magnetic resonance microscopy in napari."""

__version__ = "0.1.0"
