"""Recommender: turns analysis and search results into advice (issue 8)."""
