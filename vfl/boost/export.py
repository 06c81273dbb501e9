"""Export a jointly agreed SecureBoost model to XGBoost's JSON model format.

Only with the explicit consent of every party (``export_active(..., consent=True)`` at the
active party, ``export_passive(..., consent=True)`` at each passive one): the export is a
plaintext model that holds every party's thresholds, so whoever gets it learns them. Feature
columns are the active party's, then each passive party's (``party:feature`` names), in
the order of ``ActiveModel.passives``; ``xgboost.Booster(model_file=...)`` loads it and predicts
on that joined table. Numeric features only (XGBoost's categorical splits are left out).
"""

from __future__ import annotations

import math
from typing import Any

from party.errors import ConfigError
from vfl.boost.binning import Binner
from vfl.boost.messages import ExportTable
from vfl.boost.protocol import ActiveModel


def _f(x: float) -> float:
    return float(x)


def to_xgboost_json(model: ActiveModel, binner: Binner | None, tables: dict[str, ExportTable], *,
                    active: str) -> dict[str, Any]:
    """The XGBoost (>= 2.0 JSON schema) dict of ``model``; ``json.dump`` it to a ``.json`` file."""
    if binner is None:
        raise ConfigError("the active party's binner is needed to export its thresholds")
    names = list(binner.names)
    offset: dict[str, int] = {active: 0}
    thresholds: dict[tuple[str, int], tuple[int, float]] = {}
    for r, (f, b) in model.table.items():
        fb = binner.features[f]
        if fb.kind != "numeric":
            raise ConfigError(f"feature {fb.name!r} is categorical; the XGBoost export is numeric only")
        thresholds[(active, r)] = (f, float(fb.cuts[b]))
    for q in model.passives:
        t = tables[q]
        offset[q] = len(names)
        names += [f"{q}:{n}" for n in t.all_features]
        for r, fname, thr in zip(t.records, t.features, t.thresholds, strict=True):
            if fname not in t.all_features:
                raise ConfigError(f"{q} exported a split on {fname!r}, not one of its features")
            thresholds[(q, r)] = (t.all_features.index(fname), float(thr))
    trees = []
    for ti, tree in enumerate(model.trees):
        nn = len(tree)
        lc, rc, par = [-1] * nn, [-1] * nn, [2147483647] * nn
        si, sc, lcg, hs, bw = [0] * nn, [0.0] * nn, [0.0] * nn, [0.0] * nn, [0.0] * nn
        for i, nd in enumerate(tree):
            hs[i] = _f(nd.cover)
            bw[i] = _f(-model.params.learning_rate * nd.grad / (nd.cover + model.params.reg_lambda))
            if nd.is_leaf:
                sc[i] = _f(nd.weight)
                bw[i] = _f(nd.weight)
                continue
            key = (nd.owner, nd.record)
            if key not in thresholds:
                raise ConfigError(f"no exported threshold for {nd.owner}'s record {nd.record}")
            f, thr = thresholds[key]
            lc[i], rc[i] = nd.left, nd.right
            par[nd.left] = par[nd.right] = i
            si[i] = offset[nd.owner] + f
            sc[i] = thr
            lcg[i] = _f(nd.gain)
        trees.append({
            "base_weights": bw, "categories": [], "categories_nodes": [], "categories_segments": [],
            "categories_sizes": [], "default_left": [0] * nn, "id": ti, "left_children": lc,
            "loss_changes": lcg, "parents": par, "right_children": rc, "split_conditions": sc,
            "split_indices": si, "split_type": [0] * nn, "sum_hessian": hs,
            "tree_param": {"num_deleted": "0", "num_feature": str(len(names)), "num_nodes": str(nn),
                           "size_leaf_vector": "1"},
        })
    if model.params.objective == "binary:logistic":
        base = 1.0 / (1.0 + math.exp(-model.base))
        objective: dict[str, Any] = {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "1"}}
    else:
        base = model.base
        objective = {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}}
    n = len(trees)
    return {
        "learner": {
            "attributes": {}, "feature_names": names, "feature_types": ["float"] * len(names),
            "gradient_booster": {
                "model": {"cats": {"enc": [], "feature_segments": [], "sorted_idx": []},
                          "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(n)},
                          "iteration_indptr": list(range(n + 1)), "tree_info": [0] * n, "trees": trees},
                "name": "gbtree",
            },
            "learner_model_param": {"base_score": f"[{base:.17g}]", "boost_from_average": "0", "num_class": "0",
                                    "num_feature": str(len(names)), "num_target": "1"},
            "objective": objective,
        },
        "version": [3, 2, 0],
    }
