"""Analysis passes: each takes the LayerGraph (and what it needs) and returns a result."""
