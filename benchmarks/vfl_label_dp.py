"""Label DP in split learning on FATE's default_credit: attack AUCs and model AUC at ε ∈ {1, 3, 8}.

    python -m benchmarks.vfl_label_dp [--epochs 3] [--rows N] [--epsilons 1,3,8]

For each ε the active party (the bank) trains with ``label_epsilon=ε`` (``vfl.config``:
the logit gradient noised with the multiplier the RDP accountant picks for ``epochs``
epochs at δ = 1e-5), in plaintext mode so that the passive party's gradients can be
recorded. Printed per ε and without DP: ``vfl_label_dp_norm_attack_auc`` and
``vfl_label_dp_cosine_attack_auc`` (Li et al. 2021's norm and direction attacks on the
gradients the fintech sees in the last epoch; 0.5 is chance), and ``vfl_label_dp_model_auc``
(test AUC). Reuses ``benchmarks.vfl``'s data, model and attacks.
"""

from __future__ import annotations

import argparse
import os

import torch

from benchmarks._emit import emit
from benchmarks.vfl import leak_aucs, load, run_mode
from vfl.trainer import TrainConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--epsilons", default="1,3,8")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    d = load(args.rows)
    base = TrainConfig(mode="plaintext", epochs=args.epochs, batch_size=args.batch_size,
                       lr_interactive=0.02, patience=args.epochs)
    cond = {"rows_train": len(d["tr"]), "epochs": args.epochs, "batch": args.batch_size,
            "delta": base.label_delta, "load_avg_1m": round(os.getloadavg()[0], 1)}
    for eps in [None, *(float(e) for e in args.epsilons.split(","))]:
        c = TrainConfig(**{**base.__dict__, "label_epsilon": eps})
        grads: list = []
        r = run_mode(d, c, leak=grads)
        last = grads[-len(grads) // max(1, r["epochs"]):]
        a_norm, a_cos = leak_aucs(last, d["y"][d["tr"]])
        cc = {**cond, "label_epsilon": eps if eps is not None else "off",
              "noise_multiplier": round(c.label_noise_multiplier, 4), "epochs_run": r["epochs"]}
        emit("vfl_label_dp_norm_attack_auc", round(a_norm, 4), "auc", **cc)
        emit("vfl_label_dp_cosine_attack_auc", round(a_cos, 4), "auc", **cc)
        emit("vfl_label_dp_model_auc", round(r["auc"], 4), "auc", **cc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
