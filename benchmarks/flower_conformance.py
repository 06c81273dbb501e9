"""Flower's own unit tests, run against hfl with only their imports rewritten.

    python -m benchmarks.flower_conformance --flower-src /tmp/flower-src

``--flower-src`` is a checkout (or ``git archive``) of github.com/adap/flower: the
directory holding ``framework/py/flwr`` (or ``flwr`` itself). The test modules
listed in :data:`MODULES` are copied to a temporary package, their imports are
rewritten (``flwr.X`` -> ``hfl.X``; ``from .X import`` inside ``flwr/server/strategy``
-> ``from hfl.server.strategy.X import``; Flower test helpers they import, such as
``flwr.server.client_manager_test.TestClientProxy``, are copied alongside and
rewritten the same way) and nothing else is changed. pytest runs them in a child
process; nothing of Flower's source is imported (the rewritten files are checked for
a leftover ``flwr`` import before running).

First the same files run against Flower's own source (``flwr.X`` kept, relative
imports made absolute, ``--flower-src`` on the path of that child process only:
``flower_reference_passed``; needs Flower's dependencies, the ``bench`` extra), then
against hfl; with ``flwr`` installed, ``flower_strategy_max_abs_diff`` compares each
strategy's aggregate over 5 rounds with flwr's on the same inputs. Prints
``flower_tests_collected``, ``flower_tests_passed``, ``flower_tests_failed``
and ``flower_tests_errors`` (JSON lines, ``benchmarks/_emit.py``) and one
``flower_module`` line per test module, with the failing test names.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from benchmarks._emit import emit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "flwr_conformance"

#: The Flower test modules of issue 19 (paths under ``flwr/``).
MODULES = [
    "client/numpy_client_test.py",
    "client/client_test.py",
    "common/parameter_test.py",
    "server/history_test.py",
    "server/server_test.py",
    "server/strategy/aggregate_test.py",
    "server/strategy/fedavg_test.py",
    "server/strategy/fedavgm_test.py",
    "server/strategy/fedadagrad_test.py",
    "serverapp/strategy/strategy_utils_test.py",
    "serverapp/strategy/fedavgm_test.py",
    "serverapp/strategy/fedopt_test.py",
]

_FROM_REL = re.compile(r"^(\s*)from\s+(\.+)([\w.]*)\s+import\s", re.M)
_FROM_ABS = re.compile(r"^(\s*)from\s+flwr((?:\.\w+)*)\s+import\s", re.M)
_IMPORT_ABS = re.compile(r"^(\s*)import\s+flwr((?:\.\w+)*)", re.M)


def find_flwr(src: Path) -> Path:
    """The ``flwr`` package directory inside ``src``."""
    for cand in (src / "framework" / "py" / "flwr", src / "py" / "flwr", src / "flwr", src):
        if (cand / "server" / "strategy" / "fedavg_test.py").is_file():
            return cand
    raise SystemExit(f"--flower-src {src}: no framework/py/flwr/server/strategy/fedavg_test.py there")


def _is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].endswith("_test")


def rewrite(text: str, pkg: list[str], helpers: set[str], target: str = "hfl") -> str:
    """Rewrite the imports of one Flower test module living in ``flwr/<pkg...>``.

    Test modules (``*_test``) stay test modules, in the temporary package; every
    other ``flwr`` module becomes the ``target`` module of the same path (``hfl``;
    ``flwr`` for the reference run against the installed Flower).
    """

    def rel(m: re.Match[str]) -> str:
        indent, dots, rest = m.group(1), m.group(2), m.group(3)
        base = pkg[: len(pkg) - (len(dots) - 1)]
        parts = [*base, *([p for p in rest.split(".") if p] if rest else [])]
        dotted = ".".join(parts)
        if _is_test_module(dotted):
            helpers.add(dotted)
            return f"{indent}from {PACKAGE}.{dotted} import "
        return f"{indent}from {'.'.join([target, *parts])} import "

    def absolute(m: re.Match[str]) -> str:
        indent, rest = m.group(1), m.group(2).lstrip(".")
        if rest and _is_test_module(rest):
            helpers.add(rest)
            return f"{indent}from {PACKAGE}.{rest} import "
        return f"{indent}from {target}{('.' + rest) if rest else ''} import "

    def imp(m: re.Match[str]) -> str:
        return f"{m.group(1)}import {target}{m.group(2)}"

    text = _FROM_REL.sub(rel, text)
    text = _FROM_ABS.sub(absolute, text)
    return _IMPORT_ABS.sub(imp, text)


def build(flwr: Path, out: Path, target: str = "hfl") -> list[str]:
    """Write the rewritten modules (and the test helpers they import) under ``out``."""
    todo = [m[: -len(".py")].replace("/", ".") for m in MODULES]
    done: set[str] = set()
    while todo:
        dotted = todo.pop()
        if dotted in done:
            continue
        done.add(dotted)
        parts = dotted.split(".")
        src = flwr.joinpath(*parts[:-1], parts[-1] + ".py")
        helpers: set[str] = set()
        text = rewrite(src.read_text(), parts[:-1], helpers, target)
        for line in text.splitlines():
            if target != "flwr" and re.match(r"\s*(from|import)\s+flwr\b", line):
                raise SystemExit(f"{dotted}: an import of flwr survived the rewrite: {line.strip()}")
        dst = out.joinpath(PACKAGE, *parts[:-1], parts[-1] + ".py")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
        todo.extend(helpers - done)
    for d in [out / PACKAGE, *(p for p in (out / PACKAGE).rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return [str(out.joinpath(PACKAGE, m)) for m in MODULES]


def run(flwr: Path, *, verbose: bool, target: str = "hfl",
        hfl_root: Path = ROOT) -> dict[str, dict[str, list[str]]]:
    """Run the rewritten tests; returns {module: {"passed": [...], "failed": [...], "errors": [...]}}."""
    with tempfile.TemporaryDirectory(prefix="flower-conformance-") as tmp:
        out = Path(tmp)
        files = build(flwr, out, target)
        junit = out / "junit.xml"
        # the reference run imports flwr from the Flower source itself; hfl's run cannot see it
        path = [str(out), str(flwr.parent)] if target == "flwr" else [str(out), str(hfl_root)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(out),
               "-o", "addopts=", "-o", "python_files=*_test.py", "--continue-on-collection-errors", f"--junitxml={junit}", *files]
        proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
        if verbose or not junit.exists():
            print(proc.stdout[-20000:], proc.stderr[-5000:], file=sys.stderr)
        if not junit.exists():
            raise SystemExit(f"pytest wrote no report (exit {proc.returncode})")
        modules: dict[str, dict[str, list[str]]] = {m: {"passed": [], "failed": [], "errors": []}
                                                    for m in MODULES}
        for case in ET.parse(junit).getroot().iter("testcase"):
            cls = case.get("classname", "") or case.get("name", "")  # a collection error: the module
            mod = cls.removeprefix(PACKAGE + ".").replace(".", "/") + ".py"
            if mod not in modules:  # a test class inside the module: drop the class name
                mod = "/".join(cls.removeprefix(PACKAGE + ".").split(".")[:-1]) + ".py"
            entry = modules.setdefault(mod, {"passed": [], "failed": [], "errors": []})
            name = case.get("name", "?")
            if case.find("error") is not None:
                entry["errors"].append(name)
            elif case.find("failure") is not None:
                entry["failed"].append(name)
            elif case.find("skipped") is not None:
                entry["failed"].append(name + " (skipped)")
            else:
                entry["passed"].append(name)
        return modules


STRATEGIES = ("FedAvg", "FedAvgM", "FedAdagrad", "FedAdam", "FedYogi", "FedProx")


def _case(name: str, seed: int) -> tuple[Any, list[Any], dict[str, object]]:
    """One strategy's case: its generator, the initial float32 model, its constructor options."""
    import numpy as np

    rng = np.random.default_rng(seed)
    init = [rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=5).astype(np.float32)]
    kw: dict[str, object] = {"proximal_mu": 0.1} if name == "FedProx" else {}
    if name == "FedAvgM":
        kw = {"server_learning_rate": 0.7, "server_momentum": 0.9}
    return rng, init, kw


def _client_models(rng: Any, weights: list[Any], clients: int) -> tuple[list[list[Any]], list[int]]:
    """A round's client models (``weights`` plus noise, float32) and example counts."""
    import numpy as np

    models = [[(a + rng.normal(scale=0.1, size=a.shape)).astype(np.float32) for a in weights]
              for _ in range(clients)]
    return models, [int(n) for n in rng.integers(1, 100, size=clients)]


def _max_abs_diff(xs: list[Any], ys: list[Any]) -> float:
    """The largest absolute difference between two models, in float64."""
    import numpy as np

    return max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(xs, ys, strict=True))


def strategy_diffs(rounds: int = 5, clients: int = 4, seed: int = 0) -> dict[str, float]:
    """Max |hfl - flwr| over ``rounds`` of each strategy's aggregate_fit on the same random results.

    Both libraries get the same initial parameters and, each round, the same client models
    (float32, the global model plus noise) and example counts, through their own
    ``FitRes``/``ndarrays_to_parameters``; sampling is not involved. Needs flwr installed.
    """
    import flwr.common as fc
    import flwr.server.strategy as fs

    import hfl.common as hc
    import hfl.server.strategy as hs

    out: dict[str, float] = {}
    for name in STRATEGIES:
        rng, init, kw = _case(name, seed)
        ours = getattr(hs, name)(initial_parameters=hc.ndarrays_to_parameters(init), **kw)
        ref = getattr(fs, name)(initial_parameters=fc.ndarrays_to_parameters(init), **kw)
        w_ours, w_ref, worst = init, init, 0.0
        for rnd in range(1, rounds + 1):
            models, ns = _client_models(rng, w_ref, clients)
            res_o = [(None, hc.FitRes(hc.Status(hc.Code.OK, ""), hc.ndarrays_to_parameters(m), n, {}))
                     for m, n in zip(models, ns, strict=True)]
            res_r = [(None, fc.FitRes(fc.Status(fc.Code.OK, ""), fc.ndarrays_to_parameters(m), n, {}))
                     for m, n in zip(models, ns, strict=True)]
            p_o, _ = ours.aggregate_fit(rnd, res_o, [])
            p_r, _ = ref.aggregate_fit(rnd, res_r, [])
            w_ours, w_ref = hc.parameters_to_ndarrays(p_o), fc.parameters_to_ndarrays(p_r)
            worst = max(worst, _max_abs_diff(w_ours, w_ref))
        out[name] = worst
    return out


class _Reply:
    """A reply as the strategies read it (content, has_error); Flower's tests use a Mock the same way."""

    def __init__(self, content: object) -> None:
        self.content = content

    def has_error(self) -> bool:
        return False

    def has_content(self) -> bool:
        return True


def serverapp_strategy_diffs(rounds: int = 5, clients: int = 4, seed: int = 0) -> dict[str, float]:
    """As :func:`strategy_diffs`, for the Message-API strategies' aggregate_train."""
    import flwr.app as fa
    import flwr.serverapp.strategy as fss

    import hfl.app as ha
    import hfl.serverapp.strategy as hss

    out: dict[str, float] = {}
    for name in STRATEGIES:
        rng, init, kw = _case(name, seed)
        pair = []
        for lib, strat in ((ha, hss), (fa, fss)):
            st = getattr(strat, name)(**kw)
            pair.append((lib, st))
        cur = [list(init), list(init)]
        worst = 0.0
        for rnd in range(1, rounds + 1):
            models, ns = _client_models(rng, cur[1], clients)
            for i, (lib, st) in enumerate(pair):
                arrays = lib.ArrayRecord(cur[i])
                if name == "FedAvgM" and st.current_arrays is None:  # what configure_train does
                    st.current_arrays = arrays
                if name in ("FedAdagrad", "FedAdam", "FedYogi"):
                    st.current_arrays = {k: a.numpy() for k, a in arrays.items()}
                replies = [_Reply(lib.RecordDict({"arrays": lib.ArrayRecord(m),
                                                  "metrics": lib.MetricRecord({"num-examples": n})}))
                           for m, n in zip(models, ns, strict=True)]
                agg, _ = st.aggregate_train(rnd, replies)
                cur[i] = agg.to_numpy_ndarrays()
            worst = max(worst, _max_abs_diff(cur[0], cur[1]))
        out[name] = worst
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flower-src", required=True, type=Path, help="Flower checkout (holds framework/py/flwr)")
    ap.add_argument("--verbose", action="store_true", help="show pytest's output")
    ap.add_argument("--hfl-root", type=Path, default=ROOT,
                    help="the tessera checkout whose hfl to test (default: this one; e.g. a git worktree "
                         "of an older commit for a before/after figure)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference run of the same files against the installed flwr")
    args = ap.parse_args(argv)
    flwr = find_flwr(args.flower_src.resolve())
    load = os.getloadavg()[0]
    if not args.no_reference:
        import importlib.util

        if importlib.util.find_spec("grpc") is None or importlib.util.find_spec("google.protobuf") is None:
            print("reference run skipped: Flower's dependencies are not installed (pip install "
                  "'.[bench]')", file=sys.stderr)
        else:
            ref = run(flwr, verbose=args.verbose, target="flwr")
            ref_passed = sum(len(m["passed"]) for m in ref.values())
            ref_total = sum(len(m["passed"]) + len(m["failed"]) + len(m["errors"]) for m in ref.values())
            emit("flower_reference_passed", ref_passed, "tests", collected=ref_total,
                 against="Flower's own source (--flower-src)", flower_src=str(flwr),
                 not_passed=sorted(f"{mod}::{t}" for mod, r in ref.items()
                                   for t in r["failed"] + r["errors"]))
    if not args.no_reference:
        import importlib.util

        if importlib.util.find_spec("flwr") is not None:
            import importlib.metadata

            for name, diff in strategy_diffs().items():
                emit("flower_strategy_max_abs_diff", diff, "abs", strategy=name, rounds=5, clients=4,
                     dtype="float32", flwr_version=importlib.metadata.version("flwr"))
            for name, diff in serverapp_strategy_diffs().items():
                emit("flower_serverapp_strategy_max_abs_diff", diff, "abs", strategy=name, rounds=5,
                     clients=4, dtype="float32", flwr_version=importlib.metadata.version("flwr"))
    modules = run(flwr, verbose=args.verbose, hfl_root=args.hfl_root.resolve())
    passed = sum(len(m["passed"]) for m in modules.values())
    failed = sum(len(m["failed"]) for m in modules.values())
    errors = sum(len(m["errors"]) for m in modules.values())
    collected = passed + failed + errors
    cond = {"flower_src": str(flwr), "hfl_root": str(args.hfl_root.resolve()), "modules": len(MODULES),
            "loadavg": round(load, 2)}
    for mod, r in modules.items():
        n = len(r["passed"]) + len(r["failed"]) + len(r["errors"])
        emit("flower_module", len(r["passed"]), "passed", module=mod, collected=n,
             failed=r["failed"], errors=r["errors"])
    emit("flower_tests_collected", collected, "tests", **cond)
    emit("flower_tests_passed", passed, "tests", **cond,
         pass_rate=round(passed / collected, 4) if collected else 0.0)
    emit("flower_tests_failed", failed, "tests", **cond)
    emit("flower_tests_errors", errors, "tests", **cond)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
