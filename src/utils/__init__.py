"""Utilities: errors, atomic file writes, run folders and logs, timing, plots."""
