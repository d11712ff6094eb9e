"""The method registry: names, options (defaults, types, refusals), the --centers alias, the published SHC, and
the loop's plumbing for a method's per-epoch hook and checkpointed state (resume ends where an uninterrupted
run ends)."""
import json

import numpy as np
import pytest
import torch

from shc.cli.train import main
from shc.methods import REGISTRY, CENTER_METHODS, get_method, list_methods
from shc.methods.base import Method, resolve_options
from shc.train import TrainConfig, run_pipeline

TINY = dict(dataset="synthetic", data_options=dict(sizes=(8, 3, 8), image_size=16), bits=16, epochs=3,
            classify_epochs=2, batch_size=16, test_map=3, eval_batch_size=64, threads=1, progress=False)


def test_names_and_unknown_method():
    assert list_methods()[:3] == ["shc", "mds", "csq"] and set(CENTER_METHODS) <= set(list_methods())
    assert all(get_method(name).name == name for name in list_methods())
    with pytest.raises(ValueError, match="unknown method 'nope'; choose one of shc, mds, csq"):
        get_method("nope")


class Toy(Method):
    name = "toy"
    options = {"alpha": 0.5, "steps": 3, "kind": "a", "flag": False}
    choices = {"kind": ("a", "b")}


def test_options_defaults_types_and_refusals():
    assert resolve_options(Toy, {}) == Toy.options
    assert resolve_options(Toy, {"alpha": 2, "kind": "b", "flag": True}) == {"alpha": 2.0, "steps": 3, "kind": "b",
                                                                             "flag": True}
    with pytest.raises(ValueError, match="method toy takes no option 'beta'; it takes: alpha, flag, kind, steps"):
        resolve_options(Toy, {"beta": 1})
    for key, value in (("alpha", "x"), ("alpha", float("nan")), ("steps", 1.5), ("steps", True), ("flag", 1)):
        with pytest.raises(ValueError, match=f"option {key} takes "):
            resolve_options(Toy, {key: value})
    with pytest.raises(ValueError, match="kind must be one of a, b"):
        resolve_options(Toy, {"kind": "c"})


def test_config_resolves_method_centers_alias_and_center_options():
    cfg = TrainConfig(**TINY, method="shc", method_options={"polish_passes": 0}).resolved()
    assert (cfg.method, cfg.centers) == ("shc", "shc")
    assert cfg.method_options["polish_passes"] == 0 and cfg.method_options["lambd"] == 1e-4
    assert TrainConfig(**TINY, centers="mds").resolved().method == "mds"
    assert TrainConfig(**TINY, lambd=0.5).resolved().method_options["lambd"] == 0.5  # --lambd feeds the option
    given = TrainConfig(**TINY, method_options={"lambd": 0.25, "multilabel": "first"}).resolved()
    assert (given.lambd, given.multilabel_centers) == (0.25, "first")  # the record agrees with what trains
    with pytest.raises(ValueError, match="disagree"):
        TrainConfig(**TINY, method="csq", centers="mds").resolved()
    with pytest.raises(ValueError, match="method csq takes no option 'eta'"):
        TrainConfig(**TINY, method="csq", method_options={"eta": 1.0}).resolved()


def test_make_centers_takes_the_optimiser_settings():
    from shc.centers import make_centers, shc_centers
    rng = np.random.default_rng(0)
    s = rng.random((6, 6))
    s = (s + s.T) / 2
    np.fill_diagonal(s, 1)
    published = make_centers("shc", 6, 16, similarity=s, seed=1, polish_passes=0)
    np.testing.assert_array_equal(published, shc_centers(s, 16, seed=1, polish_passes=0))
    with pytest.raises(TypeError, match="csq takes none"):
        make_centers("csq", 6, 16, polish_passes=0)


def test_published_shc_is_recorded_and_recomputes_stage2(tmp_path):
    out = tmp_path / "run"
    first = run_pipeline(TrainConfig(**TINY, out=str(out)))
    published = run_pipeline(TrainConfig(**TINY, out=str(out), method_options={"polish_passes": 0}))
    assert first["method"] == published["method"] == "shc"
    assert published["method_options"]["polish_passes"] == 0 and first["method_options"]["polish_passes"] == 100
    assert first["fingerprints"]["stage2"] != published["fingerprints"]["stage2"]
    assert json.loads((out / "metrics.json").read_text())["method_options"]["polish_passes"] == 0


@pytest.mark.parametrize("argv, message", [
    (["--method", "nope"], "unknown method 'nope'; choose one of shc, mds, csq"),
    (["--method", "csq", "--method-option", "polish_passes=0"], "method csq takes no option 'polish_passes'"),
    (["--method", "shc", "--method-option", "eta=fast"], "method shc: option eta takes a finite number"),
    (["--method-option", "eta"], "--method-option takes KEY=VALUE"),
    (["--method", "csq", "--centers", "mds"], "disagree"),
])
def test_cli_method_errors_exit_2_before_work(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(["--dataset", "synthetic", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (out / "metrics.json").exists()


# ------------------------------------------------------------------------------------------- the loop's plumbing
class Counting(Method):
    """A method with state: counts its steps and epochs (checkpointed) and pulls u towards zero."""
    name = "counting"
    options = {"scale": 1.0}

    def __init__(self, ctx, options=None):
        super().__init__(ctx, options)
        self.steps = torch.zeros((), dtype=torch.int64)
        self.seen = torch.zeros(ctx.train_size, dtype=torch.int64)
        self.epochs_started = []

    def start_epoch(self, model, split, epoch, batch_size):
        self.epochs_started.append(epoch)

    def loss(self, outputs, labels, indices):
        self.steps += 1
        self.seen[indices.cpu()] += 1
        return self.opts["scale"] * outputs.pow(2).mean()

    def state_dict(self):
        return {"steps": self.steps.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state):
        self.steps.copy_(state["steps"])
        self.seen.copy_(state["seen"])


def test_method_state_is_checkpointed_and_resumed(tmp_path, monkeypatch):
    import shc.methods.base as base
    monkeypatch.setitem(REGISTRY, "counting", f"{__name__}:Counting")
    made = []
    original = base.Method.__init__

    def remember(self, ctx, options=None):
        original(self, ctx, options)
        made.append(self)
    monkeypatch.setattr(base.Method, "__init__", remember)

    def stop_after_two(stage, record):
        if stage == "stage3" and record["epoch"] == 2:
            raise KeyboardInterrupt

    cfg = dict(TINY, method="counting", epochs=3)
    whole = run_pipeline(TrainConfig(**cfg, out=str(tmp_path / "whole")))
    steps_whole = int(made[-1].steps)
    assert made[-1].epochs_started == [0, 1, 2] and whole["method"] == "counting" and whole["centers"] is None
    assert not (tmp_path / "whole" / "centers.npy").exists()  # no stage 1 or 2 for this method
    assert (made[-1].seen == 3).all()  # every training image once per epoch

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(TrainConfig(**cfg, out=str(tmp_path / "cut")), callback=stop_after_two)
    resumed = run_pipeline(TrainConfig(**cfg, out=str(tmp_path / "cut"), resume=True))
    assert made[-1].epochs_started == [2]  # the resumed run trains the last epoch only
    assert int(made[-1].steps) == steps_whole and (made[-1].seen == 3).all()  # the state came back
    for name in ("query_codes", "db_codes"):
        np.testing.assert_array_equal(np.load(tmp_path / "whole" / "codes" / f"{name}.npy"),
                                      np.load(tmp_path / "cut" / "codes" / f"{name}.npy"))
    assert resumed["mAP"] == whole["mAP"]
