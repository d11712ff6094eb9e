"""shc-eval end to end: JSON == Report.to_dict(), PNG written, one-line errors with exit code 2."""
import json
import subprocess
import sys

import numpy as np
import pytest

from shc.cli.eval import main
from shc.metrics import evaluate


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.choice([-1, 1], (5, 32))
    ql, dl = rng.integers(0, 5, 30), rng.integers(0, 5, 400)
    qc = centers[ql] * np.where(rng.random((30, 32)) < 0.1, -1, 1)
    dc = centers[dl] * np.where(rng.random((400, 32)) < 0.1, -1, 1)
    np.save(tmp_path / "qc.npy", qc.astype(np.float32))
    np.savez(tmp_path / "db.npz", codes=dc, labels=dl)
    np.savetxt(tmp_path / "ql.txt", ql, fmt="%d")
    return tmp_path, (qc, dc, ql, dl)


def _args(tmp):
    return ["--query-codes", str(tmp / "qc.npy"), "--db-codes", str(tmp / "db.npz:codes"),
            "--query-labels", str(tmp / "ql.txt"), "--db-labels", str(tmp / "db.npz:labels")]


def test_cli_json_matches_api(files, capsys):
    tmp, (qc, dc, ql, dl) = files
    rc = main(_args(tmp) + ["--topk", "10", "100", "all", "--ties", "expected", "--json", str(tmp / "out/r.json"),
                            "--pr-curve", str(tmp / "pr.png"), "--threads", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "mAP@k" in out and "P@H<=2" in out
    got = json.loads((tmp / "out/r.json").read_text())
    want = evaluate(qc, dc, ql, dl, topk=("10", "100", "all"), ties="expected", threads=2).to_dict()
    assert list(got["mAP"]) == ["10", "100", "all"]
    for key in want:
        if key != "seconds":
            assert got[key] == want[key], key
    for key in ("ties", "bits", "n_query", "n_database", "queries_without_relevant", "pr_curve_radius",
                "pr_curve_rank", "seconds", "precision_at_radius", "recall_at_radius"):
        assert key in got
    assert (tmp / "pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("change, message", [
    (lambda a, t: a.__setitem__(1, str(t / "missing.npy")), "no such file"),
    (lambda a, t: a.extend(["--topk", "0"]), "positive"),
    (lambda a, t: a.extend(["--topk", "many"]), "positive integers or 'all'"),
    (lambda a, t: a.__setitem__(3, str(t / "qc.npy")), "--db-labels {t}/db.npz:labels: 400 class ids but 30"),
    (lambda a, t: a.__setitem__(3, str(t / "db.npz")), "holds 2 arrays"),
])
def test_cli_errors_are_one_line_exit_2(files, capsys, change, message):
    tmp, _ = files
    args = _args(tmp)
    change(args, tmp)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shc-eval: error:") and message.format(t=tmp) in err and "\n" not in err


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda a, t: a.extend(["--json", _write(t / "f", "x") + "/r.json"]), "--json {t}/f/r.json: {t}/f is a file"),
    (lambda a, t: a.extend(["--pr-curve", _write(t / "f", "x") + "/a/p.png"]), "--pr-curve {t}/f/a/p.png: {t}/f is a"),
    (lambda a, t: a.extend(["--json", str(t)]), "--json {t}: is a directory"),
    (lambda a, t: a.__setitem__(3, str(t)), "{t}: is a directory, not a file"),
    (lambda a, t: a.__setitem__(3, _write(t / "garbage.npy", "not numpy")), "{t}/garbage.npy: not a .npy file"),
    (lambda a, t: a.__setitem__(5, _write(t / "empty.txt", "")), "{t}/empty.txt: the file is empty"),
    (lambda a, t: a.extend(["--threads", "100000"]), "--threads must be an integer from 1 to"),
    (lambda a, t: a.extend(["--threads", "0"]), "--threads must be an integer from 1 to"),
])
def test_cli_file_and_thread_errors_say_what_is_wrong(files, capsys, change, message):
    tmp, _ = files
    args = _args(tmp)
    change(args, tmp)
    assert main(args + ["--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shc-eval: error:") and message.format(t=tmp) in err, err
    assert "\n" not in err and "Errno" not in err and "Warning" not in err


def test_cli_packbits_codes_need_bits(files, tmp_path, capsys):
    """np.packbits bytes without --bits were read as 4 bits of 0/1 codes: now an error naming the file and --bits."""
    _, (qc, dc, ql, dl) = files
    np.save(tmp_path / "qp.npy", np.packbits(qc > 0, axis=1))
    np.save(tmp_path / "dp.npy", np.packbits(dc > 0, axis=1))
    np.save(tmp_path / "ql.npy", ql)
    np.save(tmp_path / "dl.npy", dl)
    args = ["--query-codes", str(tmp_path / "qp.npy"), "--db-codes", str(tmp_path / "dp.npy"),
            "--query-labels", str(tmp_path / "ql.npy"), "--db-labels", str(tmp_path / "dl.npy"), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"shc-eval: error: --query-codes {tmp_path}/qp.npy: uint8 values from ")
    assert "are not binary codes" in err and "packbits" in err and "--bits N" in err
    assert main(args + ["--bits", "32", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == evaluate(qc, dc, ql, dl).to_dict()["mAP"]


def test_cli_reads_mat_label_vectors(files, tmp_path):
    """MATLAB / scipy.io.savemat label vectors (1 x N, N x 1) are class ids."""
    import scipy.io
    tmp, (qc, dc, ql, dl) = files
    scipy.io.savemat(tmp_path / "ql.mat", {"ql": ql})                   # 1 x 30
    scipy.io.savemat(tmp_path / "dl.mat", {"dl": dl}, oned_as="column")  # 400 x 1
    args = _args(tmp)
    args[5], args[7] = str(tmp_path / "ql.mat"), str(tmp_path / "dl.mat")
    assert main(args + ["--quiet", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["mAP"] == evaluate(qc, dc, ql, dl).to_dict()["mAP"]


def test_cli_bad_choice_exits_2_via_subprocess(files):
    tmp, _ = files
    proc = subprocess.run([sys.executable, "-m", "shc.cli.eval"] + _args(tmp) + ["--ties", "random"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "invalid choice" in proc.stderr


def test_cli_command_flushes_everything_before_its_fast_exit(files):
    """The command (console_main) ends with os._exit: the piped summary, the JSON and the PNG must be complete,
    and a bad input still exits 2 with its one-line error."""
    tmp, (qc, dc, ql, dl) = files
    command = [sys.executable, "-m", "shc.cli.eval"] + _args(tmp)
    proc = subprocess.run(command + ["--json", str(tmp / "r.json"), "--pr-curve", str(tmp / "pr.png")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "mAP@k" in proc.stdout and proc.stdout.endswith("\n")
    got = json.loads((tmp / "r.json").read_text())
    assert got["mAP"] == evaluate(qc, dc, ql, dl).to_dict()["mAP"]
    assert (tmp / "pr.png").read_bytes()[-8:] == b"IEND\xaeB`\x82"  # the PNG's last chunk: the file is whole
    proc = subprocess.run(command + ["--topk", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("shc-eval: error:") and proc.stdout == ""


def test_cli_closed_output_pipe_exits_quietly(files):
    """`shc-eval ... | head`: the reader is gone before the summary is printed; exit 1 without an error or a
    traceback, the JSON still written."""
    tmp, _ = files
    proc = subprocess.Popen([sys.executable, "-m", "shc.cli.eval"] + _args(tmp) + ["--json", str(tmp / "r.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before the child reaches its print (its imports alone take ~0.2 s)
    err = proc.stderr.read().decode()
    assert proc.wait() == 1 and err == ""
    assert "mAP" in json.loads((tmp / "r.json").read_text())
