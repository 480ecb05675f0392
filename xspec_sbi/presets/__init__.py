"""The paper's set-ups (NICER-like response, Table 1 priors), apart from library code."""
