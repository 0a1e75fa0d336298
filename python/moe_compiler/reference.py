"""Float64 NumPy reference of a Mixture-of-Experts layer.

This module is the oracle every correctness test compares against. It mirrors
the `moe` dialect op by op, with the same semantics:

* expert weights are stored [E, N, K] and a grouped matmul computes rows·W[e]ᵀ;
* assignments are numbered token * k + slot;
* selection ties go to the lower expert (or group) index;
* in selection a NaN score compares as -inf, so ids always lie in [0, E);
  NaN weights propagate.

Everything is computed in float64 regardless of the input dtype.
"""

from __future__ import annotations

import math

import numpy as np

SCORING_FUNCS = ("softmax", "sigmoid", "topk_softmax")
ACTIVATIONS = ("silu_and_mul", "gelu_and_mul", "swiglu")


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _descending_order(keys: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Indices that sort each row of `keys` descending, stable (lower index
    first on ties), NaN as -inf, and indices not `allowed` after all others."""
    filled = np.where(np.isnan(keys), -np.inf, keys)
    if allowed is None:
        allowed = np.ones(keys.shape, dtype=bool)
    # np.lexsort sorts by the last key first and is stable.
    return np.lexsort((-filled, ~allowed), axis=-1)


def router(x, gate_weight, bias=None) -> np.ndarray:
    """logits[M, E] = x[M, H] · gate_weight[E, H]ᵀ (+ bias[E])."""
    x, gate_weight = _f64(x), _f64(gate_weight)
    if x.ndim != 2 or gate_weight.ndim != 2 or x.shape[1] != gate_weight.shape[1]:
        raise ValueError(f"router: shapes {x.shape} and {gate_weight.shape} do not match")
    logits = x @ gate_weight.T
    if bias is not None:
        logits = logits + _f64(bias)[None, :]
    return logits


def topk(
    logits,
    k: int,
    scoring: str = "softmax",
    bias=None,
    num_groups: int | None = None,
    topk_groups: int | None = None,
    renormalize: bool = False,
    routed_scaling_factor: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (weights[M, k] float64, ids[M, k] int32), by decreasing score."""
    logits = _f64(logits)
    if logits.ndim != 2:
        raise ValueError(f"topk: logits must be [M, E], got {logits.shape}")
    num_tokens, num_experts = logits.shape
    if not 1 <= k <= num_experts:
        raise ValueError(f"topk: k={k} must lie in [1, {num_experts}]")
    if scoring not in SCORING_FUNCS:
        raise ValueError(f"topk: unknown scoring {scoring!r}")
    if (num_groups is None) != (topk_groups is None):
        raise ValueError("topk: num_groups and topk_groups go together")

    if scoring == "softmax":
        scores = _softmax(logits)
    elif scoring == "sigmoid":
        scores = _sigmoid(logits)
    else:
        scores = logits
    selection = scores if bias is None else scores + _f64(bias)[None, :]

    allowed = np.ones(selection.shape, dtype=bool)
    if num_groups is not None:
        if num_experts % num_groups or not 1 <= topk_groups <= num_groups:
            raise ValueError(f"topk: bad grouping {num_groups}/{topk_groups} for E={num_experts}")
        group_size = num_experts // num_groups
        grouped = selection.reshape(num_tokens, num_groups, group_size)
        grouped = np.where(np.isnan(grouped), -np.inf, grouped)
        best_two = -np.sort(-grouped, axis=-1)[..., : min(2, group_size)]
        group_scores = best_two.sum(axis=-1)
        chosen_groups = _descending_order(group_scores)[:, :topk_groups]
        group_mask = np.zeros((num_tokens, num_groups), dtype=bool)
        np.put_along_axis(group_mask, chosen_groups, True, axis=-1)
        allowed = np.repeat(group_mask, group_size, axis=-1)
        if k > topk_groups * group_size:
            raise ValueError("topk: k exceeds the experts of the selected groups")

    ids = _descending_order(selection, allowed)[:, :k]
    weights = np.take_along_axis(scores, ids, axis=-1)
    if scoring == "topk_softmax" and k > 0:
        weights = _softmax(weights)
    if renormalize:
        weights = weights / np.sum(weights, axis=-1, keepdims=True)
    if routed_scaling_factor is not None:
        weights = weights * routed_scaling_factor
    return weights, ids.astype(np.int32)


def add_shared_experts(weights, ids, num_experts: int, num_shared: int = 1, gate=None):
    """moe.add_shared_experts: every token also picks experts num_experts ..
    num_experts + num_shared - 1, with weight 1, or sigmoid of its gate logit
    (`gate` [M, 1])."""
    weights, ids = _f64(weights), np.asarray(ids)
    m = ids.shape[0]
    shared_ids = np.broadcast_to(np.arange(num_experts, num_experts + num_shared), (m, num_shared))
    shared_weights = np.ones((m, num_shared))
    if gate is not None:
        shared_weights = shared_weights * _sigmoid(_f64(gate).reshape(m, 1))
    return (np.concatenate([weights, shared_weights], axis=1),
            np.concatenate([ids, shared_ids], axis=1).astype(np.int32))


def shared_expert_routing(routed_weights, num_shared: int = 1, gate=None):
    """moe.shared_expert_routing: every token picks shared experts 0 ..
    num_shared - 1 of a schedule of their own, with weight 1, or sigmoid of
    its gate logit (`gate` [M, 1])."""
    m = np.asarray(routed_weights).shape[0]
    ids = np.broadcast_to(np.arange(num_shared), (m, num_shared)).astype(np.int32)
    weights = np.ones((m, num_shared))
    if gate is not None:
        weights = weights * _sigmoid(_f64(gate).reshape(m, 1))
    return weights, ids


def permute(x, ids, num_experts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups the M·k assignments by expert, stably.

    Returns (rows[M·k, H], offsets[E + 1] int32, source[M·k] int32)."""
    x = _f64(x)
    ids = np.asarray(ids)
    if ids.ndim != 2 or x.ndim != 2 or ids.shape[0] != x.shape[0]:
        raise ValueError(f"permute: shapes {x.shape} and {ids.shape} do not match")
    k = ids.shape[1]
    flat_ids = ids.reshape(-1).astype(np.int64)
    if flat_ids.size and (flat_ids.min() < 0 or flat_ids.max() >= num_experts):
        raise ValueError(f"permute: expert id out of range [0, {num_experts})")
    source = np.argsort(flat_ids, kind="stable")
    rows = x[source // k] if k else x[:0]
    counts = np.bincount(flat_ids, minlength=num_experts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return rows, offsets.astype(np.int32), source.astype(np.int32)


def grouped_matmul(rows, weights, offsets, bias=None) -> np.ndarray:
    """result[i] = rows[i] · weights[e]ᵀ (+ bias[e]) for i in
    [offsets[e], offsets[e+1])."""
    rows, weights = _f64(rows), _f64(weights)
    offsets = np.asarray(offsets, dtype=np.int64)
    num_experts, out_features, in_features = weights.shape
    if rows.ndim != 2 or rows.shape[1] != in_features:
        raise ValueError(f"grouped_matmul: rows {rows.shape} vs weights {weights.shape}")
    if offsets.shape != (num_experts + 1,) or offsets[-1] != rows.shape[0]:
        raise ValueError(f"grouped_matmul: bad offsets {offsets}")
    result = np.zeros((rows.shape[0], out_features))
    for expert in range(num_experts):
        begin, end = offsets[expert], offsets[expert + 1]
        result[begin:end] = rows[begin:end] @ weights[expert].T
        if bias is not None:
            result[begin:end] += _f64(bias)[expert]
    return result


_erfc = np.frompyfunc(math.erfc, 1, 1)


def activation(x, kind: str, alpha: float | None = None, limit: float | None = None,
               gate_up_interleaved: bool = False) -> np.ndarray:
    """Gated activation over the gate and up columns of the last dimension:
    its [gate | up] halves, or alternating gate and up columns (gate first)
    with `gate_up_interleaved`."""
    x = _f64(x)
    if x.shape[-1] % 2:
        raise ValueError(f"activation: odd last dimension {x.shape[-1]}")
    if gate_up_interleaved:
        gate, up = x[..., 0::2], x[..., 1::2]
    else:
        half = x.shape[-1] // 2
        gate, up = x[..., :half], x[..., half:]
    if kind == "silu_and_mul":
        return gate * _sigmoid(gate) * up
    if kind == "gelu_and_mul":
        # The normal CDF as erfc(-x/√2)/2, accurate in the negative tail
        # where 1 + erf(x/√2) cancels.
        return 0.5 * gate * _erfc(-gate / math.sqrt(2.0)).astype(np.float64) * up
    if kind == "swiglu":
        if alpha is None or limit is None:
            raise ValueError("activation: swiglu needs alpha and limit")
        gate = np.minimum(gate, limit)
        up = np.clip(up, -limit, limit)
        return gate * _sigmoid(alpha * gate) * (up + 1.0)
    raise ValueError(f"activation: unknown kind {kind!r}")


def unpermute(rows, source, k: int) -> np.ndarray:
    """result[a // k, a % k] = rows[i] with a = source[i]; returns [M, k, N]."""
    rows = _f64(rows)
    source = np.asarray(source, dtype=np.int64)
    if rows.shape[0] != source.shape[0] or rows.shape[0] % k:
        raise ValueError(f"unpermute: {rows.shape[0]} rows, {source.shape[0]} indices, k={k}")
    result = np.empty_like(rows)
    result[source] = rows
    return result.reshape(rows.shape[0] // k, k, rows.shape[1])


def combine(expert_out, weights, routed_scaling_factor: float | None = None) -> np.ndarray:
    """result[m] = scale · Σ_j weights[m, j] · expert_out[m, j]."""
    expert_out, weights = _f64(expert_out), _f64(weights)
    result = np.einsum("mk,mkh->mh", weights, expert_out)
    if routed_scaling_factor is not None:
        result = result * routed_scaling_factor
    return result


def moe_layer(x, gate_weight, w13, w2, config, gate_bias=None, score_bias=None,
              b13=None, b2=None, shared_gate_weight=None) -> np.ndarray:
    """The full forward of one layer described by a `LayerConfig`; `b13` and
    `b2` are the experts' biases ([E, 2I] and [E, H]) of both GEMMs. With
    shared experts, `w13` and `w2` hold them after the routed ones, and
    `shared_gate_weight` ([1, H]) gates them where the config says so."""
    logits = router(x, gate_weight, gate_bias)
    weights, ids = topk(
        logits,
        config.k,
        config.scoring,
        bias=score_bias,
        num_groups=config.num_groups,
        topk_groups=config.topk_groups,
        renormalize=config.renormalize,
        routed_scaling_factor=config.routed_scaling_factor,
    )
    if config.num_shared_experts:
        gate = router(x, shared_gate_weight) if config.shared_expert_gate else None
        weights, ids = add_shared_experts(weights, ids, config.num_experts,
                                          config.num_shared_experts, gate)
    rows, offsets, source = permute(x, ids, config.num_experts + config.num_shared_experts)
    hidden = grouped_matmul(rows, w13, offsets, b13)
    hidden = activation(hidden, config.activation, config.swiglu_alpha, config.swiglu_limit,
                        config.gate_up_interleaved)
    out_rows = grouped_matmul(hidden, w2, offsets, b2)
    return combine(unpermute(out_rows, source, ids.shape[1]), weights)


# Fused and scheduled forms (the ops the passes produce).


def route(x, gate_weight, k, scoring="softmax", gate_bias=None, score_bias=None, **topk_options):
    """moe.route: router then topk."""
    return topk(router(x, gate_weight, gate_bias), k, scoring, bias=score_bias, **topk_options)


def sort_assignments(ids, num_experts: int) -> tuple[np.ndarray, np.ndarray]:
    """moe.sort: permute's offsets and source, without gathering rows."""
    ids = np.asarray(ids)
    _, offsets, source = permute(np.zeros((ids.shape[0], 0)), ids, num_experts)
    return offsets, source


def align(ids, num_experts: int, block_m: int):
    """moe.align: (sorted_ids, block_experts, num_padded), as
    moe_align_block_size computes them; id -1 is another device's expert."""
    ids = np.asarray(ids, dtype=np.int64)
    num_assignments = ids.size
    flat = ids.reshape(-1)
    if flat.size and (flat.min() < -1 or flat.max() >= num_experts):
        raise ValueError(f"align: expert id out of range [-1, {num_experts})")
    num_slots = num_assignments + num_experts * (block_m - 1)
    num_blocks = -(-num_slots // block_m)
    sorted_ids = np.full(num_slots, num_assignments, dtype=np.int32)
    block_experts = np.full(num_blocks, -1, dtype=np.int32)
    start = 0
    for expert in range(num_experts):
        members = np.nonzero(flat == expert)[0]
        sorted_ids[start:start + members.size] = members
        padded = -(-members.size // block_m) * block_m
        block_experts[start // block_m:(start + padded) // block_m] = expert
        start += padded
    return sorted_ids, block_experts, np.array([start], dtype=np.int32)


def expert_matmul(input, weights, *, k: int, slots=None, offsets=None, block_experts=None,
                  num_padded=None, routing_weights=None, gather=False, unpermute=False,
                  activation_kind=None, alpha=None, limit=None, routed_scaling_factor=None,
                  block_m=None, num_tokens=None, bias=None, gate_up_interleaved=False,
                  accumulate=None):
    """moe.expert_matmul: see the op's description in docs/MoeDialect.md."""
    input, weights = _f64(input), _f64(weights)
    num_experts, out_features, _ = weights.shape
    num_slots = len(slots) if slots is not None else input.shape[0]
    aligned = block_experts is not None
    num_assignments = num_slots - num_experts * (block_m - 1) if aligned else num_slots
    if num_tokens is None:
        if gather:
            num_tokens = input.shape[0]
        elif routing_weights is not None:
            num_tokens = routing_weights.shape[0]
        else:
            num_tokens = num_assignments // k
    expert_of_slot = np.full(num_slots, -1)
    if aligned:
        limit_slots = min(int(num_padded[0]), num_slots)
        for slot in range(limit_slots):
            expert_of_slot[slot] = block_experts[slot // block_m]
    else:
        for expert in range(num_experts):
            expert_of_slot[offsets[expert]:offsets[expert + 1]] = expert
    width = out_features // 2 if activation_kind else out_features
    if unpermute:
        result = np.zeros((num_tokens, k, width))
    elif routing_weights is not None:
        result = np.zeros((num_tokens, width))
    else:
        result = np.zeros((num_slots, width))
    for slot in range(num_slots):
        expert = expert_of_slot[slot]
        assignment = int(slots[slot]) if slots is not None else slot
        if expert < 0 or assignment >= num_assignments:
            continue
        row = input[assignment // k] if gather else input[slot]
        product = row @ weights[expert].T
        if bias is not None:
            product = product + _f64(bias)[expert]
        if activation_kind:
            product = activation(product[None, :], activation_kind, alpha, limit,
                                 gate_up_interleaved)[0]
        if unpermute:
            result[assignment // k, assignment % k] = product
        elif routing_weights is not None:
            result[assignment // k] += routing_weights[assignment // k, assignment % k] * product
        else:
            result[slot] = product
    if routing_weights is not None and routed_scaling_factor is not None:
        result = result * routed_scaling_factor
    if accumulate is not None:
        result = result + _f64(accumulate)
    return result
