"""The params schema: paper defaults, and bad values rejected up front with the key, value and what is allowed."""

import pytest
import yaml

from marginlab.core.config import ConfigError, Params, load_params, validate_params


def test_defaults_are_the_paper_values():
    p = Params()
    assert (p.heads.adaface.m, p.heads.adaface.h, p.heads.adaface.s, p.heads.adaface.t_alpha) == (0.4, 0.333, 64.0, 0.01)
    assert (p.heads.cosface.s, p.heads.cosface.m) == (64.0, 0.4)
    assert (p.heads.arcface.s, p.heads.arcface.m) == (64.0, 0.5)
    assert (p.heads.curricularface.s, p.heads.curricularface.m) == (64.0, 0.5)
    mag = p.heads.magface
    assert (mag.s, mag.l_a, mag.u_a, mag.l_m, mag.u_m, mag.lambda_g) == (64.0, 10.0, 110.0, 0.45, 0.8, 35.0)
    assert (p.train.momentum, p.train.weight_decay, p.train.lr) == (0.9, 5e-4, 0.1)
    assert p.train.milestones == pytest.approx([12 / 26, 20 / 26, 24 / 26])
    a = p.augment
    assert (a.crop_p, a.lowres_p, a.photometric_p, a.flip_p) == (0.2, 0.2, 0.2, 0.5)
    assert p.data.channel_order == "BGR"


def _err(raw) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_params(raw, source="params.yaml")
    return str(exc.value)


@pytest.mark.parametrize(
    "raw, key, needle",
    [
        ({"heads": {"adaface": {"h": 0}}}, "heads.adaface.h", "greater than 0"),
        ({"heads": {"adaface": {"h": -0.3}}}, "heads.adaface.h", "-0.3"),
        ({"heads": {"cosface": {"m": -0.1}}}, "heads.cosface.m", "greater than or equal to 0"),
        ({"train": {"batch_size": 0}}, "train.batch_size", "greater than 0"),
        ({"train": {"batch_size": "big"}}, "train.batch_size", "'big'"),
        ({"model": {"backbone": "ir_42"}}, "model.backbone", "ir_18"),
        ({"runs": {"x": {"head": "sphereface"}}}, "runs.x.head", "adaface"),
        ({"runs": {"x": {"head": "cosface", "head_params": {"h": 0.3}}}}, "runs.x.head_params.h",
         "not a hyperparameter of head 'cosface'"),
        ({"runs": {"x": {"head": "adaface", "head_params": {"m": -1}}}}, "runs.x.head_params.m",
         "greater than or equal to 0"),
        ({"runs": {"x": {"head": "adaface", "train": {"epochs": 0}}}}, "runs.x.train.epochs", "greater than 0"),
        ({"runs": {"x": {"head": "adaface", "train": {"epoch": 3}}}}, "runs.x.train.epoch", "unknown key"),
        ({"runs": {"x": {"head": "adaface", "model": {"backbone": "ir_42"}}}}, "runs.x.model.backbone", "ir_18"),
        ({"runs": {"x": {"head": "magface", "head_params": {"l_a": 50, "u_a": 20}}}}, "runs.x.head_params",
         "u_a > l_a"),
        ({"runs": {}}, "runs", "the experiment grid is empty"),
        ({"heads": {"adaface": {"h": 5}}}, "heads.adaface.h", "less than or equal to 1"),
        ({"heads": {"arcface": {"m": 3.2}}}, "heads.arcface.m", "less than 3.14159"),
        ({"heads": {"curricularface": {"m": 4}}}, "heads.curricularface.m", "less than 3.14159"),
        ({"runs": {"x": {"head": "adaface", "head_params": {"m": 3.5}}}}, "runs.x.head_params.m", "less than 3.14159"),
        ({"heads": {"cosface": {"m": 2.5}}}, "heads.cosface.m", "less than or equal to 2"),
        ({"runs": {"x": {"head": "arcface", "proxy": "brisque"}}}, "runs.x", "only applies to head 'adaface'"),
        ({"runs": {"x": {"head": "adaface", "proxy": "entropy"}}}, "runs.x.proxy", "allowed: norm, brisque, p_yi"),
        ({"runs": {"a/b": {"head": "adaface"}}}, "runs", "is not allowed"),
        ({"trian": {"epochs": 3}}, "trian", "unknown key"),
        ({"train": {"epochs": 3, "lr_decay": 2}}, "train.lr_decay", "unknown key"),
        ({"augment": {"crop_p": 1.5}}, "augment.crop_p", "less than or equal to 1"),
        ({"data": {"source": "recordio"}}, "data", "data.train_rec"),
        ({"data": {"source": "s3"}}, "data.source", "'synthetic', 'recordio' or 'folders'"),
        ({"train": {"milestones": [0.8, 0.5]}}, "train.milestones", "increasing"),
        ({"heads": {"magface": {"l_a": 50, "u_a": 20}}}, "heads.magface", "u_a > l_a"),
    ],
)
def test_bad_values_name_key_value_and_allowed(raw, key, needle):
    msg = _err(raw)
    assert "params.yaml" in msg
    assert f"- {key}" in msg, msg
    assert needle in msg, msg


def test_all_problems_reported_at_once():
    msg = _err({"train": {"batch_size": -1, "epochs": 0}, "heads": {"adaface": {"h": 0}}})
    assert "train.batch_size" in msg and "train.epochs" in msg and "heads.adaface.h" in msg


def test_run_resolution_merges_defaults_and_overrides():
    p = validate_params(
        {
            "train": {"epochs": 4},
            "runs": {"ada_h022": {"head": "adaface", "head_params": {"h": 0.22}, "seed": 3, "train": {"epochs": 2}}},
        }
    )
    r = p.run("ada_h022")
    assert r.head_params == {"s": 64.0, "m": 0.4, "h": 0.22, "t_alpha": 0.01, "stats_init": "official"}
    assert r.train.epochs == 2 and r.seed == 3
    assert r.train.lr == 0.1  # shared default kept
    with pytest.raises(ConfigError, match="run 'nope' is not in params 'runs'"):
        p.run("nope")


def test_load_params_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    good = tmp_path / "p.yaml"
    good.write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    assert load_params(good, overrides={"train": {"batch_size": 8}}).train.batch_size == 8


def test_repository_params_yaml_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    presets = sorted((root / "configs").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"smoke", "paper-ablation-ir18", "paper-ir100-ms1mv2"}
    from pipeline_helpers import preset

    assert load_params(root / "params.yaml").preset == "default"
    for path in [root / "params.yaml", *presets]:
        params = load_params(path) if path.name == "params.yaml" else validate_params(preset(path.stem))
        assert params.runs, f"{path} defines no runs"
        assert params.preset == (path.stem if path.parent.name == "configs" else "default")


def test_timm_backbone_rejects_ir_width():
    msg = _err({"model": {"backbone": "timm/resnet18", "width": 0.25}})
    assert "- model" in msg and "IR-ResNets only" in msg
    assert validate_params({"model": {"backbone": "timm/resnet18"}}).model.width == 1.0


# Every character class a run name could smuggle into a shell command, a path or an option.
BAD_RUN_NAMES = [
    "x;touch PWNED", "a|b", "a&b", "a$b", "$(id)", "a`id`", "a'b", 'a"b', "a b", "a\tb", "a\nb", "-rf", "--help",
    "a/b", "..", ".hidden", "a.b", "a@b", "a:b", "a{b}", "a\\b", "", "a*", "a?", "a>b", "a<b", "a#b", "a!b",
    "a~b", "a%b", "a=b", "a+b", "a,b", "é", "a" * 101,
]


@pytest.mark.parametrize("name", BAD_RUN_NAMES)
def test_run_names_outside_the_allow_list_are_rejected(name):
    msg = _err({"runs": {name: {"head": "adaface"}}})
    assert "- runs" in msg and "is not allowed" in msg and "letters, digits" in msg


@pytest.mark.parametrize("name", ["adaface-s0", "A_1", "_x", "0", "9-a_b", "a" * 100])
def test_run_names_on_the_allow_list_are_accepted(name):
    assert name in validate_params({"runs": {name: {"head": "adaface"}}}).runs


def test_head_ranges_are_the_heads_own():
    """The schema derives every head hyperparameter's range from the head class: both reject the same values."""
    from marginlab.core.config import HEAD_PARAM_MODELS
    from marginlab.heads import HEADS, build_head

    for name, cls in HEADS.items():
        model = HEAD_PARAM_MODELS[name]
        assert set(model.model_fields) == set(cls.spec.hyperparameters), name
        for key, rng in cls.spec.hyperparameters.items():
            if hasattr(rng, "options"):  # a named choice: anything else is refused by both
                for probe in ("warm", 0.5):
                    with pytest.raises(ValueError):
                        build_head(name, 8, 4, **{key: probe})
                    _err({"heads": {name: {key: probe}}})
                for ok in rng.options:
                    assert validate_params({"heads": {name: {key: ok}}}).heads.model_dump()[name][key] == ok
                continue
            for bad in [v for v in (rng.low, rng.high) if v is not None]:
                open_end = (bad == rng.low and rng.low_open) or (bad == rng.high and rng.high_open)
                probe = bad if open_end else (bad - 1e-6 if bad == rng.low else bad + 1e-6)
                with pytest.raises(ValueError):
                    build_head(name, 8, 4, **{key: probe})
                _err({"heads": {name: {key: probe}}})


@pytest.mark.slow
@pytest.mark.parametrize("module", ["marginlab.core.config", "marginlab.report.render"])
def test_reading_params_and_rendering_the_report_load_no_torch(module):
    """The schema reads the heads' torch-free declarations (marginlab.head_specs), so a stage that only
    reads params or renders the report starts without torch's multi-second import."""
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'torchvision', 'timm', 'pyiqa') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
