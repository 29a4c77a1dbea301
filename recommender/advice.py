"""The advice: techniques in plain words, ranked, each with the measured numbers behind it.

Every statement is derived from what was measured in this run (the written models, the
search's per-layer proxies, the compatibility tables, the cost pass); where a technique
needs training the run did not do, the advice says what to run to measure it rather than
promising a figure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from recommender.measure import Measured

_FULL = "full"


@dataclass(frozen=True)
class Advice:
    technique: str
    verdict: str  # use | consider | skip | fix
    text: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"technique": self.technique, "verdict": self.verdict, "text": self.text, "numbers": self.numbers}


@lru_cache(maxsize=1)
def delegates() -> dict[str, Any]:
    return json.loads((resources.files("recommender") / "tables" / "delegates.json").read_text(encoding="utf-8"))


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.2f} MiB"


def holds(m: Measured, floor: float) -> bool:
    return m.metric >= floor


def advise(rows: Sequence[Measured], chosen: Measured, *, met: bool, holdout_floor: float, metric: str,
           layer_sqnr: dict[int, dict[str, float]], layer_names: dict[int, str], source_fixes: dict[str, list[str]],
           macs: int, params: int, conv_params: int, fine_tuned: dict[str, Measured] | None = None) -> list[Advice]:
    """The ranked advice (most consequential first). ``fine_tuned``: the rows of the
    fine-tuned variants that ran (name -> measured), beside the post-training one."""
    by = {m.name: m for m in rows}
    fine_tuned = fine_tuned or {}
    ptq = by.get("post-training", chosen)
    qat = next((m for n, m in fine_tuned.items() if n.endswith("(QAT)")), None)
    pruned = next((m for n, m in fine_tuned.items() if n.startswith("pruned")), None)
    clustered = next((m for n, m in fine_tuned.items() if n.startswith("clustered")), None)
    qat_ran, pruning_ran = qat is not None, pruned is not None
    float_row = by["float32"]
    out: list[Advice] = []
    variants = {"recommended", "best effort", "post-training", *fine_tuned}
    uniform = [m for m in rows if m.name not in ("float32", "as given", *variants) and holds(m, holdout_floor)]
    best_uniform = min(uniform, key=lambda m: m.bytes) if uniform else None

    # 1. Post-training quantization: which recipe
    if met:
        numbers = {"bytes": chosen.bytes, "of_float": round(chosen.bytes / float_row.bytes, 4), metric: chosen.metric,
                   "floor": holdout_floor}
        use = (f"Use the model written here ({chosen.description}): {_kb(chosen.bytes)} "
               f"({chosen.bytes / float_row.bytes:.1%} of float), held-out {metric} {chosen.metric:.4g} against a "
               f"floor of {holdout_floor:.4g}")
        if best_uniform is None:
            text = use + "; no uniform recipe holds the floor."
        else:
            gain = 1 - chosen.bytes / best_uniform.bytes
            numbers.update({"best_uniform": best_uniform.name, "best_uniform_bytes": best_uniform.bytes,
                            "smaller_than_best_uniform": round(gain, 4)})
            text = (f"Use the uniform {best_uniform.name} recipe ({_kb(best_uniform.bytes)}, {metric} "
                    f"{best_uniform.metric:.4g}): the per-layer recommendation is only {gain:.1%} smaller, and a "
                    "uniform recipe is simpler to reproduce." if gain < 0.02 else
                    f"{use}; {gain:.1%} smaller than {best_uniform.name}, the smallest uniform recipe that holds "
                    f"({_kb(best_uniform.bytes)}).")
        out.append(Advice("recommended model", "use", text, numbers))
    else:
        out.append(Advice("recommended model", "fix",
                          f"No written configuration holds the floor ({holdout_floor:.4g}) on held-out data; "
                          f"the best effort reaches {chosen.metric:.4g} at {_kb(chosen.bytes)}. Lower the floor, "
                          "add data, or train for quantization (below).",
                          {"best_effort_bytes": chosen.bytes, metric: chosen.metric, "floor": holdout_floor}))

    # 1b. Latency of the recommendation against float, as measured
    if chosen.latency_us and float_row.latency_us and chosen.latency_us > 1.2 * float_row.latency_us:
        slow = [k for k, w in chosen.writers.items() if "weightonly_wi4" in w]
        fastest = min((m for m in rows if m.latency_us and holds(m, holdout_floor)), key=lambda m: m.latency_us,
                      default=None)
        out.append(Advice("latency", "consider",
                          f"The recommendation runs slower than float here ({chosen.latency_us:,.1f} us against "
                          f"{float_row.latency_us:,.1f} us, XNNPACK, 1 thread)"
                          + (f": {len(slow)} layer(s) keep int4 weight-only weights, unpacked at every invoke "
                             "outside XNNPACK" if slow else "")
                          + (f". If latency matters more than bytes, {fastest.name} is the fastest model that holds "
                             f"the floor ({fastest.latency_us:,.1f} us, {_kb(fastest.bytes)}), or search with "
                             "--weights float16,int8 or --max-latency." if fastest else "."),
                          {"latency_us": chosen.latency_us, "float_latency_us": float_row.latency_us,
                           "fastest_holding": fastest.name if fastest else None}))

    # 1c. Fine-tuning against post-training, as measured
    for m in (pruned, clustered, qat):
        if m is None:
            continue
        verdict = "use" if holds(m, holdout_floor) and m.bytes < ptq.bytes else ("consider" if holds(m, holdout_floor)
                                                                               else "skip")
        technique = ("quantization-aware training" if m is qat else "pruning" if m is pruned else "weight clustering")
        out.append(Advice(technique, verdict,
                          f"Measured with fine-tuning ({m.description}): {_kb(m.bytes)}, held-out {metric} "
                          f"{m.metric:.4g} ({'holds' if holds(m, holdout_floor) else 'misses'} the floor "
                          f"{holdout_floor:.4g}), against post-training {_kb(ptq.bytes)} at {ptq.metric:.4g}.",
                          {"bytes": m.bytes, metric: m.metric, "post_training_bytes": ptq.bytes,
                           "post_training_metric": ptq.metric}))

    # 2. Quantization-aware training
    full = by.get("full_int8")
    if full is not None and not qat_ran:
        gap = holdout_floor - full.metric
        if gap > 0:
            out.append(Advice("quantization-aware training", "consider",
                              f"Full int8 misses the floor by {gap:.4g} ({full.metric:.4g} < {holdout_floor:.4g}); "
                              "quantization-aware training (tfmot quantize_model) is what closes such a gap: run "
                              "recommend with the Keras model, --train-data and --qat-epochs N to measure it.",
                              {"full_int8": full.metric, "floor": holdout_floor, "gap": round(gap, 6)}))
        else:
            out.append(Advice("quantization-aware training", "skip",
                              f"Not needed for int8: full int8 already holds ({full.metric:.4g} >= "
                              f"{holdout_floor:.4g}).", {"full_int8": full.metric, "floor": holdout_floor}))

    # 3. Pruning
    tolerant = {}
    for layer, parts in layer_sqnr.items():
        levels = [float(k.split()[1].rstrip("%")) / 100 for k, v in parts.items() if k.startswith("sparsity") and v >= 20]
        if levels:
            tolerant[layer] = max(levels)
    sparse_layers = sorted(k for k, w in chosen.writers.items() if w.startswith("pruned"))
    if pruning_ran:
        pass  # measured above
    elif sparse_layers:
        out.append(Advice("pruning", "use",
                          f"{len(sparse_layers)} layer(s) are pruned without fine-tuning in the recommendation "
                          f"(stored sparse, read back by DENSIFY): {', '.join(layer_names.get(i, str(i)) for i in sparse_layers[:5])}. "
                          "Pruning with fine-tuning (tfmot prune_low_magnitude, then strip_pruning; --train-data) "
                          "usually lets more layers go sparse.", {"pruned_layers": sparse_layers}))
    elif tolerant and not pruning_ran:
        out.append(Advice("pruning", "consider",
                          f"{len(tolerant)} layer(s) keep the output above 20 dB SQNR at 50 % sparsity or more "
                          "without fine-tuning, but pruning did not make the file smaller than quantization did "
                          "(TFLite stores pruned weights smaller only at high sparsity); with fine-tuning "
                          "(--train-data) higher sparsity may pay off, and zeros always shrink a compressed download.",
                          {"tolerant_layers": {str(k): v for k, v in sorted(tolerant.items())}}))
    else:
        out.append(Advice("pruning", "skip", "No layer keeps 20 dB output SQNR at 50 % sparsity without fine-tuning.",
                          {}))

    # 4. Clustering
    low_bits = [k for k, w in chosen.writers.items() if "wi4" in w or "wi2" in w]
    if clustered is None:
        out.append(Advice("weight clustering", "skip" if low_bits else "consider",
                          ("Clustering to 16 or 4 centroids gives the same stored bits as the int4 / int2 weights "
                           "already chosen here; in a .tflite clustered weights stay dense float or int8, so on its own "
                           "it only shrinks a compressed download (with --train-data it is measured, then searched).")
                          if low_bits else
                          ("Clustering (tfmot cluster_weights) keeps weights float in the .tflite and shrinks only a "
                           "compressed download; int8 / int4 quantization shrinks the file itself (with --train-data "
                           "it is measured, then searched)."),
                          {"low_bit_layers": sorted(low_bits)}))

    # 5. Delegate
    table = delegates()["targets"]
    covered = {}
    for target in table:
        full_rows = [m for m in rows if m.runs_on.get(target) == _FULL and holds(m, holdout_floor)]
        if full_rows:
            covered[target] = min(full_rows, key=lambda m: m.bytes).name
    chosen_full = [t for t in table if chosen.runs_on.get(t) == _FULL]
    text = (f"The recommended model runs fully on: {', '.join(table[t]['name'] for t in chosen_full) or 'none of the targets'}."
            + "".join(f" For {table[t]['name']}, use {covered[t]} (runs fully, holds the floor)."
                      for t in ("gpu", "nnapi", "edgetpu", "micro") if t in covered and t not in chosen_full))
    missing = [table[t]["name"] for t in ("gpu", "nnapi", "edgetpu", "micro") if t not in covered]
    if missing:
        text += f" No written model that holds the floor runs fully on {', '.join(missing)}."
    out.append(Advice("delegate", "use" if chosen_full else "fix", text,
                      {"recommended_runs_fully_on": chosen_full, "best_per_target": covered}))

    # 6. Unsupported ops in the source model
    for target, fixes in source_fixes.items():
        if fixes:
            out.append(Advice("unsupported ops", "fix", f"{table.get(target, {}).get('name', target)}: " + " ".join(fixes),
                              {"target": target}))

    # 7. Input resolution and width
    if macs:
        out.append(Advice("input resolution / width", "consider",
                          f"The model costs {macs / 1e6:,.2f} M MACs and {params:,} parameters. Convolution work scales "
                          f"with input area: 0.75x resolution needs about {0.5625 * macs / 1e6:,.2f} M MACs, 0.5x about "
                          f"{0.25 * macs / 1e6:,.2f} M (weights unchanged). A 0.5 width multiplier cuts convolution "
                          f"parameters ({conv_params:,}) to about a quarter. Both need retraining to know the accuracy.",
                          {"macs": macs, "params": params, "conv_params": conv_params}))
    return out
