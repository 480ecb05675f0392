"""xspec_sbi: simulation-based inference for X-ray spectral fitting."""
__version__ = "0.1.0"
