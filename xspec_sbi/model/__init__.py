"""XSPEC's model library, its model.dat catalogue, expressions and their evaluation."""
