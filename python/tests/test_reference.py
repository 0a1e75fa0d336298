"""The float64 oracle against small cases worked out by hand."""

import math

import numpy as np
import pytest

from moe_compiler import reference as ref


def softmax_row(values):
    e = [math.exp(v) for v in values]
    return [v / sum(e) for v in e]


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_router_matmul_and_bias():
    x = [[1.0, 2.0], [0.0, -1.0]]
    w = [[1.0, 0.0], [0.5, 1.0], [-1.0, 3.0]]
    logits = ref.router(x, w, bias=[0.0, 1.0, -2.0])
    # Row 0: [1, 0.5 + 2 + 1, -1 + 6 - 2]; row 1: [0, -1 + 1, -3 - 2].
    np.testing.assert_array_equal(logits, [[1.0, 3.5, 3.0], [0.0, 0.0, -5.0]])


def test_topk_softmax_without_renormalize():
    weights, ids = ref.topk([[1.0, 3.0, 2.0, 0.0]], k=2, scoring="softmax")
    p = softmax_row([1.0, 3.0, 2.0, 0.0])
    np.testing.assert_array_equal(ids, [[1, 2]])
    np.testing.assert_allclose(weights, [[p[1], p[2]]], rtol=1e-15)
    assert ids.dtype == np.int32


def test_topk_softmax_renormalize_equals_mixtral_style():
    # Mixtral: top-k over logits, then softmax over the k = e^3/(e^3+e^2), ...
    weights, ids = ref.topk([[1.0, 3.0, 2.0, 0.0]], k=2, scoring="softmax", renormalize=True)
    np.testing.assert_array_equal(ids, [[1, 2]])
    np.testing.assert_allclose(weights, [softmax_row([3.0, 2.0])], rtol=1e-15)


def test_topk_then_softmax_gpt_oss():
    weights, ids = ref.topk([[0.5, -1.0, 4.0, 1.5]], k=3, scoring="topk_softmax")
    np.testing.assert_array_equal(ids, [[2, 3, 0]])
    np.testing.assert_allclose(weights, [softmax_row([4.0, 1.5, 0.5])], rtol=1e-15)


def test_ties_go_to_lower_index():
    weights, ids = ref.topk([[2.0, 5.0, 5.0, 2.0, 5.0]], k=4, scoring="softmax")
    np.testing.assert_array_equal(ids, [[1, 2, 4, 0]])
    _, ids = ref.topk([[0.0, 0.0, 0.0, 0.0]], k=2, scoring="sigmoid")
    np.testing.assert_array_equal(ids, [[0, 1]])


def test_nan_never_selected_over_numbers_and_ids_stay_in_range():
    logits = [[math.nan, 1.0, -3.0, math.nan]]
    weights, ids = ref.topk(logits, k=3, scoring="sigmoid")
    # NaN ranks as -inf; of the two NaNs the lower index wins.
    np.testing.assert_array_equal(ids, [[1, 2, 0]])
    assert math.isnan(weights[0, 2])
    np.testing.assert_allclose(weights[0, :2], [sigmoid(1.0), sigmoid(-3.0)], rtol=1e-15)
    _, ids = ref.topk([[math.nan] * 4], k=4, scoring="softmax")
    np.testing.assert_array_equal(ids, [[0, 1, 2, 3]])


def test_deepseek_grouped_sigmoid_with_bias():
    # E = 8 in 4 groups of 2; pick the top 2 groups, then k = 2 within them.
    logits = np.array([[0.0, 1.0, 2.0, -2.0, 0.5, 0.5, -1.0, 3.0]])
    bias = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -10.0])
    s = [sigmoid(v) for v in logits[0]]
    biased = [s[i] + bias[i] for i in range(8)]
    group_scores = [biased[0] + biased[1], biased[2] + biased[3],
                    biased[4] + biased[5], biased[6] + biased[7]]
    # By hand: groups 0 (0.5+0.731) and 2 (0.622*2) beat group 1 (0.881+0.119=1.0).
    assert group_scores[2] > group_scores[0] > group_scores[1] > group_scores[3]
    weights, ids = ref.topk(logits, k=2, scoring="sigmoid", bias=bias, num_groups=4,
                            topk_groups=2, renormalize=True, routed_scaling_factor=2.5)
    # Expert 2 has the best single score but its group lost; experts 4 and 5
    # tie and 4 wins; expert 1 beats both.
    np.testing.assert_array_equal(ids, [[1, 4]])
    expected = np.array([s[1], s[4]]) / (s[1] + s[4]) * 2.5
    np.testing.assert_allclose(weights[0], expected, rtol=1e-15)


def test_bias_selects_but_does_not_weight():
    logits = [[2.0, 1.0, 0.0]]
    weights, ids = ref.topk(logits, k=1, scoring="sigmoid", bias=[0.0, 5.0, 0.0])
    np.testing.assert_array_equal(ids, [[1]])
    np.testing.assert_allclose(weights, [[sigmoid(1.0)]], rtol=1e-15)


def test_permute_is_stable_by_expert():
    x = np.array([[10.0], [20.0], [30.0]])
    ids = np.array([[2, 0], [0, 2], [1, 0]])
    rows, offsets, source = ref.permute(x, ids, num_experts=4)
    # Assignments: a0=(t0,e2) a1=(t0,e0) a2=(t1,e0) a3=(t1,e2) a4=(t2,e1) a5=(t2,e0)
    np.testing.assert_array_equal(source, [1, 2, 5, 4, 0, 3])
    np.testing.assert_array_equal(offsets, [0, 3, 4, 6, 6])
    np.testing.assert_array_equal(rows[:, 0], [10, 20, 30, 30, 10, 20])
    assert offsets.dtype == np.int32 and source.dtype == np.int32


def test_permute_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="out of range"):
        ref.permute(np.zeros((2, 4)), np.array([[0, 4], [1, 2]]), num_experts=4)
    with pytest.raises(ValueError, match="out of range"):
        ref.permute(np.zeros((1, 4)), np.array([[-1, 2]]), num_experts=4)


def test_grouped_matmul_uses_each_experts_weights():
    rows = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    weights = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],   # expert 0: [3, 2]
                        [[2.0, 0.0], [0.0, 0.0], [0.0, -1.0]]])  # expert 1
    out = ref.grouped_matmul(rows, weights, offsets=[0, 1, 3])
    np.testing.assert_array_equal(out, [[1, 2, 3], [6, 0, -4], [10, 0, -6]])
    empty = ref.grouped_matmul(rows, weights, offsets=[0, 0, 3])
    np.testing.assert_array_equal(empty[0], [2, 0, -2])


def test_activations_by_hand():
    h = np.array([[1.0, -2.0, 3.0, 0.5]])  # gate = [1, -2], up = [3, 0.5]
    np.testing.assert_allclose(ref.activation(h, "silu_and_mul"),
                               [[1 * sigmoid(1) * 3, -2 * sigmoid(-2) * 0.5]], rtol=1e-15)
    gelu = lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))
    np.testing.assert_allclose(ref.activation(h, "gelu_and_mul"),
                               [[gelu(1) * 3, gelu(-2) * 0.5]], rtol=1e-15)
    # swiglu clamps gate above at limit and up to [-limit, limit].
    h = np.array([[9.0, -1.0, 8.0, -9.0]])
    a, lim = 1.702, 7.0
    expected = [[7.0 * sigmoid(a * 7.0) * (7.0 + 1), -1.0 * sigmoid(-a) * (-7.0 + 1)]]
    np.testing.assert_allclose(ref.activation(h, "swiglu", alpha=a, limit=lim), expected, rtol=1e-15)


def test_unpermute_and_combine():
    rows = np.array([[1.0], [2.0], [3.0], [4.0]])
    source = np.array([3, 0, 2, 1])
    y = ref.unpermute(rows, source, k=2)
    np.testing.assert_array_equal(y[:, :, 0], [[2, 4], [3, 1]])
    out = ref.combine(y, [[0.5, 0.25], [1.0, 2.0]], routed_scaling_factor=2.0)
    np.testing.assert_array_equal(out[:, 0], [2 * (1 + 1), 2 * (3 + 2)])


def test_permute_then_unpermute_round_trips():
    rng = np.random.default_rng()
    for _ in range(20):
        m, k, e, h = rng.integers(0, 9), rng.integers(1, 4), rng.integers(1, 6), 3
        x = rng.standard_normal((m, h))
        ids = rng.integers(0, e, size=(m, k))
        rows, offsets, source = ref.permute(x, ids, e)
        assert offsets[-1] == m * k
        np.testing.assert_array_equal(ref.unpermute(rows, source, k),
                                      np.repeat(x[:, None, :], k, axis=1))


def test_layer_with_one_expert_is_a_dense_mlp():
    from moe_compiler.configs import LayerConfig
    rng = np.random.default_rng()
    config = LayerConfig("dense", num_experts=1, k=1, hidden=4, intermediate=3)
    x = rng.standard_normal((5, 4))
    w13 = rng.standard_normal((1, 6, 4))
    w2 = rng.standard_normal((1, 4, 3))
    out = ref.moe_layer(x, rng.standard_normal((1, 4)), w13, w2, config)
    h = x @ w13[0].T
    dense = (h[:, :3] / (1 + np.exp(-h[:, :3])) * h[:, 3:]) @ w2[0].T
    np.testing.assert_allclose(out, dense, rtol=1e-12)


def test_align_by_hand():
    # 3 tokens, k = 2, 4 experts, block 4; assignment a = token * 2 + slot.
    ids = np.array([[2, 0], [0, -1], [2, 2]])
    sorted_ids, blocks, padded = ref.align(ids, num_experts=4, block_m=4)
    # Expert 0: a1, a2; expert 2: a0, a4, a5; a3 belongs to another device.
    # Each group padded to 4 with the sentinel A = 6; S = 6 + 4 * 3 = 18.
    np.testing.assert_array_equal(
        sorted_ids, [1, 2, 6, 6, 0, 4, 5, 6] + [6] * 10)
    np.testing.assert_array_equal(blocks, [0, 2, -1, -1, -1])
    np.testing.assert_array_equal(padded, [8])


def test_align_rejects_bad_ids():
    with pytest.raises(ValueError, match="out of range"):
        ref.align(np.array([[0, 4]]), num_experts=4, block_m=2)
    with pytest.raises(ValueError, match="out of range"):
        ref.align(np.array([[-2, 0]]), num_experts=4, block_m=2)


def test_expert_matmul_modes_by_hand():
    x = np.array([[1.0, 0.0], [0.0, 2.0]])          # 2 tokens, K = 2
    w = np.array([[[1.0, 1.0]], [[3.0, -1.0]]])       # E = 2, N = 1
    ids = np.array([[1, 0], [1, 1]])                  # k = 2
    offsets, source = ref.sort_assignments(ids, 2)
    np.testing.assert_array_equal(offsets, [0, 1, 4])
    np.testing.assert_array_equal(source, [1, 0, 2, 3])
    rows = ref.expert_matmul(x, w, k=2, slots=source, offsets=offsets, gather=True)
    # slot 0: a1 = (t0, e0): 1; slot 1: a0 = (t0, e1): 3; slots 2, 3: t1, e1: -2.
    np.testing.assert_array_equal(rows[:, 0], [1, 3, -2, -2])
    weights = np.array([[0.25, 0.75], [0.5, 0.5]])
    out = ref.expert_matmul(x, w, k=2, slots=source, offsets=offsets, gather=True,
                            routing_weights=weights, routed_scaling_factor=2.0)
    np.testing.assert_array_equal(out[:, 0], [2 * (0.25 * 3 + 0.75 * 1), 2 * (-2)])
    sorted_ids, blocks, padded = ref.align(ids, 2, block_m=2)
    aligned = ref.expert_matmul(x, w, k=2, slots=sorted_ids, block_experts=blocks,
                                num_padded=padded, gather=True, routing_weights=weights,
                                routed_scaling_factor=2.0, block_m=2)
    np.testing.assert_array_equal(aligned, out)
