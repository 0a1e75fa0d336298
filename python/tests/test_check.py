"""check.py, the comparison behind `moe-run --check`, on hand-made graphs."""

from __future__ import annotations

import json

import numpy as np

from moe_compiler import check


def write_identity(tmp_path, arg, result):
    """A graph that returns its argument, with `result` as the program's."""
    graph = {"args": [{"dtype": "f32", "shape": list(arg.shape)}], "ops": [], "returns": ["arg0"]}
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    np.save(tmp_path / "arg0.npy", arg.astype(np.float32))
    np.save(tmp_path / "result0.npy", result.astype(np.float32))


def test_all_nan_result_fails(tmp_path, capsys):
    nans = np.full((2, 3), np.nan)
    write_identity(tmp_path, nans, nans)
    assert check.main(["--dir", str(tmp_path)]) == 1
    assert "only NaNs: FAIL" in capsys.readouterr().out


def test_nans_at_the_same_places_are_left_out(tmp_path):
    values = np.random.default_rng().standard_normal((4, 5))
    values[1, 2] = np.nan
    write_identity(tmp_path, values, values)
    assert check.main(["--dir", str(tmp_path)]) == 0


def test_wrong_values_fail(tmp_path):
    values = np.random.default_rng().standard_normal((4, 5))
    write_identity(tmp_path, values, values * 1.001)
    assert check.main(["--dir", str(tmp_path)]) == 1
