"""Files to spectra and responses: OGIP readers, responses, grouping, channel selection."""
