"""Simulated compression: a float .tflite rewritten so the real LiteRT interpreter runs it
as if chosen layers were quantized or pruned (issue 5; reused by the search).

- ``choices``: what a layer can be compressed to (:class:`LayerChoice`, named precisions).
- ``fake_quant``: quantize-dequantize and magnitude pruning of weights and activations in numpy.
- ``rewrite``: the flatbuffer rewrite (weights replaced, QUANTIZE/DEQUANTIZE pairs inserted).
- ``runner``: runs a model over a dataset in the interpreter, batched where it can.
"""
