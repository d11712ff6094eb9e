"""What a run leaves behind and prints: file modes, an unwritable --out, progress in a log file, timings."""
import io
import json
import os
import stat

import pytest

from shc.cli.train import main
from shc.train import run_pipeline
from shc.train.artifacts import write_json
from shc.progress import show_progress
from test_train_pipeline import Recorder, tiny


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_artifacts_follow_the_umask(tmp_path, umask_022):
    run_pipeline(tiny(tmp_path, centers="csq"))
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert len(files) >= 8
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o644}, modes
    os.umask(0o077)
    write_json(tmp_path / "private.json", {})
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600


def test_unwritable_out_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import shc.data

    def no_work(*args, **kwargs):
        raise AssertionError("the data was loaded before --out was checked")

    monkeypatch.setattr(shc.data, "load_dataset", no_work)
    (tmp_path / "file").write_text("")
    code = main(["--dataset", "synthetic", "--no-progress", "--out", str(tmp_path / "file" / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be written" in err and str(tmp_path / "file" / "run") in err
    assert err.count("\n") == 1


def test_progress_off_a_terminal_is_a_few_plain_lines(monkeypatch):
    log = io.StringIO()  # not a terminal, as a log file is not
    monkeypatch.setattr("sys.stderr", log)
    assert list(show_progress(range(1000), total=1000, desc="epoch 1")) == list(range(1000))
    assert log.getvalue() == ""  # a short loop says nothing
    assert list(show_progress(range(3), total=3, desc="encode query", every_s=0.0)) == [0, 1, 2]
    assert log.getvalue().splitlines() == [f"encode query: {i}/3, 0 s" for i in (1, 2, 3)]


def test_resumed_run_times_only_what_it_ran(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny(tmp_path, centers="csq", epochs=4), callback=Recorder(stop_at=("stage3", 3)))
    metrics = run_pipeline(tiny(tmp_path, centers="csq", epochs=4, resume=True))
    history, seconds = metrics["history"], metrics["seconds"]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and "eval_seconds" in history[1]
    assert seconds["stage3_eval"] == history[3]["eval_seconds"]  # epoch 2's evaluation ran before the resume
    assert seconds["stage3_eval"] <= seconds["stage3"]
    reused = run_pipeline(tiny(tmp_path, centers="csq", epochs=4))
    assert reused["seconds"]["stage3_eval"] == 0.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["seconds"] == reused["seconds"]


def test_stage2_says_when_it_compiles_the_center_kernels(tmp_path, capsys, monkeypatch):
    import shc.centers
    monkeypatch.setattr(shc.centers, "kernels_compiled", lambda: False)
    run_pipeline(tiny(tmp_path, centers="mds", epochs=1, test_map=1))
    assert "stage 2: compiling center kernels, once per install" in capsys.readouterr().out
    run_pipeline(tiny(tmp_path, name="csq", centers="csq", epochs=1, test_map=1))
    assert "compiling" not in capsys.readouterr().out  # csq centers need no kernels


def test_unwritable_out_fails_before_the_workers_start(tmp_path, capsys, monkeypatch):
    import shc.train.launch

    monkeypatch.setattr(shc.train.launch, "launch", lambda *a: pytest.fail("workers started"))
    (tmp_path / "file").write_text("")
    code = main(["--dataset", "synthetic", "--nproc", "2", "--out", str(tmp_path / "file" / "run")])
    assert code == 2 and "cannot be written" in capsys.readouterr().err
