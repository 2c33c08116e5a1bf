"""Command-line tools outside the zoo entry points (run as python -m tools.NAME from the repository root)."""
