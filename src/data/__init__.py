"""Data: MNIST digits (IDX files or the embedded sample) and the CPC sequence datasets."""
