"""The expert-parallel load-balance model on generated traces, against
brute-force counts."""

import json
import math

import numpy as np
import pytest

from moe_compiler import load_balance as lb


def brute_force_loads(ids, num_experts):
    loads = [0] * num_experts
    for row in ids:
        for expert in row:
            if 0 <= expert < num_experts:
                loads[expert] += 1
    return np.array(loads)


def test_loads_skip_ids_outside_the_experts():
    rng = np.random.default_rng()
    ids = rng.integers(-1, 9, size=(300, 3))  # -1 and 8 are no expert of 8
    np.testing.assert_array_equal(lb.expert_loads(ids, 8), brute_force_loads(ids, 8))


def test_hot_experts_inflate_the_step_at_equal_work():
    seed = int(np.random.default_rng().integers(1 << 30))
    uniform = lb.generate_trace("uniform", 2048, 64, 8, seed)
    slots = lb.contiguous_placement(64, 8)
    base = lb.step_time(lb.rank_loads(lb.expert_loads(uniform, 64), slots))
    for kind in ("hot", "zipf"):
        skewed = lb.generate_trace(kind, 2048, 64, 8, seed)
        loads = lb.expert_loads(skewed, 64)
        assert loads.sum() == 2048 * 8  # the same work
        step = lb.step_time(lb.rank_loads(loads, slots))
        assert step > 2.5 * base, (kind, step, base)


def test_capacity_drops_match_a_count():
    rng = np.random.default_rng()
    ids = lb.generate_trace("zipf", 1000, 16, 4, int(rng.integers(1 << 30)))
    loads = brute_force_loads(ids, 16)
    for factor in (1.0, 1.25, 2.0, 100.0):
        capacity, dropped = lb.capacity_drops(loads, factor)
        assert capacity == math.ceil(factor * 4000 / 16)
        assert dropped == sum(max(0, load - capacity) for load in loads)
    assert lb.capacity_drops(loads, 100.0)[1] == 0


@pytest.mark.parametrize("spare", [0, 1, 3])
def test_plan_is_a_valid_placement_that_lowers_the_step(spare):
    ids = lb.generate_trace("zipf", 2048, 64, 8, int(np.random.default_rng().integers(1 << 30)))
    loads = lb.expert_loads(ids, 64)
    plan = lb.plan_placement(loads, 8, 8 + spare)
    assert sorted({e for rank in plan for e in rank}) == list(range(64))
    assert all(len(rank) <= 8 + spare and len(set(rank)) == len(rank) for rank in plan)
    contiguous = lb.step_time(lb.rank_loads(loads, lb.contiguous_placement(64, 8)))
    planned = lb.step_time(lb.rank_loads(loads, plan))
    assert planned < contiguous / 2
    # Replicas share their expert's load: the rank loads still add up.
    assert lb.rank_loads(loads, plan).sum() == pytest.approx(loads.sum())


def test_an_expert_with_load_needs_a_slot():
    with pytest.raises(ValueError, match=r"experts \[3\] have load and no slot"):
        lb.rank_loads(np.array([1, 1, 1, 1]), [[0, 1], [2]])
    with pytest.raises(ValueError, match="cannot hold"):
        lb.plan_placement(np.ones(16), 2, 7)


def test_command_line(tmp_path, capsys):
    ids = lb.generate_trace("hot", 512, 32, 4, 3)
    np.save(tmp_path / "ids.npy", ids)
    assert lb.main(["--trace", str(tmp_path / "ids.npy"), "--experts", "32", "--ranks", "4",
                    "--plan", str(tmp_path / "plan.json")]) == 0
    out = capsys.readouterr().out
    assert "contiguous: 2048 assignments" in out and "plan (9 slots/rank)" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["ranks"] == 4 and len(plan["slots"]) == 4
    np.save(tmp_path / "bad.npy", np.zeros((4,), dtype=np.float32))
    with pytest.raises(SystemExit) as exit_info:
        lb.main(["--trace", str(tmp_path / "bad.npy"), "--experts", "32", "--ranks", "4"])
    assert exit_info.value.code == 2
    assert "a trace is an integer array [M, k]" in capsys.readouterr().err
