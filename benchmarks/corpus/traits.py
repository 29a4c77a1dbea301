"""Compute the structural traits of a .tflite file, for the corpus manifest.

Usage:
    python benchmarks/corpus/traits.py FILE.tflite [...]    # one JSON line per file (--facts: why)
    python benchmarks/corpus/traits.py --check              # manifest traits == traits of cached files?
    python benchmarks/corpus/traits.py --update             # rewrite traits + interpreter fields of
                                                            # manifest.json from the cached files

Needs ``ai_edge_litert`` (its generated flatbuffer schema); everything else is stdlib.
The domain traits ``vision``, ``audio`` and ``micro`` cannot be read from the bytes alone:
they come from the model's source and are kept as they are in the manifest
(see DOMAIN_TRAITS). All other traits are derived here from the file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from ai_edge_litert import schema_py_generated as s

BO = s.BuiltinOperator
TT = s.TensorType

# Traits that are assigned from the source (what the model is for / made for), not computed.
DOMAIN_TRAITS = ("vision", "audio", "micro")

# Order in which traits are listed.
TRAIT_ORDER = (
    "float32", "float16_weights", "int8", "dynamic_range",
    "vision", "audio", "micro",
    "old_converter", "no_signature", "control_flow", "lstm_gru", "attention",
    "custom_op", "flex", "sparse_weights", "dynamic_shape", "multi_subgraph",
    "zero_element_constant",
)

# Ops whose second input is a weight tensor.
WEIGHT_OPS = {
    BO.CONV_2D, BO.DEPTHWISE_CONV_2D, BO.FULLY_CONNECTED, BO.TRANSPOSE_CONV,
    BO.CONV_3D, BO.CONV_3D_TRANSPOSE, BO.BATCH_MATMUL, BO.EMBEDDING_LOOKUP,
    BO.UNIDIRECTIONAL_SEQUENCE_LSTM, BO.LSTM, BO.BIDIRECTIONAL_SEQUENCE_LSTM,
    BO.SVDF, BO.RNN, BO.UNIDIRECTIONAL_SEQUENCE_RNN, BO.BIDIRECTIONAL_SEQUENCE_RNN,
}
RECURRENT_OPS = {
    BO.UNIDIRECTIONAL_SEQUENCE_LSTM, BO.LSTM, BO.BIDIRECTIONAL_SEQUENCE_LSTM,
    BO.RNN, BO.UNIDIRECTIONAL_SEQUENCE_RNN, BO.BIDIRECTIONAL_SEQUENCE_RNN,
}
CONTROL_FLOW_OPS = {BO.WHILE, BO.IF}
INT_TYPES = {TT.INT8, TT.UINT8, TT.INT16, TT.INT4}
LOW_BIT_WEIGHT_TYPES = {TT.INT8, TT.UINT8, TT.INT4}

_OP_NAMES = {v: k for k, v in vars(BO).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(TT).items() if not k.startswith("_")}


def _op_code(oc) -> int:
    """The effective builtin code (newer files use builtinCode, older deprecatedBuiltinCode)."""
    return max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))


def _custom_code(oc) -> str:
    cc = oc.customCode
    if cc is None:
        return ""
    return cc.decode("utf-8", "replace") if isinstance(cc, (bytes, bytearray)) else str(cc)


def _buffer_has_data(model, idx: int) -> bool:
    if idx is None or idx <= 0 or not model.buffers or idx >= len(model.buffers):
        return False
    b = model.buffers[idx]
    if b.data is not None and len(b.data) > 0:
        return True
    return bool(getattr(b, "size", 0))  # data stored outside the flatbuffer (offset/size)


def _buffer_nbytes(model, idx: int) -> int:
    if idx is None or idx <= 0 or not model.buffers or idx >= len(model.buffers):
        return 0
    b = model.buffers[idx]
    if b.data is not None:
        return len(b.data)
    return int(getattr(b, "size", 0) or 0)


def analyze(buf: bytes) -> dict:
    """Return {"traits": [...computed traits...], "facts": {...}} for a .tflite flatbuffer."""
    model = s.ModelT.InitFromPackedBuf(buf, 0)
    codes = model.operatorCodes or []
    subgraphs = model.subgraphs or []
    traits: set[str] = set()
    facts: dict = {}

    op_names = set()
    custom_codes = set()
    old_codes = set()
    # Only operator codes that some operator uses count (tables can list unused codes).
    used = sorted({int(op.opcodeIndex) for sg in subgraphs for op in (sg.operators or [])})
    for oc in (codes[i] for i in used):
        code = _op_code(oc)
        name = _OP_NAMES.get(code, str(code))
        if code == BO.CUSTOM:
            custom_codes.add(_custom_code(oc))
        else:
            op_names.add(name)
        dep = int(oc.deprecatedBuiltinCode or 0)
        if int(oc.builtinCode or 0) == 0 and 0 < dep < BO.PLACEHOLDER_FOR_GREATER_OP_CODES:
            old_codes.add(name)
    if old_codes:
        traits.add("old_converter")
    flex = sorted(c for c in custom_codes if c.startswith("Flex"))
    custom = sorted(c for c in custom_codes if not c.startswith("Flex"))
    if flex:
        traits.add("flex")
    if custom:
        traits.add("custom_op")
    facts["custom_ops"] = sorted(custom_codes)

    if not model.signatureDefs:
        traits.add("no_signature")
    if len(subgraphs) > 1:
        traits.add("multi_subgraph")
    facts["subgraphs"] = len(subgraphs)
    facts["schema_version"] = int(model.version or 0)

    n_ops = 0
    weight_kinds = {"float32": 0, "float16": 0, "int_act": 0, "hybrid": 0, "deq_int": 0, "other": 0}
    deq_f16 = 0
    sparse = False
    dyn = False
    zero_const = False
    lstm_names = False
    attn_names = False
    act_matmul = False
    attn_composite = False
    const_bytes: dict[str, int] = {}

    for sg in subgraphs:
        tensors = sg.tensors or []
        ops = sg.operators or []
        n_ops += len(ops)
        producer = {}
        for i, op in enumerate(ops):
            for t in (op.outputs if op.outputs is not None else []):
                producer[int(t)] = i
        sg_inputs = set(int(x) for x in (sg.inputs if sg.inputs is not None else []))

        def is_const(ti: int) -> bool:
            t = tensors[ti]
            return ti not in producer and ti not in sg_inputs and not t.isVariable and \
                _buffer_has_data(model, t.buffer)

        def trace_weight(ti: int):
            """(dtype of the constant behind a weight, whether a DEQUANTIZE sits between),
            following DEQUANTIZE / DENSIFY chains; (None, False) if no constant is behind it."""
            dequantized = False
            for _ in range(4):
                if is_const(ti):
                    return tensors[ti].type, dequantized
                if ti not in producer:
                    return None, False
                p = ops[producer[ti]]
                pcode = _op_code(codes[p.opcodeIndex])
                pin = [int(x) for x in (p.inputs if p.inputs is not None else [])]
                if pcode not in (BO.DEQUANTIZE, BO.DENSIFY) or not pin or pin[0] < 0:
                    return None, False
                dequantized |= pcode == BO.DEQUANTIZE
                ti = pin[0]
            return None, False

        def _from_const_dequant(ti: int) -> bool:
            if ti not in producer:
                return False
            p = ops[producer[ti]]
            pin = [int(x) for x in (p.inputs if p.inputs is not None else [])]
            return _op_code(codes[p.opcodeIndex]) == BO.DEQUANTIZE and bool(pin) and pin[0] >= 0 \
                and is_const(pin[0])

        for ti, t in enumerate(tensors):
            if t.sparsity is not None:
                sparse = True
            sig = t.shapeSignature
            if sig is not None and any(int(d) == -1 for d in sig):
                dyn = True
            shape = t.shape if t.shape is not None else []
            if (any(int(d) == 0 for d in shape) and ti not in producer
                    and ti not in sg_inputs and not t.isVariable):
                zero_const = True
            if _buffer_has_data(model, t.buffer) and ti not in producer:
                tn = _TYPE_NAMES.get(t.type, str(t.type))
                const_bytes[tn] = const_bytes.get(tn, 0) + _buffer_nbytes(model, t.buffer)
            name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else (t.name or "")
            if re.search(r"lstm|gru", name, re.I):
                lstm_names = True
            if re.search(r"attention|self_attn|multi_head|mha", name, re.I):
                attn_names = True

        for op in ops:
            oc = codes[op.opcodeIndex]
            code = _op_code(oc)
            ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
            if code == BO.DENSIFY:
                sparse = True
            if code == BO.DEQUANTIZE and ins and ins[0] >= 0:
                if trace_weight(ins[0])[0] == TT.FLOAT16:
                    deq_f16 += 1
            if code == BO.BATCH_MATMUL and len(ins) >= 2 and ins[0] >= 0 and ins[1] >= 0 \
                    and not is_const(ins[0]) and not is_const(ins[1]) \
                    and not _from_const_dequant(ins[0]) and not _from_const_dequant(ins[1]):
                act_matmul = True
            if code == BO.STABLEHLO_COMPOSITE and op.builtinOptions2 is not None:
                cname = getattr(op.builtinOptions2, "name", b"") or b""
                cname = cname.decode("utf-8", "replace") if isinstance(cname, bytes) else str(cname)
                if re.search(r"attention|sdpa", cname, re.I):
                    attn_composite = True
            act_idx = 2 if code == BO.TRANSPOSE_CONV else 0
            if code in WEIGHT_OPS and len(ins) > max(act_idx, 1) and ins[act_idx] >= 0 and ins[1] >= 0:
                act = tensors[ins[act_idx]].type
                src, dequantized = trace_weight(ins[1])
                if act in INT_TYPES:
                    weight_kinds["int_act"] += 1
                elif src is None:
                    # Activation x activation (attention BATCH_MATMUL) or a weight passed in
                    # (loop body input): the compute precision is the activation's.
                    weight_kinds["float32" if act == TT.FLOAT32 else "other"] += 1
                elif act == TT.FLOAT32 and src in LOW_BIT_WEIGHT_TYPES:
                    weight_kinds["deq_int" if dequantized else "hybrid"] += 1
                elif act == TT.FLOAT32 and src == TT.FLOAT16 and dequantized:
                    weight_kinds["float16"] += 1
                elif act == TT.FLOAT32 and src == TT.FLOAT32:
                    weight_kinds["float32"] += 1
                else:
                    weight_kinds["other"] += 1

    facts["ops"] = n_ops
    facts["op_types"] = sorted(op_names)
    facts["weight_ops"] = {k: v for k, v in weight_kinds.items() if v}
    facts["const_bytes_by_type"] = dict(sorted(const_bytes.items(), key=lambda kv: -kv[1]))
    if old_codes:
        facts["old_opcodes"] = sorted(old_codes)

    # Precision traits.
    total_w = sum(weight_kinds.values())
    if weight_kinds["float16"] or deq_f16:
        traits.add("float16_weights")
    if weight_kinds["hybrid"] or weight_kinds["deq_int"]:
        traits.add("dynamic_range")
    if total_w and weight_kinds["int_act"] * 2 >= total_w:
        traits.add("int8")
    if total_w and weight_kinds["float32"] * 2 > total_w:
        traits.add("float32")
    if not total_w:
        # No weight-bearing op: judge by the dominant constant type / tensor types.
        all_types = {t.type for sg in subgraphs for t in (sg.tensors or [])}
        if all_types & {TT.INT8, TT.INT16} and not (all_types & {TT.FLOAT32}):
            traits.add("int8")
        elif TT.FLOAT32 in all_types:
            traits.add("float32")

    if op_names & {_OP_NAMES[c] for c in CONTROL_FLOW_OPS}:
        traits.add("control_flow")
    if op_names & {_OP_NAMES[c] for c in RECURRENT_OPS}:
        traits.add("lstm_gru")
        facts["lstm_gru_by"] = "builtin recurrent op"
    elif lstm_names and (op_names & {"WHILE", "FULLY_CONNECTED", "BATCH_MATMUL"}):
        traits.add("lstm_gru")
        facts["lstm_gru_by"] = "unrolled/while-loop cell (tensor names)"
    if act_matmul:
        traits.add("attention")
        facts["attention_by"] = "BATCH_MATMUL of two activations"
    elif attn_composite:
        traits.add("attention")
        facts["attention_by"] = "attention/SDPA composite"
    elif attn_names and "SOFTMAX" in op_names:
        traits.add("attention")
        facts["attention_by"] = "attention tensor names + SOFTMAX"
    elif any("attention" in c.lower() for c in custom_codes):
        traits.add("attention")
        facts["attention_by"] = "custom attention op"
    if sparse:
        traits.add("sparse_weights")
    if dyn:
        traits.add("dynamic_shape")
    if zero_const:
        traits.add("zero_element_constant")

    return {"traits": [t for t in TRAIT_ORDER if t in traits], "facts": facts}


def merge_traits(computed: list[str], existing: list[str]) -> list[str]:
    """Computed traits plus the domain traits already present in the manifest."""
    keep = set(computed) | {t for t in existing if t in DOMAIN_TRAITS}
    return [t for t in TRAIT_ORDER if t in keep]


# Run in a child process per model: native code may crash on odd files.
_INTERPRETER_PROBE = r"""
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1])
it.allocate_tensors()
for d in it.get_input_details():
    shape = [int(x) for x in d["shape"]]
    if d["dtype"] in (np.bytes_, np.object_, np.str_):
        it.set_tensor(d["index"], np.full(shape, b"a", dtype=object) if shape else np.array(b"a", dtype=object))
    else:
        it.set_tensor(d["index"], np.zeros(shape, dtype=d["dtype"]))
it.invoke()
print("ok")
"""


def interpreter_status(path: str, timeout: int = 300) -> str:
    """'runs' if the stock LiteRT interpreter allocates and invokes the model on zeros."""
    import subprocess
    try:
        p = subprocess.run([sys.executable, "-c", _INTERPRETER_PROBE, path],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"fails: allocate + invoke on zeros did not finish within {timeout} s"
    if p.returncode == 0 and p.stdout.strip().endswith("ok"):
        return "runs"
    if p.returncode < 0:
        return f"fails: process killed by signal {-p.returncode}"
    lines = [l.strip() for l in (p.stderr or "").splitlines() if l.strip()]
    # Prefer the interpreter's own error lines over the Python traceback tail.
    keep = [l for l in lines if not l.startswith(("Traceback", "File ", "^", "~"))
            and "INFO:" not in l and "WARNING:" not in l]
    reason = ""
    for l in keep:
        if "ERROR:" in l or "Didn't find" in l or "Encountered unresolved" in l:
            reason = l
            break
    if not reason and keep:
        reason = keep[-1]
    reason = reason.replace("RuntimeError: ", "").replace("ValueError: ", "")
    if "Select TensorFlow op" in reason:
        reason = "Select TF (Flex) ops, not linked into the stock interpreter"
    reason = re.sub(r"(?<=[.)])(?=[A-Z])", " ", reason)
    if len(reason) > 120:
        reason = reason[:117].rstrip() + "..."
    return "fails: " + (reason or f"exit status {p.returncode}")


def _default_cache() -> str:
    return os.environ.get("COMPRESSION_ADVISOR_CORPUS") or os.path.join(
        os.path.expanduser("~"), ".cache", "compression-advisor", "corpus")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--check", action="store_true", help="compare manifest traits with the cached files")
    ap.add_argument("--cache", default=_default_cache())
    ap.add_argument("--facts", action="store_true", help="also print the facts behind the traits")
    ap.add_argument("--update", action="store_true",
                    help="rewrite the traits and interpreter fields of manifest.json")
    ap.add_argument("--only", default="", help="with --update: comma-separated model names")
    args = ap.parse_args(argv)
    if args.update:
        return _update(args.cache, [n for n in args.only.split(",") if n])
    if args.check:
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "manifest.json")) as f:
            manifest = json.load(f)
        bad = 0
        for m in manifest["models"]:
            p = os.path.join(args.cache, m["file"])
            if not os.path.exists(p):
                print(f"{m['name']}: not in cache")
                bad += 1
                continue
            with open(p, "rb") as f:
                got = merge_traits(analyze(f.read())["traits"], m["traits"])
            if got != m["traits"]:
                print(f"{m['name']}: manifest {m['traits']} != file {got}")
                bad += 1
        print(f"{len(manifest['models']) - bad} consistent, {bad} not")
        return 1 if bad else 0
    for p in args.files:
        with open(p, "rb") as f:
            r = analyze(f.read())
        out = {"file": p, "traits": r["traits"]}
        if args.facts:
            out["facts"] = r["facts"]
        print(json.dumps(out))
    return 0


def _update(cache: str, only: list[str]) -> int:
    import hashlib
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    bad = 0
    for i, m in enumerate(manifest["models"]):
        if only and m["name"] not in only:
            continue
        p = os.path.join(cache, m["file"])
        if not os.path.exists(p):
            print(f"{m['name']}: not in cache {cache}, left as is")
            bad += 1
            continue
        with open(p, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != m["sha256"] or len(data) != m["size"]:
            print(f"{m['name']}: cached file does not match the pinned sha256, left as is")
            bad += 1
            continue
        m["traits"] = merge_traits(analyze(data)["traits"], m["traits"])
        status = interpreter_status(p)
        # Keep a stable key order: interpreter right after notes.
        new = {k: v for k, v in m.items() if k != "interpreter"}
        new["interpreter"] = status
        manifest["models"][i] = new
        print(f"{m['name']:36s} {status}")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
