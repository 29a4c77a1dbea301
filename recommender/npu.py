"""``recommend --target ethos-u55-256``: the per-layer int8 / int16x8 mix with the fewest
Ethos-U cycles that holds the floor, compiled by Vela.

Ethos-U runs integer models only, so every option keeps int8 weights and chooses the
activations per layer: int8 (fast) or int16 (the int16x8 kernels: more faithful, slower,
and not every op has them on the NPU). The cost of an option is what Vela says it costs:

1. The uniform int8 and the uniform int16x8 models are written (ai-edge-quantizer, the same
   writer as the recommendation) and compiled by Vela; each op's cycles in each (and its
   placement) become the cost of that layer's int8 and int16 options. An op Vela leaves on
   the CPU costs its predicted CPU time from the latency profile (``--latency-profile``, the
   host CPU's own profile for a real figure) at the NPU clock (``--npu-clock``, default the
   system config's). The QUANTIZE ops a mix adds between int8 and int16 layers are not in
   the costs; the written model's own compile has them.
2. The search (``search.engine`` with this objective) minimises those cycles under the
   floor, on the simulation; the chosen mix is written, measured on held-out data in the
   interpreter, and compiled by Vela; so are both uniform models.
3. The recommendation is the written model that holds the floor with the fewest Vela cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from analyzer.errors import UnsupportedModelError
from analyzer.graph import LayerGraph
from analyzer.readers.data import Dataset
from analyzer.simulation.choices import LayerChoice
from search.space import Space

ACTIVATIONS = ("int8", "int16")
DEFAULT_CLOCK_HZ = 500e6  # the U55 High_End_Embedded system config's, when Vela's summary has none


@dataclass(frozen=True)
class Compiled:
    """A written model as Vela compiles it for the target."""

    accelerator: str
    cycles: int
    npu_ops: int
    cpu_ops: int
    elided_ops: int
    inference_ms: float  # at the clock (``--npu-clock`` or the system config's)
    clock_hz: float
    sram_kib: float
    flash_kib: float
    cpu_ops_named: tuple[str, ...] = ()
    vela: str = ""
    model_ops_on_npu: int | None = None  # of the float model's own ops (the writer's QUANTIZE / DEQUANTIZE aside)
    model_ops: int | None = None
    cpu_cycles: float = 0.0  # the ops Vela leaves on the CPU: their predicted time at the clock (not in Vela's total)

    @property
    def total_cycles(self) -> float:
        """What an inference costs: Vela's cycles plus the CPU ops' predicted time at the clock."""
        return self.cycles + self.cpu_cycles

    def to_dict(self) -> dict[str, Any]:
        return {"compiler": f"ethos-u-vela {self.vela}", "accelerator": self.accelerator, "cycles": self.cycles,
                "npu_ops": self.npu_ops, "cpu_ops": self.cpu_ops, "elided_ops": self.elided_ops,
                "inference_ms": round(self.inference_ms, 6), "clock_hz": self.clock_hz, "sram_kib": self.sram_kib,
                "flash_kib": self.flash_kib, "cpu_op_types": list(self.cpu_ops_named),
                "model_ops_on_npu": self.model_ops_on_npu, "model_ops": self.model_ops,
                "cpu_cycles": round(self.cpu_cycles), "total_cycles": round(self.total_cycles)}


def compile_written(model: bytes, label: str, accelerator: str, clock_hz: float | None = None,
                    float_graph: LayerGraph | None = None, predictor=None):
    """(Compiled, VelaResult, the written graph) of a written model; raises VelaError. With
    ``float_graph`` (the model it was written from) also how many of that model's own ops
    run on the NPU; with ``predictor`` (a LatencyPredictor) the CPU ops' predicted time, in
    cycles at the clock."""
    from analyzer.npu import vela
    from analyzer.npu.int8_form import align
    from analyzer.readers.tflite import read_bytes

    graph = read_bytes(model, label)
    result = vela.compile_model(graph, accelerator)
    clock = clock_hz or result.core_clock_hz or DEFAULT_CLOCK_HZ
    cpu = [o for o in result.ops if o.placement == "cpu"]
    compiled = Compiled(accelerator, result.cycles_total, sum(o.placement == "npu" for o in result.ops), len(cpu),
                        sum(o.placement == "elided" for o in result.ops), result.cycles_total / clock * 1000, clock,
                        result.sram_kib, result.flash_kib,
                        tuple(sorted({graph.subgraphs[o.subgraph].layers[o.index].op for o in cpu})), result.version)
    if float_graph is not None:
        origin = align(float_graph, graph)
        mine = [o for o in result.ops if o.subgraph == 0 and o.index in origin]
        compiled = replace(compiled, model_ops_on_npu=sum(o.placement == "npu" for o in mine),
                           model_ops=len(float_graph.main.layers))
    if predictor is not None and cpu:
        us = cpu_op_us(graph, predictor)
        compiled = replace(compiled, cpu_cycles=sum(us.get(o.index, 0.0) for o in cpu if o.subgraph == 0) * clock / 1e6)
    return compiled, result, graph


def cpu_op_us(graph: LayerGraph, predictor) -> dict[int, float]:
    """Each main-subgraph op's predicted microseconds on the CPU the latency profile describes."""
    from analyzer.latency.predict import predict_latency

    return {r.index: r.latency_us for r in predict_latency(graph, predictor, with_variants=False).layers}


def uniform_choices(space: Space, activations: str) -> dict[int, LayerChoice]:
    """Every layer of the space at ``activations`` (int8 weights where it has weights)."""
    out = {}
    for ls in space.layers:
        fitting = [o.choice for o in ls.options if o.choice.activations == activations]
        if fitting:
            out[ls.layer] = min(fitting, key=lambda c: c.weights != "int8")
    return out


@dataclass
class CycleCosts:
    """The search's objective for an Ethos-U target (called once with the space): per layer,
    the Vela cycles of each option, from the uniform int8 and int16x8 models' compiles. Keeps
    what it wrote and compiled (``uniform``) for the report."""

    graph: LayerGraph
    model: bytes
    calibration: Dataset
    accelerator: str
    predictor: Any  # LatencyPredictor, for the ops Vela leaves on the CPU
    clock_hz: float | None = None
    uniform: dict[str, tuple] = field(default_factory=dict)  # activations -> (bytes, writers, Compiled, choices)
    fixed: float = 0.0  # cycles of the ops outside the space's layers (and the writer's own ops), uniform int8
    notes: list[str] = field(default_factory=list)

    def __call__(self, space: Space) -> dict[int, list[float]]:
        from analyzer.npu import vela
        from analyzer.npu.int8_form import align
        from recommender.materialize import materialize
        from search.latency_costs import latency_costs

        per_layer: dict[str, dict[int, float]] = {}
        cpu_us, _ = latency_costs(self.graph, space, self.predictor)
        for act in ACTIVATIONS:
            choices = uniform_choices(space, act)
            try:
                written = materialize(self.graph, self.model, choices, self.calibration)
                compiled, result, wgraph = compile_written(written.model, f"{self.graph.info.path} (uniform {act})",
                                                           self.accelerator, self.clock_hz, self.graph, self.predictor)
            except (UnsupportedModelError, vela.VelaError, ValueError, RuntimeError) as exc:
                said = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise UnsupportedModelError(f"the uniform int8-weight, {act}-activation model could not be written "
                                            f"and compiled for {self.accelerator}: {said}") from exc
            self.uniform[act] = (written.model, written.writers, compiled, choices)
            clock = compiled.clock_hz
            origin = align(self.graph, wgraph)
            cycles: dict[int, float] = {}
            for o in result.ops:
                layer = origin.get(o.index) if o.subgraph == 0 else None
                if layer is None:
                    continue
                if o.placement == "npu":
                    cycles[layer] = float(o.cycles or 0)
                elif o.placement == "cpu":
                    k = _option_index(space, layer, choices.get(layer))
                    us = cpu_us[layer][k] if k is not None else 0.0
                    cycles[layer] = us * clock / 1e6
                else:
                    cycles[layer] = 0.0
            if not result.perf_available:
                self.notes.append(f"Vela's per-op cycles cover one subgraph of the uniform {act} model: the other "
                                  "subgraphs' NPU ops cost nothing in the search (the written models' totals have them)")
            per_layer[act] = cycles
        # what no choice changes: the int8 model's whole cost (NPU and CPU) less its layers' share
        int8_total = self.uniform["int8"][2].total_cycles
        self.fixed = max(0.0, int8_total - sum(per_layer["int8"].get(ls.layer, 0.0) for ls in space.layers))
        self.space = space
        self.table = {ls.layer: [per_layer.get(o.choice.activations, per_layer["int8"]).get(ls.layer, 0.0)
                                 for o in ls.options] for ls in space.layers}  # float activations: as int8's
        return self.table

    def cost(self, choices) -> float:
        """The predicted cycles of a configuration's layers (the search's objective), once called;
        a layer it leaves out counts its costliest option, as the search does."""
        from search.engine import _table_cost

        return sum(_table_cost(self.table, ls, choices.get(ls.layer)) for ls in self.space.layers)


def _option_index(space: Space, layer: int, choice: LayerChoice | None) -> int | None:
    for ls in space.layers:
        if ls.layer == layer:
            return next((k for k, o in enumerate(ls.options) if o.choice == choice), None)
    return None


def refine(first: dict[int, LayerChoice], layer_sqnr_db: dict[int, dict[str, float]], costs: CycleCosts, write,
           metric_of, floor: float, notes: list[str]):
    """When the searched mix, once written, misses the floor (the simulation rounds better
    than some integer kernels do: the int8 SOFTMAX's table, for one), move its int8 layers to
    int16 in order of the fidelity the simulation says each gains per added cycle, and find
    by bisection the fewest that make the *written* model hold ``floor`` on the search split
    (``metric_of`` runs it in the interpreter). Returns (choices, written) or None."""
    def noise(db: float | None) -> float:
        return 10 ** (-db / 10) if db is not None else 0.0

    options = {ls.layer: ls.options for ls in costs.space.layers}
    order = []
    for layer, choice in first.items():
        if choice.activations != "int8" or layer not in options:
            continue
        wider = next((o.choice for o in options[layer] if o.choice.activations == "int16"
                      and o.choice.weights == choice.weights), None)
        if wider is None:
            continue
        parts = layer_sqnr_db.get(layer, {})
        gain = noise(parts.get("act int8")) - noise(parts.get("act int16"))
        added = max(1.0, costs.cost({**first, layer: wider}) - costs.cost(first))
        order.append((-gain / added, layer, wider))
    order.sort()
    if not order:
        return None
    found, tried = None, 0

    def attempt(k: int):
        nonlocal tried
        choices = {**first, **{layer: wider for _, layer, wider in order[:k]}}
        written = write(choices)
        tried += 1
        return (choices, written) if metric_of(written.model) >= floor else None

    lo, hi = 0, len(order)  # the first k that holds is in (lo, hi]
    found = attempt(hi)
    if found is None:
        notes.append(f"even with all {hi} of its int8 layers at int16 the written mix misses the floor")
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        got = attempt(mid)
        if got is not None:
            hi, found = mid, got
        else:
            lo = mid
    notes.append(f"the searched mix missed the floor once written (the simulation rounds otherwise than some "
                 f"integer kernels); {hi} of its {len(order)} int8 layers moved to "
                 f"int16 (most fidelity per added cycle first) make the written model hold it on the search split "
                 f"({tried} written and run)")
    return found
