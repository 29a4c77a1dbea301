"""Renderers: results to text, Markdown, JSON, HTML and graph exports."""
