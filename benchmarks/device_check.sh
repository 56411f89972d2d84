#!/usr/bin/env bash
# The one-command GPU check (issue 13): on a machine with a CUDA GPU, within 8 minutes,
#
#   1. installs what the image lacks from the wheels carried in .whl/ (made here by
#      benchmarks/fetch_device_wheels.sh), without network, into /tmp/xsr-site;
#   2. uses xsr from this working tree (PYTHONPATH; nothing is built or installed);
#   3. prints torch, CUDA and the GPU;
#   4. runs the whole test suite, on CUDA: xsr's device option defaults to "auto", which
#      picks the GPU whenever torch sees one, and the tests that need CUDA (skipped elsewhere)
#      run there;
#   5. runs benchmarks/device_check.py (the measurements of the issue) and prints its JSON,
#      with the outcome of every step, last.
#
# Every step has its own time limit; a step that fails or runs out of time is recorded in the
# JSON and the next step still runs.  Files (at most 8, for the device tool): $OUT if set,
# else out/device_check/ in the repository:
#   device_check.json  the JSON printed at the end     steps.tsv    step, status, seconds, note
#   install.log        pip's output                    info.log     torch/CUDA/nvidia-smi
#   pytest.log         the test run (-q -rfEs)         junit.xml    pytest's report
#   device_check.log   the measurements' progress
#
# Usage (from the device tool: carry [".whl"], timeout_s 600):
#   bash benchmarks/device_check.sh
# Options:  --no-tests  --no-bench  --cpu --quick (smoke run without a GPU: no tests, small
# sizes).  Environment: DEVICE_CHECK_BUDGET (seconds in all, default 465),
# DEVICE_CHECK_TEST_S (most seconds for the tests, default 140), DEVICE_CHECK_PYTEST_WORKERS
# (pytest-xdist processes, default 6; 0: one process).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
out=${OUT:-$root/out/device_check}
mkdir -p "$out"
budget=${DEVICE_CHECK_BUDGET:-465}
test_s=${DEVICE_CHECK_TEST_S:-140}
workers=${DEVICE_CHECK_PYTEST_WORKERS:-6}
run_tests=1
run_bench=1
bench_flags=()
for a in "$@"; do
  case "$a" in
    --no-tests) run_tests=0 ;;
    --no-bench) run_bench=0 ;;
    --cpu | --quick) bench_flags+=("$a") ;;
    *)
      echo "unknown option $a (use --no-tests, --no-bench, --cpu, --quick)" >&2
      exit 2
      ;;
  esac
done
if [[ " ${bench_flags[*]-} " == *" --cpu "* ]]; then run_tests=0; fi
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg
py=${PYTHON:-python3}
start=$SECONDS
steps=$out/steps.tsv
: >"$steps"

left() { echo $((budget - (SECONDS - start))); }
# record NAME STATUS SECONDS NOTE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//$'\t'/ }" >>"$steps"; }
status_of() { # exit status of `timeout` -> ok / failed (N) / timed_out
  case "$1" in
    0) echo ok ;;
    124 | 137) echo timed_out ;;
    *) echo "failed ($1)" ;;
  esac
}

# ---- 1. the packages the image lacks (only those missing: a machine that has them all, or
#         a development virtualenv, installs nothing)
t=$SECONDS
missing=$("$py" - <<'EOF'
import importlib.util
mods = ["dask", "distributed", "cf_xarray", "pooch", "netCDF4", "zarr", "scoringrules",
        "importlinter"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
EOF
)
site=/tmp/xsr-site
if [ -z "$missing" ]; then
  record install ok 0 "nothing missing"
elif ! ls .whl/*.whl >/dev/null 2>&1; then
  record install "failed" 0 "missing: $missing; no wheels in .whl/ (run benchmarks/fetch_device_wheels.sh here and carry .whl)"
else
  timeout -k 10 120 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$site" .whl/*.whl >"$out/install.log" 2>&1
  rc=$?
  record install "$(status_of $rc)" $((SECONDS - t)) "missing before: $missing"
  if [ $rc -eq 0 ]; then
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    # tests that start Python with a PYTHONPATH of their own (tests/test_architecture.py)
    # find the packages through a .pth file; only on the device machine (OUT set), whose
    # image is thrown away after the session
    purelib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    if [ -n "${OUT:-}" ] && [ -w "$purelib" ]; then
      echo "$site" >"$purelib/xsr_device_check.pth"
    fi
  fi
fi
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}

# ---- 2./3. xsr from the tree, torch, CUDA, the GPU
t=$SECONDS
(
  timeout -k 5 60 "$py" -c '
import sys, torch, xsr
print("python", sys.version.split()[0], sys.executable)
print("xsr", xsr.__version__, xsr.__file__)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
    print("cudnn", torch.backends.cudnn.version())
print("device auto ->", xsr.options.resolve_device("auto"))
'
  rc=$?
  command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi
  exit $rc
) >"$out/info.log" 2>&1
rc=$?
record info "$(status_of $rc)" $((SECONDS - t)) "$(grep -E '^(torch|gpu) ' "$out/info.log" | tr '\n' ';')"
cat "$out/info.log"

# ---- 4. the test suite (on CUDA where there is one), stopped with SIGINT at its limit so
#         that pytest still writes its summary and report
if [ $run_tests -eq 1 ]; then
  t=$SECONDS
  limit=$test_s
  if [ $run_bench -eq 1 ] && [ $(($(left) - 290)) -lt "$limit" ]; then
    limit=$(($(left) - 290))
  fi
  if [ "$limit" -lt 30 ]; then
    record tests skipped 0 "only ${limit} s left for them"
  else
    xdist=()
    if [ "$workers" -gt 0 ] && "$py" -c 'import xdist' 2>/dev/null; then
      xdist=(-n "$workers" --dist loadfile)
    fi
    timeout -s INT -k 20 "$limit" "$py" -m pytest -q -rfEs -p no:cacheprovider "${xdist[@]}" \
      --junitxml="$out/junit.xml" tests >"$out/pytest.log" 2>&1
    rc=$?
    case $rc in
      0) st=ok ;;
      1) st=failed ;;
      2 | 124 | 130 | 137) st=timed_out ;;
      *) st="failed ($rc)" ;;
    esac
    record tests "$st" $((SECONDS - t)) "limit ${limit} s; $(tail -n 1 "$out/pytest.log")"
    tail -n 40 "$out/pytest.log"
  fi
else
  record tests skipped 0 "--no-tests or --cpu"
fi

# ---- 5. the measurements, then the JSON
if [ $run_bench -eq 1 ]; then
  t=$SECONDS
  b=$(($(left) - 10))
  args=(--budget "$b" --out "$out/device_check.json" --steps "$steps")
  [ -f "$out/junit.xml" ] && args+=(--junit "$out/junit.xml")
  timeout -k 10 $((b + 5)) "$py" benchmarks/device_check.py "${bench_flags[@]}" "${args[@]}" \
    >"$out/device_check.stdout" 2>"$out/device_check.log"
  rc=$?
  record bench "$(status_of $rc)" $((SECONDS - t)) "budget ${b} s"
  rm -f "$out/device_check.stdout" # the same JSON as device_check.json
else
  record bench skipped 0 "--no-bench"
fi

# the JSON: device_check.py's, with the steps up to now; or, without it, the steps alone
"$py" - "$out" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
sys.path.insert(0, "benchmarks")
from device_check import read_steps, summarise_junit

path = out / "device_check.json"
result = json.loads(path.read_text()) if path.exists() else {"device_check": "not run or failed"}
result["steps"] = read_steps(out / "steps.tsv")
if "tests" not in result and (out / "junit.xml").exists():
    result["tests"] = summarise_junit(out / "junit.xml")
path.write_text(json.dumps(result, indent=1, default=str) + "\n")
print(json.dumps(result, indent=1, default=str))
EOF
echo "device_check.sh: $((SECONDS - start)) s in all; files in $out"
