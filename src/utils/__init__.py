"""Utilities: errors, atomic file writes, run folders and logs, run status, timing, plots."""
