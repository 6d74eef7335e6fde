"""Benchmark of params validation on large and hostile files (issue #21: any file of up to 1 MB validates
or fails in under 2 s).

    python bench/bench_config.py [--rounds 3] [--runs 15000]

Writes into a temporary folder: the default params.yaml with a grid of ``--runs`` runs (each with its own
``train`` override, ~1 MB), the same with every run sharing one override, a 9-level billion-laughs file,
and 400,000 nested brackets; times :func:`marginlab.core.config.load_params` on each (median of ``--rounds``,
path policy included) and the parts of the 1 MB load: PyYAML's ``safe_load`` (libyaml parser) beside :func:`marginlab.core.safe_yaml.load_bounded`
(same result, asserted), and validation alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from marginlab.core.config import ConfigError, load_params, validate_params
from marginlab.core.safe_yaml import load_bounded

ROOT = Path(__file__).resolve().parents[1]


def files(folder: Path, runs: int) -> dict[str, Path]:
    default = (ROOT / "params.yaml").read_text()
    head = default.split("runs:\n")[0] + "runs:\n"
    own = "".join(f"  r{i}-s{i % 5}: {{head: cosface, seed: {i % 5}, tags: [main], train: {{epochs: {1 + i % 3}}}}}\n"
                  for i in range(runs))
    shared = "".join(f"  r{i}-s{i % 5}: {{head: cosface, seed: {i % 5}, tags: [main]}}\n" for i in range(runs))
    bomb = ["  l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    bomb += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    texts = {
        "grid_own_overrides": head + own,
        "grid_same_overrides": head + shared,
        "billion_laughs": default.replace("seed: 42", "seed: 42\n_a:\n" + "\n".join(bomb), 1).replace(
            "runs:\n", "runs:\n  bomb: {head: adaface, train: {milestones: *l8}}\n", 1),
        "nested_400k": "seed: " + "[" * 400_000 + "]" * 400_000,
    }
    out = {}
    for name, text in texts.items():
        out[name] = folder / f"{name}.yaml"
        out[name].write_text(text)
    return out


def timed(fn, rounds: int) -> tuple[float, str]:
    times, outcome = [], ""
    for _ in range(rounds):
        start = time.perf_counter()
        try:
            fn()
            outcome = "valid"
        except ConfigError as err:
            outcome = str(err).splitlines()[0][-70:]
        times.append(time.perf_counter() - start)
    return statistics.median(times), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=15_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in files(Path(tmp), args.runs).items():
            seconds, outcome = timed(lambda: load_params(path, root=ROOT), args.rounds)
            print(f"{name:22s} {path.stat().st_size / 1e6:6.2f} MB  {seconds:6.2f} s  {outcome}")
        big = (Path(tmp) / "grid_own_overrides.yaml").read_text()
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        raw = load_bounded(big)
        assert raw == yaml.load(big, Loader=loader)  # noqa: S506 - the safe loader
        print(f"{'  yaml.safe_load (libyaml)':22s}  {timed(lambda: yaml.load(big, Loader=loader), args.rounds)[0]:6.2f} s")  # noqa: S506
        print(f"{'  load_bounded':22s}  {timed(lambda: load_bounded(big), args.rounds)[0]:6.2f} s")
        print(f"{'  validation alone':22s}  {timed(lambda: validate_params(raw), args.rounds)[0]:6.2f} s")

if __name__ == "__main__":
    main()
