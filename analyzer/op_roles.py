"""Which inputs of an op are its parameters: one table for every pass that needs to know.

``WEIGHT_INPUTS[op]`` lists the input positions holding the layer's weights (and biases,
which may be int32/int64 in quantized models). Sources: the TFLite builtin op
definitions (tensorflow/lite/kernels/*.cc input index constants).
"""

from __future__ import annotations

WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "CONV_2D": (1, 2),
    "DEPTHWISE_CONV_2D": (1, 2),
    "FULLY_CONNECTED": (1, 2),
    "TRANSPOSE_CONV": (1, 3),
    "CONV_3D": (1, 2),
    "CONV_3D_TRANSPOSE": (1, 3),
    "BATCH_MATMUL": (1,),
    "EMBEDDING_LOOKUP": (1,),
    # lstm.cc: 1-4 input-to-gate weights, 5-8 recurrent weights, 9-11 peepholes, 12-15 gate
    # biases, 16-17 projection; the sequence variants share the layout.
    "LSTM": tuple(range(1, 18)),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": tuple(range(1, 18)),
    "BIDIRECTIONAL_SEQUENCE_LSTM": tuple(range(1, 35)),
    # basic_rnn.cc / unidirectional_sequence_rnn.cc: weights, recurrent weights, bias
    "RNN": (1, 2, 3),
    "UNIDIRECTIONAL_SEQUENCE_RNN": (1, 2, 3),
    # svdf.cc: feature weights, time weights, bias
    "SVDF": (1, 2, 3),
}

# Ops whose weights are their main work: the layer kinds quantization choices are about.
WEIGHTED_OPS = frozenset(WEIGHT_INPUTS)

# The inputs that weight quantization rounds (biases stay at high precision, as the
# converter keeps them int32), and the output-channel axis of each, for per-channel
# scales. Sources: tensorflow/lite/kernels/*.cc filter layouts ([O,H,W,I] for conv,
# [1,H,W,O] for depthwise, [O,I] for fully connected, [D,H,W,I,O] / [D,H,W,O,I] for 3-D).
QUANTIZED_WEIGHTS: dict[str, dict[int, int]] = {
    "CONV_2D": {1: 0},
    "DEPTHWISE_CONV_2D": {1: 3},
    "FULLY_CONNECTED": {1: 0},
    "TRANSPOSE_CONV": {1: 0},
    "CONV_3D": {1: 4},
    "CONV_3D_TRANSPOSE": {1: 3},
    "BATCH_MATMUL": {1: -1},
    "EMBEDDING_LOOKUP": {1: 0},
    "LSTM": {i: 0 for i in (*range(1, 9), 16)},
    "UNIDIRECTIONAL_SEQUENCE_LSTM": {i: 0 for i in (*range(1, 9), 16)},
    "RNN": {1: 0, 2: 0},
    "UNIDIRECTIONAL_SEQUENCE_RNN": {1: 0, 2: 0},
    "SVDF": {1: 0, 2: 0},
}
