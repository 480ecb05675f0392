"""Counts to posterior: priors, restriction, flows, NPE training, sampling, persistence."""
