"""``train.identities``: one prepared training set, several training-set sizes (the scale study).

The option is validated up front (synthetic data: against ``data.synthetic.train_identities``), checked
against ``train.rec`` when a run starts, and a run with N identities trains an N-class head on the images
of labels 0..N-1 only (probe and validation split included).
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_train import N_CLASSES, PER_CLASS, make_params

from marginlab.core.config import ConfigError, validate_params
from marginlab.train.input.datasets import first_identities, train_val_split
from marginlab.train import load_model, run_train
from marginlab.train.runtime import derive_seed


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive looks for a repository from the working directory


def _config_error(raw) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_params(raw, source="params.yaml")
    return str(exc.value)


# --------------------------------------------------------------------------- validation
def test_identities_defaults_to_all_and_runs_override_it():
    p = validate_params({"train": {"identities": 60},
                         "runs": {"a": {"head": "adaface"}, "b": {"head": "cosface", "train": {"identities": 20}},
                                  "c": {"head": "cosface", "train": {"identities": None}}}})
    assert validate_params({}).train.identities is None
    assert [p.run(r).train.identities for r in ("a", "b", "c")] == [60, 20, None]
    assert (p.train_key("a", "identities"), p.train_key("b", "identities")) == ("train.identities", "runs.b.train.identities")


@pytest.mark.parametrize("raw, key, needle", [
    ({"runs": {"x": {"head": "adaface", "train": {"identities": 0}}}}, "runs.x.train.identities", "greater than 0"),
    ({"runs": {"x": {"head": "adaface", "train": {"identities": "half"}}}}, "runs.x.train.identities", "'half'"),
    ({"runs": {"x": {"head": "adaface", "train": {"identities": 101}}}}, "runs.x.train.identities",
     "101 identities requested but the synthetic training set has 100 (data.synthetic.train_identities)"),
    ({"train": {"identities": 300}, "data": {"synthetic": {"train_identities": 200}}, "runs": {"x": {"head": "adaface"}}},
     "train.identities", "the synthetic training set has 200"),
])
def test_bad_identities_name_the_key(raw, key, needle):
    msg = _config_error(raw)
    assert f"- {key}:" in msg and needle in msg, msg


def test_real_data_is_not_checked_against_the_synthetic_count():
    p = validate_params({"data": {"source": "recordio", "train_rec": "data/x/train.rec"},
                         "runs": {"x": {"head": "adaface", "train": {"identities": 5000}}}})
    assert p.run("x").train.identities == 5000


def test_first_identities_by_label_order():
    labels = np.array([0, 0, 1, 2, 2, 2, 1, 3])
    assert first_identities(labels, None).tolist() == list(range(8))
    assert first_identities(labels, 2).tolist() == [0, 1, 2, 6]
    assert first_identities(labels, 4).tolist() == list(range(8))
    assert first_identities(labels, 9).tolist() == list(range(8))  # the caller checks the count
    with pytest.raises(ValueError, match=">= 1"):
        first_identities(labels, 0)


# --------------------------------------------------------------------------- training
def test_run_trains_on_the_first_n_identities_only(tiny_prepared, tmp_path):
    n = 3
    params = make_params(tiny_prepared, tmp_path, train={"epochs": 1, "identities": n, "val_fraction": 0.25,
                                                        "probe_size": 12})
    summary = run_train(params, "cos")
    run = tmp_path / "runs/cos"
    saved = json.loads((run / "train_summary.json").read_text())
    assert saved == summary
    assert summary["num_classes"] == n and summary["train_identities"] == n
    assert summary["train_images"] == n * 9 and summary["val_images"] == n * 3  # 12 per identity, 25 % held out
    _, head, _ = load_model(run)
    assert head.weight.shape[0] == n
    probe = pd.read_parquet(run / "probe/epoch_00.parquet")
    assert len(probe) == 2 * 12 and set(probe["label"]) <= set(range(n)) and (probe["index"] < n * PER_CLASS).all()
    # the validation split is train_val_split of the kept identities' images, and the probe avoids it
    labels = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    kept = first_identities(labels, n)
    _, val_pos = train_val_split(labels[kept], 0.25, derive_seed(3, 0))
    assert not set(probe["index"]) & set(kept[val_pos].tolist())
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
    assert checkpoint["fingerprint"]["resolved_run"]["train"]["identities"] == n
    assert checkpoint["fingerprint"]["num_classes"] == n


def test_too_many_identities_fail_at_run_start_naming_key_and_file(tiny_prepared, tmp_path):
    params = make_params(tiny_prepared, tmp_path, runs={"cos": {"head": "cosface", "train": {"identities": N_CLASSES + 1}}})
    with pytest.raises(ConfigError, match=rf"runs\.cos\.train\.identities = 9, but .*train\.rec holds {N_CLASSES} identities"):
        run_train(params, "cos")
    assert not (tmp_path / "runs/cos/checkpoint.pt").exists()
