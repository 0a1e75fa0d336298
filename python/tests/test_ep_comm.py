"""The expert-parallel communication model against a simulated exchange
(rows counted per link over random routings), its invariants, and one case
computed by hand."""

import itertools

import numpy as np
import pytest

from moe_compiler import ep_comm


def cluster(ranks, per_node, nvlink=450.0, network=50.0, nvlink_us=0.6, network_us=5.0):
    return ep_comm.Cluster(ranks, per_node, nvlink, network, nvlink_us, network_us)


def simulate(scheme, ranks, per_node, experts, k, tokens, seed):
    """Rows each GPU sends over NVLink and over the network, and rows it
    receives, counted one token at a time: every rank routes `tokens`
    tokens to k distinct uniform experts, placed in equal contiguous blocks.
    Returns per-GPU means (nvlink sent, network sent, received)."""
    rng = np.random.default_rng(seed)
    per_rank = experts // ranks
    nodes = ranks // per_node
    nvlink, network, received = np.zeros(ranks), np.zeros(ranks), np.zeros(ranks)
    for source in range(ranks):
        chosen = np.argsort(rng.random((tokens, experts)), axis=1)[:, :k]
        for token_experts in chosen:
            owners = token_experts // per_rank
            for node in range(nodes):
                on_node = [int(d) for d in owners if d // per_node == node]
                # The GPU of this node that takes the row first: the source
                # itself on its own node, else the one of its local index.
                relay = source if node == source // per_node \
                    else node * per_node + source % per_node
                if scheme == "allgather":
                    targets = [d for d in range(node * per_node, (node + 1) * per_node)]
                elif scheme == "hierarchical":
                    targets = on_node
                else:  # all_to_all: straight from the source, one row per assignment
                    for d in on_node:
                        if d != source:
                            (nvlink if relay == source else network)[source] += 1
                            received[d] += 1
                    continue
                if not targets:
                    continue
                if relay != source:
                    network[source] += 1
                    received[relay] += 1
                for d in targets:
                    if d != relay:
                        nvlink[relay] += 1
                        received[d] += 1
    return nvlink.mean() / tokens, network.mean() / tokens, received.mean() / tokens


@pytest.mark.parametrize("scheme", ep_comm.SCHEMES)
@pytest.mark.parametrize("ranks,per_node,k", [(16, 4, 4), (8, 2, 1), (8, 8, 4), (32, 8, 8)])
def test_link_rows_match_a_simulated_exchange(scheme, ranks, per_node, k):
    experts, tokens = 2 * ranks, 300
    seed = int(np.random.default_rng().integers(1 << 30))
    layer = ep_comm.Layer(hidden=16, k=k, tokens_per_rank=1, experts=experts)
    model = ep_comm.dispatch_traffic(scheme, layer, cluster(ranks, per_node))
    nvlink, network, received = simulate(scheme, ranks, per_node, experts, k, tokens, seed)
    # Each mean is over R * tokens tokens of counts near Poisson: its
    # standard error is about sqrt(modeled / (R * tokens)). Five of those
    # (a false failure once in ~10^6 runs) bound the rare links, whose few
    # events (8 ranks, k = 1: 0.125 rows per token, 5.4% noise) a fixed 5%
    # or 0.02 bound missed about once in a few hundred runs.
    for simulated, modeled in ((nvlink, model.nvlink_rows), (network, model.network_rows),
                               (received, model.received_rows)):
        standard_error = (modeled / (ranks * tokens)) ** 0.5
        assert simulated == pytest.approx(modeled, rel=0.05, abs=max(0.02, 5 * standard_error)), \
            (seed, scheme)


def test_received_rows_are_what_the_ranks_need():
    # Whatever links the rows take, the allgather delivers every other
    # rank's M rows to each rank, and the all-to-all every assignment whose
    # expert is on another rank: k M (R - 1) / R per rank.
    for ranks, per_node, tokens, k in [(8, 8, 64, 2), (16, 8, 100, 8), (64, 8, 4096, 8), (32, 4, 7, 3)]:
        layer = ep_comm.Layer(hidden=64, k=k, tokens_per_rank=tokens)
        links = cluster(ranks, per_node)
        gathered = ep_comm.dispatch_traffic("allgather", layer, links)
        assert gathered.received_rows == (ranks - 1) * tokens
        exchanged = ep_comm.dispatch_traffic("all_to_all", layer, links)
        assert exchanged.received_rows == pytest.approx(k * tokens * (ranks - 1) / ranks)
        # Sent equals received: every row a GPU sends lands on another GPU.
        for traffic in (gathered, exchanged):
            assert traffic.nvlink_rows + traffic.network_rows == pytest.approx(traffic.received_rows)


def test_all_to_all_moves_no_more_than_allgather_below_k_equal_R():
    for ranks, per_node in [(2, 2), (8, 8), (16, 8), (64, 8)]:
        for k in range(1, ranks + 1):
            layer = ep_comm.Layer(hidden=64, k=k, tokens_per_rank=128)
            links = cluster(ranks, per_node)
            gathered = ep_comm.dispatch_traffic("allgather", layer, links).received_rows
            exchanged = ep_comm.dispatch_traffic("all_to_all", layer, links).received_rows
            if k < ranks:
                assert exchanged < gathered, (ranks, k)
            else:  # every rank needs every row: the same volume
                assert exchanged == pytest.approx(gathered)


def test_hierarchical_crosses_the_network_less_than_the_flat_exchange():
    for ranks, per_node in [(16, 8), (32, 8), (64, 8), (64, 4), (16, 1)]:
        for k in (1, 2, 4, 8):
            for experts in (None, 4 * ranks):
                layer = ep_comm.Layer(hidden=64, k=k, tokens_per_rank=512, experts=experts)
                links = cluster(ranks, per_node)
                flat = ep_comm.dispatch_traffic("all_to_all", layer, links).network_rows
                staged = ep_comm.dispatch_traffic("hierarchical", layer, links).network_rows
                if k > 1:
                    assert staged < flat, (ranks, per_node, k, experts)
                else:
                    assert staged == pytest.approx(flat)


def test_one_node_uses_only_nvlink():
    layer = ep_comm.Layer(hidden=4096, k=2, tokens_per_rank=1024)
    for scheme in ep_comm.SCHEMES:
        fast = ep_comm.estimate(scheme, layer, cluster(8, 8))
        # A network a million times slower, with a latency of a second.
        slow = ep_comm.estimate(scheme, layer, cluster(8, 8, network=50e-6, network_us=1e6))
        assert fast.dispatch.network_rows == 0 and fast.returned.network_rows == 0
        assert slow.total_us == fast.total_us
        assert fast.dispatch_time.bound in ("nvlink", "latency")


def test_time_grows_with_the_tokens():
    for ranks in (8, 16, 64):
        links = cluster(ranks, 8)
        for scheme in ep_comm.SCHEMES:
            times = [ep_comm.estimate(scheme, ep_comm.Layer(7168, 8, tokens), links).total_us
                     for tokens in (0, 1, 16, 256, 4096)]
            assert all(a < b for a, b in zip(times, times[1:])), (ranks, scheme, times)


def test_a_case_computed_by_hand():
    # DeepSeek-V3 rows in bf16 (7168 x 2 = 14336 B), k = 8, 4096 tokens per
    # rank, two nodes of 8 (R = 16), 450 GB/s NVLink, 50 GB/s network, 5 us
    # per network step and 0.6 us per NVLink step.
    layer = ep_comm.Layer(hidden=7168, k=8, tokens_per_rank=4096)
    links = cluster(16, 8)
    # Flat all-to-all: 8 x 4096 = 32768 assignments, half on the other node
    # (16384 rows, 234.88 MB: 4697.6 us at 50 GB/s), 7/16 on node-mates
    # (14336 rows, 205.52 MB: 456.7 us at 450 GB/s); counts then rows: 2 x 5 us.
    flat = ep_comm.estimate("all_to_all", layer, links).dispatch_time
    assert flat.network_us == pytest.approx(16384 * 14336 / 50e3)
    assert flat.nvlink_us == pytest.approx(14336 * 14336 / 450e3)
    assert flat.total_us == pytest.approx(4697.6 + 10.0, abs=0.1)
    # Hierarchical: a token misses the other node with probability
    # (1/2)^8, so 4096 x 255/256 = 4080 rows cross (58.49 MB: 1169.8 us);
    # the NVLink stage carries 32768 x 7/8 = 28672 rows (411.04 MB: 913.4 us);
    # counts and the network stage at 5 us, the NVLink stage at 0.6 us.
    staged = ep_comm.estimate("hierarchical", layer, links).dispatch_time
    assert staged.network_us == pytest.approx(4080 * 14336 / 50e3)
    assert staged.nvlink_us == pytest.approx(28672 * 14336 / 450e3)
    assert staged.total_us == pytest.approx(1169.8 + 10.6, abs=0.1)
    assert staged.bound == "network"
    # The flat return retraces the rows in bf16; the counts are known: 1 step.
    assert ep_comm.estimate("all_to_all", layer, links).return_time.total_us == \
        pytest.approx(4697.6 + 5.0, abs=0.1)
    # Allgather: each row crosses to the other node once (4096 rows,
    # 1174.4 us) and fans out to 7 node-mates on both nodes (57344 rows,
    # 1826.8 us: NVLink-bound), in a ring of 15 network steps (75 us); the
    # reduce-scatter moves the same rows.
    gathered = ep_comm.estimate("allgather", layer, links)
    assert gathered.dispatch_time.network_us == pytest.approx(1174.4, abs=0.1)
    assert gathered.dispatch_time.total_us == pytest.approx(1826.8 + 75.0, abs=0.1)
    assert gathered.return_time.total_us == pytest.approx(1826.8 + 75.0, abs=0.1)
    assert gathered.dispatch_time.bound == "nvlink"


def test_fp8_rows_carry_one_scale_per_128_elements():
    fp8 = ep_comm.Layer(hidden=7168, k=8, tokens_per_rank=1, dispatch_bytes=1.0,
                        scale_group=ep_comm.FP8_SCALE_GROUP)
    assert fp8.dispatch_row_bytes() == 7168 + 56 * 4
    assert ep_comm.Layer(hidden=7168, k=8, tokens_per_rank=1).dispatch_row_bytes() == 2 * 7168


def test_node_hit_probability_against_an_enumeration():
    # 8 experts over 4 ranks, 2 per node (4 experts per node): count the
    # 3-expert choices that touch node 0.
    layer = ep_comm.Layer(hidden=8, k=3, tokens_per_rank=1, experts=8)
    links = cluster(4, 2)
    choices = list(itertools.combinations(range(8), 3))
    hits = sum(any(e < 4 for e in choice) for choice in choices)
    assert ep_comm.node_hit_probability(layer, links) == pytest.approx(hits / len(choices))
    independent = ep_comm.Layer(hidden=8, k=3, tokens_per_rank=1)
    assert ep_comm.node_hit_probability(independent, links) == pytest.approx(1 - 0.5 ** 3)


def test_cli_prints_every_scheme_and_rejects_partial_nodes(capsys):
    assert ep_comm.main(["--hidden", "7168", "--k", "8", "--tokens", "4096",
                         "--ranks", "8", "64", "--dispatch", "fp8"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 64 ")]
    assert [row.split("|")[3].strip() for row in rows] == list(ep_comm.SCHEMES)
    with pytest.raises(SystemExit) as exit_info:
        ep_comm.main(["--hidden", "64", "--k", "2", "--tokens", "8", "--ranks", "12"])
    assert exit_info.value.code == 2
