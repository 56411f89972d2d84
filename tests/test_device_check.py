"""benchmarks/device_check.{sh,py}, the one-command GPU check, on the CPU: the shell scripts
parse, every measurement runs at the small sizes of ``--quick`` and gives every key of its
result, the driver writes one JSON, and a section stopped at its time limit still reports."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
if not (BENCH / "device_check.py").exists():
    pytest.skip("benchmarks/ not present beside the tests", allow_module_level=True)
sys.path.insert(0, str(BENCH))

import device_check as dc  # noqa: E402

SCRIPTS = ["device_check.sh", "fetch_device_wheels.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_shell_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(BENCH / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck"):
        r = subprocess.run(
            ["shellcheck", "-S", "warning", str(BENCH / script)], capture_output=True, text=True
        )
        assert r.returncode == 0, r.stdout


def test_the_wheels_folder_is_ignored():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(
        ["git", "check-ignore", "-q", ".whl/x.whl"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, "the carried wheels must not be committed"


@pytest.mark.slow
@pytest.mark.parametrize("name", dc.SECTIONS)
def test_each_section_gives_every_key_on_the_cpu(name):
    rec = dc.Recorder()
    dc.FUNCTIONS[name](dc.QUICK[name], "cpu", rec)
    missing = [k for k in dc.KEYS[name] if k not in rec.data]
    assert not missing, missing
    if name == "cnn_throughput":
        from xsr.nn.sr import SR_MODELS

        rows = rec.data["rows"]
        assert {(r["network"], r["precision"]) for r in rows} == {
            (n, p) for n in SR_MODELS for p in ("fp32", "bf16")
        }
        assert all("megapixels_per_s" in r for r in rows), [r for r in rows if "error" in r]
        fp32 = [r["max_rel_conservation_error"] for r in rows if r["precision"] == "fp32"]
        assert max(fp32) < 1e-5
    if name == "dip_ensemble":
        probes = rec.data["probe"]
        assert all("ms_per_iteration" in p for p in probes), probes
        names = {p["variant"] for p in probes}
        assert names == {v["name"] for v in dc._dip_variants("cpu")}
        assert {f["generator"] for f in rec.data["full"]} == {"study", "decoder"}
    if name == "distributed_scaling":
        rows = rec.data["rows"]
        assert [r["workers"] for r in rows] == dc.QUICK[name]["workers"]
        assert rows[0]["speedup_over_1"] == 1.0
    if "max_rel_conservation_error" in dc.KEYS[name]:
        assert rec.data["max_rel_conservation_error"] < 1e-12


def _junit(tmp_path: Path) -> Path:
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="0" failures="1" '
        'skipped="1" tests="4" time="12.5">'
        '<testcase classname="tests.test_conserve" name="test_enforce_on_gpu[a]" time="0.1"/>'
        '<testcase classname="tests.test_conserve" name="test_enforce_on_gpu[b]" time="0.1">'
        '<skipped message="needs a CUDA GPU"/></testcase>'
        '<testcase classname="tests.test_api" name="test_x" time="0.1">'
        '<failure message="boom"/></testcase>'
        '<testcase classname="tests.test_api" name="test_y" time="0.1"/>'
        "</testsuite></testsuites>"
    )
    return xml


def test_the_pytest_report_is_summarised(tmp_path):
    s = dc.summarise_junit(_junit(tmp_path))
    assert (s["tests"], s["passed"], s["failures"], s["skipped"]) == (4, 2, 1, 1)
    assert s["failed_tests"] == ["tests.test_api::test_x"]
    assert s["cuda_named_tests"] == {"passed": 1, "failed": 0, "skipped": 1}
    assert s["seconds"] == 12.5


@pytest.mark.slow
def test_the_driver_writes_one_json(tmp_path):
    steps = tmp_path / "steps.tsv"
    steps.write_text("install\tok\t0\tnothing missing\ntests\ttimed_out\t140\tlimit 140 s\n")
    out = tmp_path / "dc.json"
    cmd = [sys.executable, str(BENCH / "device_check.py"), "--cpu", "--quick"]
    cmd += ["--sections", "bicubic_global_x8", "--out", str(out), "--steps", str(steps)]
    cmd += ["--junit", str(_junit(tmp_path))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert printed == json.loads(out.read_text())
    assert set(printed) == {"device_check", "machine", "steps", "tests", "sections"}
    for key in ("date", "torch", "torch_cuda", "gpu", "cpu_count", "xsr"):
        assert key in printed["machine"]
    assert [s["step"] for s in printed["steps"]] == ["install", "tests"]
    assert printed["tests"]["failures"] == 1
    sec = printed["sections"]["bicubic_global_x8"]
    assert sec["status"] == "ok", sec
    assert "missing_keys" not in sec
    assert printed["device_check"]["sections_ok"] == ["bicubic_global_x8"]


@pytest.mark.slow
def test_a_section_stopped_at_its_limit_still_reports(tmp_path):
    # the full-size network throughput on the CPU cannot finish in 8 s: its child process is
    # stopped there, and what it recorded before (its configuration at least) comes back
    args = argparse.Namespace(cpu=True, quick=False)
    entry = dc.run_section("cnn_throughput", args, limit=8.0)
    assert entry["status"] == "timed_out", entry
    assert entry["result"]["config"] == dc.FULL["cnn_throughput"]
    assert "stopped after 8 s" in entry["error"]
    assert dc.run_section("cnn_throughput", args, limit=1.0)["status"] == "skipped"
