"""marginlab.core.timing: the stage wall-time record."""

import json
import time

import pytest

from marginlab.core.timing import TIMING_FILE, StageTimer


def test_stage_timer_writes_elapsed_and_facts(tmp_path):
    timer = StageTimer("quality")
    time.sleep(0.05)
    record = timer.write(tmp_path / "q" / TIMING_FILE, device="cpu", images=12)
    on_disk = json.loads((tmp_path / "q" / TIMING_FILE).read_text())
    assert on_disk == record
    assert on_disk["stage"] == "quality" and on_disk["device"] == "cpu" and on_disk["images"] == 12
    assert 0.05 <= on_disk["wall_time_s"] < 5
    assert on_disk["started_utc"] <= on_disk["finished_utc"] and on_disk["started_utc"].endswith("Z")
    assert on_disk["torch_threads"] >= 1 and isinstance(on_disk["host"], str)
    assert [p.name for p in (tmp_path / "q").iterdir()] == [TIMING_FILE]  # no temporary left behind


def test_stage_timer_measures_from_creation(tmp_path):
    timer = StageTimer("analyze")
    time.sleep(0.1)
    first = timer.write(tmp_path / "a.json")
    time.sleep(0.1)
    second = timer.write(tmp_path / "b.json")
    assert second["wall_time_s"] == pytest.approx(first["wall_time_s"] + 0.1, abs=0.08)
