"""compression-advisor's analyzer: read a model into a LayerGraph and report on it.

The `.tflite` path never imports TensorFlow.
"""

from analyzer.errors import AnalyzerError, ModelFormatError, UnsupportedModelError
from analyzer.graph import Layer, LayerGraph, Quantization, Subgraph, Tensor

__version__ = "0.1.0"

__all__ = [
    "AnalyzerError",
    "Layer",
    "LayerGraph",
    "ModelFormatError",
    "Quantization",
    "Subgraph",
    "Tensor",
    "UnsupportedModelError",
    "__version__",
]
