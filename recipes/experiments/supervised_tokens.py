"""MIAM against every baseline where the MIAM paper expects it to win: a supervised task, five imbalanced
modalities, several tokens in three of them (a synthetic analogue of GeoPlant / TaxaBench).

Data (:func:`geoprom3e.testing.synthetic.make_supervised_tokens`): 16 classes; ``tab`` (1 token, little
noise: the dominant modality), ``ts`` (6 tokens), ``sat`` (4 tokens), ``loc`` (1 token) and ``aud`` (2 tokens,
much noise: the weak one). The class maps and prototypes are fixed; each seed draws new rows.

Model: a tiny transformer classifier (per-modality token embedding + position-in-modality + modality
identifier, a cls token, one pre-LN encoder block of width 32, a linear head); masked tokens are dropped with
a key-padding mask. Every strategy masks per token through :meth:`MaskingStrategy.sample_tokens`; OPM's
feature rescaling multiplies the visible tokens' embeddings. Scores for MIAM and OPM: validation accuracy of
each modality alone, after every epoch (MIAM's supervised s_m). Early stopping for every strategy alike
(MIAM's rule): mean validation accuracy over each modality alone plus all modalities, patience 12 epochs,
best weights kept. Evaluation: test accuracy on each of the 31 visible subsets.

    python recipes/experiments/supervised_tokens.py --out runs/supervised            # everything below
    python recipes/experiments/supervised_tokens.py --out runs/supervised --part main     # 9 strategies x seeds
    python recipes/experiments/supervised_tokens.py --out runs/supervised --part sweep    # MIAM lambda / kappa
    python recipes/experiments/supervised_tokens.py --out runs/supervised --part corners  # corner-weight ablation

Finished runs are kept in ``<out>/runs/*.json`` and skipped when the command is run again; ``report.md``
and ``report.json`` are rewritten from whatever runs exist.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import t as student_t
from torch import nn

from geoprom3e.model.masking import get_strategy, list_strategies
from geoprom3e.testing.synthetic import SyntheticTokens, make_supervised_tokens


class TokenClassifier(nn.Module):
    """Tiny multimodal transformer classifier over several tokens per modality."""

    def __init__(self, dims: list[int], tokens: list[int], classes: int, width: int = 32, heads: int = 2,
                 mlp: int = 64, depth: int = 1, mask_token: bool = False) -> None:
        super().__init__()
        self.tokens = tokens
        self.embed = nn.ModuleList(nn.Linear(d, width) for d in dims)
        self.pos = nn.ParameterList(nn.Parameter(torch.randn(t, width) * 0.02) for t in tokens)
        self.mod = nn.Parameter(torch.randn(len(dims), width) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(width)) if mask_token else None
        layer = nn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, xs: list[torch.Tensor], visible: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Logits [B, classes] from token features ``xs`` and token visibility [B, T]."""
        toks = [self.embed[m](x) * scale + self.pos[m] + self.mod[m] for m, x in enumerate(xs)]
        t = torch.cat(toks, dim=1)  # [B, T, W]
        b = t.shape[0]
        if self.mask_token is not None:
            t = torch.where(visible[..., None], t, self.mask_token)
            pad = None
        else:
            pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool), ~visible], dim=1)
        h = self.encoder(torch.cat([self.cls.expand(b, -1, -1), t], dim=1), src_key_padding_mask=pad)
        return self.head(self.norm(h[:, 0]))


def token_mask(tokens: list[int], modalities: tuple[int, ...], n: int) -> torch.Tensor:
    """[n, T] bool: every token of the given modalities visible."""
    owner = torch.repeat_interleave(torch.arange(len(tokens)), torch.tensor(tokens))
    keep = torch.zeros(len(tokens), dtype=torch.bool)
    keep[list(modalities)] = True
    return keep[owner].expand(n, -1)


@torch.no_grad()
def accuracy(model: TokenClassifier, data: SyntheticTokens, modalities: tuple[int, ...]) -> float:
    """Test accuracy with every token of ``modalities`` visible."""
    model.eval()
    xs = [torch.from_numpy(t) for t in data.tokens]
    vis = token_mask(model.tokens, modalities, len(data.labels))
    pred = model(xs, vis).argmax(dim=1).numpy()
    model.train()
    return float((pred == data.labels).mean())


def run(name: str, params: dict, seed: int, args: argparse.Namespace) -> dict:
    """Train one model with one strategy and seed; returns per-subset test accuracy and the training log."""
    torch.manual_seed(seed)
    train = make_supervised_tokens(args.rows, seed=100 * seed)
    val = make_supervised_tokens(args.val_rows, seed=100 * seed + 1)
    test = make_supervised_tokens(args.test_rows, seed=100 * seed + 2)
    tokens = train.tokens_per_modality
    m = len(tokens)
    model = TokenClassifier([t.shape[2] for t in train.tokens], tokens, int(train.labels.max()) + 1,
                            mask_token=args.mask_token)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    strat = get_strategy(name, m, tokens, **params)
    gen = torch.Generator().manual_seed(seed + 1)
    xs = [torch.from_numpy(t) for t in train.tokens]
    y = torch.from_numpy(train.labels)
    n = len(y)
    best, best_state, best_epoch, log = -1.0, None, 0, []
    t0 = time.process_time()
    for epoch in range(args.max_epochs):
        strat.start_epoch(epoch)
        perm = torch.randperm(n, generator=gen)
        losses = []
        for k in range(n // args.batch):
            idx = perm[k * args.batch : (k + 1) * args.batch]
            vis = strat.sample_tokens(len(idx), gen)
            logits = model([x[idx] for x in xs], vis, strat.feature_scale())
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        uni = [accuracy(model, val, (i,)) for i in range(m)]
        full = accuracy(model, val, tuple(range(m)))
        strat.update(uni)  # MIAM / OPM: s_m = validation accuracy of modality m alone
        crit = float(np.mean([*uni, full]))  # MIAM's early stopping: each modality alone + all
        state = strat.state()
        log.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_unimodal": uni, "val_all": full,
                    "criterion": crit, "expected_mask": state.get("expected_mask_prob", state.get("drop_prob"))})
        if crit > best:
            best, best_epoch = crit, epoch + 1
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch + 1 - best_epoch >= args.patience:
            break
    model.load_state_dict(best_state)
    subsets = {}
    for k in range(1, m + 1):
        for s in itertools.combinations(range(m), k):
            subsets[",".join(train.names[i] for i in s)] = accuracy(model, test, s)
    return {"strategy": name, "params": params, "seed": seed, "epochs_run": len(log), "best_epoch": best_epoch,
            "cpu_seconds": round(time.process_time() - t0, 1), "names": list(train.names), "tokens": tokens,
            "subsets": subsets, "log": log}


def jobs(part: str, seeds: list[int], lam: float) -> list[tuple[str, str, dict, int]]:
    """(label, strategy, params, seed) of every run of ``part``."""
    out = []
    if part in ("main", "all"):
        for s in seeds:
            for name in list_strategies():
                out.append((name, name, {"lam": lam} if name == "miam" else {}, s))
    if part in ("sweep", "all"):
        for s in seeds:
            for lam_ in (0.5, 2.0, 4.0):
                out.append((f"miam-lam{lam_:g}", "miam", {"lam": lam_}, s))
            for kappa in (3.0, 30.0):
                out.append((f"miam-kappa{kappa:g}", "miam", {"lam": lam, "kappa": kappa}, s))
    if part in ("corners", "all"):
        for s in seeds:
            out.append(("miam-uniform-corners", "miam", {"lam": lam, "corner_weighting": "uniform"}, s))
    return out


# ---------------------------------------------------------------------- report
def _ms(v: list[float]) -> str:
    return f"{100 * np.mean(v):.1f} ± {100 * np.std(v, ddof=1) if len(v) > 1 else 0:.1f}"


def report(out: Path) -> str:
    """Markdown tables from the runs in ``out/runs``; also writes ``report.json``."""
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    if not runs:
        return "no runs yet\n"
    by: dict[str, dict[int, dict]] = {}
    for r in runs:
        by.setdefault(r["label"], {})[r["seed"]] = r
    names = runs[0]["names"]
    dominant = names[0]
    subsets = list(runs[0]["subsets"])
    order = [s for s in [*list_strategies(), "miam-lam0.5", "miam-lam2", "miam-lam4", "miam-kappa3", "miam-kappa30",
                         "miam-uniform-corners"] if s in by]
    lines = ["| " + " | ".join([*names, *order]) + " |",
             "|" + "|".join([":-:"] * len(names) + ["--:"] * len(order)) + "|"]
    for sub in subsets:
        parts = sub.split(",")
        cells = [_ms([by[o][s]["subsets"][sub] for s in by[o]]) for o in order]
        lines.append("| " + " | ".join(["✓" if n_ in parts else "" for n_ in names] + cells) + " |")

    def group(o: str, pick) -> list[float]:  # noqa: ANN001 - per-seed mean over the chosen subsets
        return [float(np.mean([v for k, v in by[o][s]["subsets"].items() if pick(k.split(","))])) for s in by[o]]

    groups = {
        f"mean, subsets without {dominant} (15)": lambda p: dominant not in p,
        f"mean, subsets with {dominant} (16)": lambda p: dominant in p,
        "mean, all 31 subsets": lambda p: True,
        "all modalities": lambda p: len(p) == len(names),
        f"{dominant} alone": lambda p: p == [dominant],
    }
    for label, pick in groups.items():
        lines.append("| " + " | ".join([f"**{label}**"] + [""] * (len(names) - 1) +
                                       [_ms(group(o, pick)) for o in order]) + " |")
    ep = [f"{np.mean([by[o][s]['epochs_run'] for s in by[o]]):.0f} "
          f"({np.mean([by[o][s]['best_epoch'] for s in by[o]]):.0f})" for o in order]
    lines.append("| " + " | ".join(["epochs run (best)"] + [""] * (len(names) - 1) + ep) + " |")
    table = "\n".join(lines)
    # paired comparison of MIAM with each strategy, per seed
    cmp_lines = ["| vs | without " + dominant + ": MIAM − other (mean ± sd over seeds) | verdict | all 31: MIAM − other"
                 " | verdict |", "|---|--:|:-:|--:|:-:|"]
    verdicts = {}
    if "miam" in by:
        for o in order:
            if o == "miam":
                continue
            common = sorted(set(by["miam"]) & set(by[o]))
            if len(common) < 2:
                continue
            row = [o]
            for pick in (groups[f"mean, subsets without {dominant} (15)"], groups["mean, all 31 subsets"]):
                a = np.array([np.mean([v for k, v in by["miam"][s]["subsets"].items() if pick(k.split(","))])
                              for s in common])
                b = np.array([np.mean([v for k, v in by[o][s]["subsets"].items() if pick(k.split(","))])
                              for s in common])
                d = a - b
                se = d.std(ddof=1) / np.sqrt(len(d))
                crit = float(student_t.ppf(0.975, len(d) - 1)) * se  # paired t-test, two-sided 5 %
                verdict = "win" if d.mean() > crit else "lose" if d.mean() < -crit else "tie"
                row += [f"{100 * d.mean():+.1f} ± {100 * d.std(ddof=1):.1f}", verdict]
                verdicts.setdefault(o, []).append(verdict)
            cmp_lines.append("| " + " | ".join(row) + " |")
    seeds = sorted({r["seed"] for r in runs})
    cpu = sum(r["cpu_seconds"] for r in runs)
    head = (f"Test accuracy (%) per visible subset, mean ± sd over seeds {seeds} ({len(runs)} runs, "
            f"{cpu / 60:.1f} CPU minutes of training). Chance 6.25 %.\n\n")
    body = head + table + "\n\nPaired by seed (same rows, same initial weights); verdict: win / lose when a paired " \
        "two-sided t-test over the seeds rejects equality at 5 % (|mean| > t(0.975, n−1) · sd / √n), else " \
        "tie.\n\n" + "\n".join(cmp_lines) + "\n"
    (out / "report.json").write_text(json.dumps({"verdicts": verdicts, "seeds": seeds, "cpu_seconds": cpu}, indent=1))
    return body


def main() -> None:
    """Run the requested part and rewrite the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/supervised-tokens"))
    ap.add_argument("--part", choices=("main", "sweep", "corners", "all", "report"), default="all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--lam", type=float, default=1.0, help="MIAM λ of the main comparison (paper 1–5)")
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--val-rows", type=int, default=1000)
    ap.add_argument("--test-rows", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-epochs", type=int, default=80)
    ap.add_argument("--patience", type=int, default=12)
    ap.add_argument("--mask-token", action="store_true", help="masked tokens become a learned mask token")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.part != "report":
        for label, name, params, seed in jobs(args.part, seeds, args.lam):
            path = args.out / "runs" / f"{label}-s{seed}.json"
            if path.is_file():
                continue
            res = run(name, params, seed, args)
            res["label"] = label
            res["args"] = {k: str(v) for k, v in vars(args).items()}
            path.write_text(json.dumps(res))
            print(f"{label} seed {seed}: {res['epochs_run']} epochs (best {res['best_epoch']}), "
                  f"{res['cpu_seconds']} CPU s, all {100 * res['subsets'][','.join(res['names'])]:.1f} %", flush=True)
    text = report(args.out)
    (args.out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
