"""The XSPEC-style answers: C-stat fit, Goodman-Weare chain, XSPEC chain files."""
