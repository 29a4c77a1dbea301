"""Peak RSS of `analyze` on a synthetic model with about 1 GB of float32 weights.

Two layouts: weights inline in the flatbuffer, and stored after it (offset/size, as the
converter writes models over 2 GB). Goal: peak RSS under 200 MB for both, because the
reader memory-maps the file and never reads weight pages. The TF Analyzer is run on the
same files for comparison.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from measure import ROOT, median_runs, mib

sys.path.insert(0, str(ROOT))



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-peer", action="store_true")
    args = ap.parse_args()
    out = ROOT / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    print(f"{'model':34} {'size':>9} {'ours s':>7} {'ours RSS':>9} {'peer s':>7} {'peer RSS':>9} {'RSS ratio':>9}")
    for external in (False, True):
        path = out / f"synthetic_{args.gib:g}gb{'_external' if external else ''}.tflite"
        if not path.exists():  # in a child: its memory would inflate later children's peak RSS
            subprocess.run([py, "-c", "import sys; from tests.flatbuffer_edit import synthetic_fc_model as s; "
                            "s(sys.argv[1], int(sys.argv[2]), width=4096, external=sys.argv[3] == '1')",
                            str(path), str(int(args.gib * 2**30)), "1" if external else "0"], cwd=ROOT, check=True)
        ours_t, ours_m, _ = median_runs([py, "-m", "analyzer", str(path), "--format", "json", "-o", "/dev/null"],
                                        args.repeat)
        peer_t = peer_m = float("nan")
        if not args.skip_peer:
            peer_t, peer_m, _ = median_runs([py, "-c", (
                "import tensorflow as tf, contextlib, io\n"
                "with contextlib.redirect_stdout(io.StringIO()):\n"
                f"    tf.lite.experimental.Analyzer.analyze(model_path={str(path)!r})\n")], 1,
                {"TF_CPP_MIN_LOG_LEVEL": "3"})
        print(f"{path.name:34} {path.stat().st_size / 2**30:7.2f}GiB {ours_t:7.2f} {mib(ours_m):>9} "
              f"{peer_t:7.2f} {mib(peer_m) if peer_m == peer_m else '-':>9} "
              f"{ours_m / peer_m if peer_m == peer_m else float('nan'):9.3f}")
    print("goal: ours peak RSS < 200 MiB")


if __name__ == "__main__":
    main()
