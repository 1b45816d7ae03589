"""`ecg-ray prepare` as a user runs it: real folders, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import PROJECT_ROOT


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ecg_ray.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=PROJECT_ROOT, env=env)


def test_prepare_mitbih_cli(mitdb_dir, tmp_path):
    out = _cli("prepare", "--source", "mitbih", "--data-dir", mitdb_dir, "--out", tmp_path / "mit",
               "--folds", "3")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "mit" / "manifest.json").read_text())
    assert manifest["source"] == "mitbih"
    assert all(manifest["records"][c] > 0 for c in ("N", "A", "O", "~"))
    assert manifest["skipped_counts"]["rhythm changes within window"] > 0
    assert "records (N " in out.stdout and "skipped:" in out.stdout


def test_prepare_cli_is_a_no_op_the_second_time(small_cinc_dir, tmp_path):
    args = ("prepare", "--data-dir", small_cinc_dir, "--out", tmp_path / "p", "--segment-length", "3000",
            "--stride", "1500")
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["preprocess"]["segment_length"] == 3000 and manifest["preprocess"]["stride"] == 1500
    second = _cli(*args)
    assert second.returncode == 0 and "up to date" in second.stdout
    forced = _cli(*args, "--force")
    assert forced.returncode == 0 and "up to date" not in forced.stdout


def test_prepare_cli_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, needle in [
        (("prepare", "--data-dir", empty, "--out", tmp_path / "o"), str(empty)),
        (("prepare", "--data-dir", tmp_path / "missing", "--out", tmp_path / "o"), "missing"),
    ]:
        out = _cli(*args)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("ecg-ray: error:") and needle in out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_prepare_starts_without_torch(tmp_path):
    """Only train/crossval/final build the TrainConfig flags (their choices import torch and
    the model zoo): `prepare` and its errors come without that ~2-s import."""
    code = ("import sys; from ecg_ray.cli import main; "
            f"rc = main(['prepare', '--data-dir', {str(tmp_path / 'missing')!r}, '--out', {str(tmp_path / 'o')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr


def test_prepare_cli_resamples_to_the_fs_asked(small_cinc_dir, tmp_path):
    """``--fs 150``: every record is stored at 150 Hz (half the samples of its 300-Hz
    original), and windows count samples at that rate."""
    import wfdb

    from ecg_ray.data import store

    out = _cli("prepare", "--data-dir", small_cinc_dir, "--out", tmp_path / "p150", "--fs", "150",
               "--segment-length", "1500", "--stride", "750")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "p150" / "manifest.json").read_text())
    assert manifest["preprocess"]["fs"] == 150 and manifest["preprocess"]["segment_length"] == 1500
    table = store.load_records(tmp_path / "p150", columns=["record_id", "n_samples"]).to_pydict()
    for rid, n in list(zip(table["record_id"], table["n_samples"]))[:5]:
        raw = wfdb.rdheader(str(small_cinc_dir / rid)).sig_len
        assert n == -(-raw // 2), (rid, raw, n)  # resample_poly(up=1, down=2): ceil(n / 2) samples
