"""Figures, the report page and folder, and the ArviZ interchange of a result."""
