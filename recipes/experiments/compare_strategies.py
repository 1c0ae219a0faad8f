"""Strategy comparison on imbalanced synthetic data: one ProM3E per masking strategy, every visible subset.

The data (geoprom3e.testing.synthetic.make_synthetic) has one dominant modality (sat, little noise), one
weak one (audio, much noise) and four ordinary ones. Each strategy trains the same small model with the
same seed and epochs, with the published arithmetic (dropout 0, std-1 tokens, no clipping, fp32) and the
MIAM paper's self-supervised score (training-set target loss, s = exp(−L)) for MIAM and OPM; each model is
then evaluated on the same held-out rows for all 63 visible subsets. This is the self-supervised, one token
per modality regime, where the MIAM paper itself expects little difference; see supervised_tokens.py for the
regime where it reports gains.
The table has one row per subset (✓ = visible) and one column per strategy: mean recall@1 of the hidden
modalities, in %, like the MIAM paper's per-subset tables.

    python recipes/experiments/compare_strategies.py --out runs/strategy-comparison
    python recipes/experiments/compare_strategies.py --epochs 10 --strategies prom3e,miam   # quick look
    python recipes/experiments/compare_strategies.py --strategies miam,opm --score-smoothing 0.8 --out runs/smoothed
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from geoprom3e.io.atomic import atomic_write_text
from geoprom3e.model.evaluate import EvaluationReport, SubsetResult, evaluate
from geoprom3e.model.masking import list_strategies
from geoprom3e.model.train import train
from geoprom3e.testing.synthetic import make_synthetic, small_recipe


def main() -> None:
    """Train one model per strategy, evaluate each on every subset, write comparison.md and .json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/strategy-comparison"))
    ap.add_argument("--strategies", default=",".join(list_strategies()))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--rows", type=int, default=4000, help="training + validation rows")
    ap.add_argument("--eval-rows", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lam", type=float, default=1.0, help="MIAM λ")
    ap.add_argument("--score", default="train-target-loss",
                    help="train.score (top1 / inverse-loss: the supervised reading)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep strategies whose run folder already holds an evaluation (delete a folder to redo it)")
    ap.add_argument("--score-smoothing", type=float, default=0.0, help="train.score_smoothing for every run")
    args = ap.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    data = make_synthetic(args.rows, seed=args.seed).as_dict()
    held_out = make_synthetic(args.eval_rows, seed=args.seed + 1000).as_dict()  # same maps, new rows
    reports, summary = {}, {}
    for name in strategies:
        ev = args.out / name / "evaluation" / "evaluation.json"
        if args.reuse and ev.is_file() and (args.out / name / "metrics.jsonl").is_file():
            d = json.loads(ev.read_text())
            d["subsets"] = [SubsetResult(**x) for x in d["subsets"]]
            reports[name] = EvaluationReport(**d)
            lines = (args.out / name / "metrics.jsonl").read_text().splitlines()
            last = json.loads(lines[-1])
            summary[name] = {"reused": True, "steps": len(lines) * ((args.rows - -(-args.rows // 10)) // 256),
                             "val_loss": last["val_loss"], "scores": last["scores"],
                             "strategy": {k: v for k, v in last["strategy"].items() if k != "corner_weights"}}
            continue
        recipe = small_recipe(epochs=args.epochs, seed=args.seed, t0=20, score_smoothing=args.score_smoothing,
                              score=args.score)
        recipe["masking"] = {"strategy": name, "params": {"lam": args.lam} if name == "miam" else {}}
        t0 = time.perf_counter()
        res = train(recipe, args.out / name, data=data, overwrite=True)
        rep = evaluate(res.model, held_out, max_rows=args.eval_rows, out_dir=args.out / name / "evaluation")
        reports[name] = rep
        last = res.metrics[-1]
        summary[name] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "steps": len(res.metrics) * ((args.rows - -(-args.rows // 10)) // 256),
            "val_loss": last["val_loss"],
            "scores": last["scores"],
            "strategy": {k: v for k, v in last["strategy"].items() if k != "corner_weights"},
        }
        print(f"{name}: {summary[name]['seconds']} s, val loss {last['val_loss']:.4f}", flush=True)
    table = comparison_table(reports)
    atomic_write_text(args.out / "comparison.md", table)
    atomic_write_text(args.out / "comparison.json", json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
         "subsets": {n: r.to_dict()["subsets"] for n, r in reports.items()}}, indent=1))
    print(table)


def comparison_table(reports: dict) -> str:
    """Rows = visible subsets, columns = strategies (mean hidden R@1 in %), then means by subset size."""
    names = list(reports)
    first = next(iter(reports.values()))
    mods = first.modalities
    head = [*mods, *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":-:"] * len(mods) + ["--:"] * len(names)) + "|"]
    by_key = {n: {tuple(s.visible): s for s in r.subsets} for n, r in reports.items()}
    for s in first.subsets:
        if s.recall_masked is None:
            continue
        key = tuple(s.visible)
        vals = [100 * by_key[n][key].recall_masked["R@1"] for n in names]
        best = max(vals)
        cells = [f"**{v:.1f}**" if v == best else f"{v:.1f}" for v in vals]
        lines.append("| " + " | ".join(["✓" if m in s.visible else "" for m in mods] + cells) + " |")
    sizes = sorted({len(s.visible) for s in first.subsets if s.recall_masked})
    for k in sizes:
        vals = [np.mean([s.recall_masked["R@1"] for s in by_key[n].values() if len(s.visible) == k and s.recall_masked])
                for n in names]
        lines.append("| " + " | ".join([f"mean, {k} visible"] + [""] * (len(mods) - 1) +
                                       [f"{100 * v:.1f}" for v in vals]) + " |")
    allv = [np.mean([s.recall_masked["R@1"] for s in by_key[n].values() if s.recall_masked]) for n in names]
    lines.append("| " + " | ".join(["mean, all subsets"] + [""] * (len(mods) - 1) + [f"{100 * v:.1f}" for v in allv])
                 + " |")
    sig = [np.mean([s.sigma_l1 for s in by_key[n].values()]) for n in names]
    lines.append("| " + " | ".join(["mean ‖σ‖₁"] + [""] * (len(mods) - 1) + [f"{v:.2f}" for v in sig]) + " |")
    return "\n".join(lines) + f"\n\nMean recall@1 (%) of the hidden modalities over {first.rows} held-out rows " \
        f"(chance {100 / first.rows:.2f} %); best per row in bold.\n"


if __name__ == "__main__":
    main()
