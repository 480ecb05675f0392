"""Model to counts: transfer matrix and folding, fit statistics, the objective, fakeit."""
