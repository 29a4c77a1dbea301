"""Search over per-layer compression configurations (issue 7)."""
