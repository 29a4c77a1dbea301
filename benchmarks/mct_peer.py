"""Model Compression Toolkit's mixed precision on a digits MLP (run in its own venv: MCT 2.6
needs PyTorch here, its Keras path wants TensorFlow <= 2.15; `make mct-venv`).

``python mct_peer.py WEIGHTS.npz DATA.npz HOLDOUT BUDGET_BYTES...`` rebuilds the Keras MLP in
PyTorch from its weights (same numbers), runs MCT's post-training quantization with mixed
precision (its default TPC: weights 8/4/2 bits per channel, int8 activations) under each
weights-memory budget, and prints one JSON line per budget: the bits MCT chose per layer and
the held-out accuracy of MCT's own quantized model. The split is the search's (same seed).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(weights: str, data: str, holdout: float, budgets: list[float]) -> None:
    import model_compression_toolkit as mct
    import torch

    w = np.load(weights)
    arrays = [w[f"arr_{i}"] for i in range(len(w.files))]
    layers = []
    for k in range(0, len(arrays), 2):
        lin = torch.nn.Linear(*arrays[k].shape)
        lin.weight.data = torch.tensor(arrays[k].T.copy())
        lin.bias.data = torch.tensor(arrays[k + 1])
        layers += [lin, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1], torch.nn.Softmax(-1)).eval()

    d = np.load(data)
    x, y = d["x"].astype("float32"), d["y"]
    order = np.random.default_rng(0).permutation(len(x))  # the search's split (search/engine.py split)
    n_hold = int(round(len(x) * holdout))
    hold, search = order[:n_hold], order[n_hold:]

    def gen():
        for i in range(0, len(search), 64):
            yield [torch.tensor(x[search[i:i + 64]])]

    def accuracy(m, idx):
        with torch.no_grad():
            return float((m(torch.tensor(x[idx])).argmax(1).numpy() == y[idx]).mean())

    print(json.dumps({"float_holdout": accuracy(model, hold), "float_search": accuracy(model, search)}), flush=True)
    for budget in budgets:
        core = mct.core.CoreConfig(mixed_precision_config=mct.core.MixedPrecisionQuantizationConfig(num_of_images=64))
        q, _ = mct.ptq.pytorch_post_training_quantization(
            model, gen, target_resource_utilization=mct.core.ResourceUtilization(weights_memory=budget),
            core_config=core)
        bits = [int(next(iter(m.weights_quantizers.values())).num_bits)
                for m in q.modules() if hasattr(m, "weights_quantizers") and m.weights_quantizers]
        print(json.dumps({"budget": budget, "bits": bits, "holdout": accuracy(q, hold),
                          "search": accuracy(q, search)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), [float(b) for b in sys.argv[4:]])
