"""CPU forms of the encoder layers: compiled kernels (ops.Custom) and replacement Cells."""
