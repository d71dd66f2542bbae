"""The built-in WFPC2 simulator: a dithered M2 data set in archive format,
its reference files and the ground truth every accuracy check needs."""
