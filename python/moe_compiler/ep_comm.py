"""Communication-time model of expert-parallel dispatch and return.

For one MoE layer under expert parallelism (EP) over R ranks, G per node,
this module predicts how long the exchange of token rows takes in each of
three realizations:

- `allgather`: every rank gathers every rank's rows (then keeps what it
  serves); the return is a reduce-scatter of per-rank partial sums. Both are
  NCCL ring collectives: R - 1 latency-bound steps, and each row crosses the
  network once per remote node (NCCL's rings are node-aware).
- `all_to_all`: counts are exchanged, then each assignment's row goes
  straight to the rank of its expert (one row per assignment, as
  `moe.ep_dispatch` packs them); the return is the reverse exchange.
- `hierarchical`: two stages. A token's row crosses the network once per
  remote node that holds one of its experts, to the GPU of the same local
  index there, which fans it out over NVLink to the GPUs of that node that
  serve it. Assignments within the source's own node go over NVLink directly.

The model is an expectation under uniform routing (every expert equally
likely, experts in equal blocks per rank), in the alpha-beta form: a
collective costs its latency-bound steps times a per-step latency, plus the
bytes one GPU moves over its slowest link divided by that link's bandwidth.
NVLink and the network are taken to run concurrently (the two stages of the
hierarchical scheme pipelined), so the bandwidth term is the larger of the
two: an optimistic bound that says which link limits, not a measurement.
The figures behind the presets are cited in docs/expert-parallel-scaling.md.

    python -m moe_compiler.ep_comm --hidden 7168 --k 8 --tokens 4096 \\
        --ranks 8 16 32 64 --ranks-per-node 8 --dispatch fp8
"""

from __future__ import annotations

import argparse
import dataclasses
import math

#: The realizations the model covers, in the order the CLI prints them.
SCHEMES = ("allgather", "all_to_all", "hierarchical")

#: Bytes of one fp8 scale (f32) and the elements it covers, as DeepSeek-V3
#: quantizes activations for dispatch (1x128 tiles).
FP8_SCALE_BYTES = 4
FP8_SCALE_GROUP = 128


@dataclasses.dataclass(frozen=True)
class Layer:
    """The exchanged payload of one layer on one rank.

    `tokens_per_rank` is M; every token has `k` assignments. A dispatched
    row is `hidden` elements of `dispatch_bytes` each, plus one f32 scale per
    `scale_group` elements when `scale_group` is set (fp8 dispatch); a
    returned row is `hidden` elements of `return_bytes` each (bf16: 2; the
    f32 rows moe's combine takes today: 4)."""

    hidden: int
    k: int
    tokens_per_rank: int
    dispatch_bytes: float = 2.0
    return_bytes: float = 2.0
    scale_group: int = 0
    experts: int | None = None

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.k < 1 or self.tokens_per_rank < 0:
            raise ValueError(f"needs hidden >= 1, k >= 1, tokens >= 0: {self}")
        if self.experts is not None and self.experts < self.k:
            raise ValueError(f"{self.experts} experts cannot give {self.k} distinct per token")

    def dispatch_row_bytes(self) -> float:
        """Bytes of one dispatched row, its scales included."""
        scales = math.ceil(self.hidden / self.scale_group) * FP8_SCALE_BYTES \
            if self.scale_group else 0
        return self.hidden * self.dispatch_bytes + scales

    def return_row_bytes(self) -> float:
        """Bytes of one returned (expert output) row."""
        return self.hidden * self.return_bytes


@dataclasses.dataclass(frozen=True)
class Cluster:
    """R ranks, G per node, and the per-GPU, per-direction bandwidths (GB/s,
    1e9 bytes per second) and per-step latencies (us) of NVLink and of the
    network. With R <= G the group is one node and the network is unused."""

    ranks: int
    ranks_per_node: int
    nvlink_gbps: float
    network_gbps: float
    nvlink_latency_us: float
    network_latency_us: float

    def __post_init__(self) -> None:
        if self.ranks < 1 or self.ranks_per_node < 1:
            raise ValueError(f"needs ranks >= 1 and ranks per node >= 1: {self}")
        if self.ranks > self.ranks_per_node and self.ranks % self.ranks_per_node:
            raise ValueError(f"{self.ranks} ranks do not fill nodes of {self.ranks_per_node}")

    @property
    def gpus_per_node(self) -> int:
        """GPUs of the group in one node (G, or R for a group within a node)."""
        return min(self.ranks, self.ranks_per_node)

    @property
    def nodes(self) -> int:
        return self.ranks // self.gpus_per_node

    def step_latency_us(self) -> float:
        """The latency of a step that reaches every rank of the group."""
        return self.network_latency_us if self.nodes > 1 else self.nvlink_latency_us


#: Link presets: name -> (NVLink GB/s, network GB/s, NVLink us, network us),
#: per GPU and per direction. Sources in docs/expert-parallel-scaling.md.
PRESETS = {
    # H100/H200 SXM: NVLink 4, 900 GB/s both directions; one 400 Gb/s NDR
    # InfiniBand NIC per GPU; NCCL's per-step hardware latencies (LL).
    "h200-spec": (450.0, 50.0, 0.6, 5.0),
    # What benchmarks reach on that hardware: ~380 GB/s NVLink p2p one way
    # on H100, 46-48 GB/s per NDR NIC in nccl-tests.
    "h200-achieved": (380.0, 47.0, 0.6, 5.0),
    # H800 as DeepEP measured it: ~155 GB/s NVLink, ~50 GB/s RDMA.
    "h800-deepep": (155.0, 50.0, 0.6, 5.0),
}


def cluster_from_preset(name: str, ranks: int, ranks_per_node: int = 8) -> Cluster:
    """A Cluster with the bandwidths and latencies of a named preset."""
    nvlink, network, nvlink_us, network_us = PRESETS[name]
    return Cluster(ranks, ranks_per_node, nvlink, network, nvlink_us, network_us)


def node_hit_probability(layer: Layer, cluster: Cluster) -> float:
    """The probability that a token has at least one of its k experts on a
    given node: 1 - (1 - G/R)^k when the k experts are independent uniform
    draws; with `layer.experts` set, the exact value for k distinct experts
    (1 - C(E - E G/R, k) / C(E, k))."""
    fraction = cluster.gpus_per_node / cluster.ranks
    if layer.experts is None:
        return 1.0 - (1.0 - fraction) ** layer.k
    off_node = layer.experts - round(layer.experts * fraction)
    return 1.0 - math.comb(off_node, layer.k) / math.comb(layer.experts, layer.k)


@dataclasses.dataclass(frozen=True)
class Traffic:
    """The expected rows one GPU sends, per direction, over each link in one
    exchange (dispatch or return), with the rows it receives in all (over
    both links, i.e. what lands in its receive buffer from other GPUs), and
    the latency-bound steps: (count on the network, count on NVLink)."""

    nvlink_rows: float
    network_rows: float
    received_rows: float
    network_steps: int
    nvlink_steps: int


def dispatch_traffic(scheme: str, layer: Layer, cluster: Cluster) -> Traffic:
    """Per-GPU rows of the dispatch of `scheme` under uniform routing.

    With N nodes of G GPUs and M tokens per rank:
    - allgather: each row reaches every other rank; it crosses the network
      once per remote node (M (N - 1) rows per GPU) and fans out over NVLink
      to the G - 1 node-mates at every node (M N (G - 1) rows per GPU).
    - all_to_all: one row per assignment whose expert is on another rank;
      of the k M assignments, a fraction (G - 1) / R stays in the node
      (NVLink) and (R - G) / R is remote (network).
    - hierarchical: one row per (token, remote node it hits), M (N - 1) p
      with p = node_hit_probability, then one NVLink row per assignment on a
      node-mate of the receiving GPU: k M (G - 1) / G per GPU over its own
      tokens and the ones it relays."""
    m, k = layer.tokens_per_rank, layer.k
    r, g, n = cluster.ranks, cluster.gpus_per_node, cluster.nodes
    remote = 1 if n > 1 else 0
    if scheme == "allgather":
        network, nvlink = m * (n - 1), m * n * (g - 1)
        return Traffic(nvlink, network, network + nvlink,
                       (r - 1) * remote, (r - 1) * (1 - remote))
    if scheme == "all_to_all" or (scheme == "hierarchical" and n == 1):
        network, nvlink = k * m * (r - g) / r, k * m * (g - 1) / r
        return Traffic(nvlink, network, network + nvlink, 2 * remote, 2 * (1 - remote))
    if scheme == "hierarchical":
        network = m * (n - 1) * node_hit_probability(layer, cluster)
        nvlink = k * m * (g - 1) / g
        # Rows a GPU receives: from the network (tokens it relays or
        # serves) and over NVLink (its node-mates' own and relayed rows).
        return Traffic(nvlink, network, network + nvlink, 2, 1)
    raise ValueError(f"unknown scheme {scheme!r}, expected one of {SCHEMES}")


def return_traffic(scheme: str, layer: Layer, cluster: Cluster) -> Traffic:
    """Per-GPU rows of the return. The all-to-all schemes retrace their
    dispatch in reverse (same rows; the counts are known, so one step fewer
    on the network for the flat exchange and none for the counts). The
    reduce-scatter of the allgather realization moves, per GPU, the same
    rows as the allgather: every rank holds partial sums for all R M tokens
    and each source's block crosses to it through the same node-aware
    rings."""
    forward = dispatch_traffic(scheme, layer, cluster)
    if scheme == "allgather":
        return forward
    if cluster.nodes == 1 or scheme == "all_to_all":
        return dataclasses.replace(forward, network_steps=forward.network_steps // 2,
                                   nvlink_steps=forward.nvlink_steps // 2)
    return dataclasses.replace(forward, network_steps=1, nvlink_steps=1)


@dataclasses.dataclass(frozen=True)
class Timing:
    """One exchange's modeled time (us), split into what limits it."""

    nvlink_us: float
    network_us: float
    latency_us: float

    @property
    def total_us(self) -> float:
        return max(self.nvlink_us, self.network_us) + self.latency_us

    @property
    def bound(self) -> str:
        """The term that dominates: `latency`, `network` or `nvlink`."""
        transfer = max(self.nvlink_us, self.network_us)
        if self.latency_us >= transfer:
            return "latency"
        return "network" if self.network_us >= self.nvlink_us else "nvlink"


def exchange_time(traffic: Traffic, row_bytes: float, cluster: Cluster) -> Timing:
    """The alpha-beta time of an exchange: bytes over each link divided by
    its bandwidth (1 GB/s moves 1e3 bytes per us), plus the steps times their
    latency."""
    nvlink_us = traffic.nvlink_rows * row_bytes / (cluster.nvlink_gbps * 1e3)
    network_us = traffic.network_rows * row_bytes / (cluster.network_gbps * 1e3) \
        if traffic.network_rows else 0.0
    latency_us = traffic.network_steps * cluster.network_latency_us \
        + traffic.nvlink_steps * cluster.nvlink_latency_us
    return Timing(nvlink_us, network_us, latency_us)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Dispatch and return of one scheme on one layer and cluster."""

    scheme: str
    dispatch: Traffic
    dispatch_time: Timing
    returned: Traffic
    return_time: Timing

    @property
    def total_us(self) -> float:
        return self.dispatch_time.total_us + self.return_time.total_us


def estimate(scheme: str, layer: Layer, cluster: Cluster) -> Estimate:
    """The modeled dispatch and return of `scheme`."""
    dispatch = dispatch_traffic(scheme, layer, cluster)
    returned = return_traffic(scheme, layer, cluster)
    return Estimate(scheme, dispatch, exchange_time(dispatch, layer.dispatch_row_bytes(), cluster),
                    returned, exchange_time(returned, layer.return_row_bytes(), cluster))


def table_rows(layer: Layer, clusters: list[Cluster]) -> list[str]:
    """A Markdown table of every scheme at every cluster size."""
    lines = ["| R | nodes | scheme | dispatch net MB/GPU | dispatch NVLink MB/GPU "
             "| dispatch us | return us | total us | dispatch bound |",
             "|---|---|---|---|---|---|---|---|---|"]
    row_mb = layer.dispatch_row_bytes() / 1e6
    for cluster in clusters:
        for scheme in SCHEMES:
            result = estimate(scheme, layer, cluster)
            lines.append(
                f"| {cluster.ranks} | {cluster.nodes} | {scheme} "
                f"| {result.dispatch.network_rows * row_mb:.2f} "
                f"| {result.dispatch.nvlink_rows * row_mb:.2f} "
                f"| {result.dispatch_time.total_us:.1f} | {result.return_time.total_us:.1f} "
                f"| {result.total_us:.1f} | {result.dispatch_time.bound} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--k", type=int, required=True, help="experts per token")
    parser.add_argument("--tokens", type=int, required=True, help="tokens per rank (M)")
    parser.add_argument("--ranks", type=int, nargs="+", required=True)
    parser.add_argument("--ranks-per-node", type=int, default=8)
    parser.add_argument("--experts", type=int,
                        help="exact node-hit probability for k distinct of E experts")
    parser.add_argument("--dispatch", choices=("bf16", "fp8"), default="bf16",
                        help="dispatched rows: bf16, or fp8 with an f32 scale per 128")
    parser.add_argument("--return-bytes", type=float, default=2.0,
                        help="bytes per returned element (bf16: 2, f32: 4)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="h200-spec")
    parser.add_argument("--nvlink-gbps", type=float, help="override the preset")
    parser.add_argument("--network-gbps", type=float, help="override the preset")
    parser.add_argument("--network-latency-us", type=float, help="override the preset")
    args = parser.parse_args(argv)
    fp8 = args.dispatch == "fp8"
    try:
        layer = Layer(args.hidden, args.k, args.tokens, 1.0 if fp8 else 2.0,
                      args.return_bytes, FP8_SCALE_GROUP if fp8 else 0, args.experts)
        clusters = []
        for ranks in args.ranks:
            cluster = cluster_from_preset(args.preset, ranks, args.ranks_per_node)
            overrides = {name: value for name, value in (
                ("nvlink_gbps", args.nvlink_gbps), ("network_gbps", args.network_gbps),
                ("network_latency_us", args.network_latency_us)) if value is not None}
            clusters.append(dataclasses.replace(cluster, **overrides))
    except ValueError as error:
        parser.error(str(error))
    print(f"H = {layer.hidden}, k = {layer.k}, M = {layer.tokens_per_rank} per rank, "
          f"{args.dispatch} dispatch ({layer.dispatch_row_bytes():.0f} B/row), "
          f"return {layer.return_row_bytes():.0f} B/row, preset {args.preset}")
    print("\n".join(table_rows(layer, clusters)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
