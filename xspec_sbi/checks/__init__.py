"""Is the posterior right: exact-likelihood correction, out-of-distribution, PPC, calibration."""
