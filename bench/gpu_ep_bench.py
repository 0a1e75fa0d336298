"""Expert-parallel layers timed on the GPUs of one host: the speed table of
the multi-GPU expert-parallel issue.

Runs on the GPU machine over the libraries scripts/gpu-ep-bench-layers.sh
builds here (DIR/ep_bench.json lists them):

    python3 bench/gpu_ep_bench.py DIR [--ranks R] [--shapes ...] [--tokens ...]

Spawns R processes, rank r on GPU r, and joins them in one NCCL communicator
(rank 0's ncclGetUniqueId handed to the others through a queue; the layer's
group from moe_rt_group_from_nccl). For every case of R ranks (a shape and
M tokens per rank), with fresh random weights and tokens:
- the EP layer: the rank program replayed from a CUDA graph (its NCCL
  collectives captured with it) on every rank at once; the median of rank
  0's replays;
- the single-GPU layer on all R·M tokens (rank 0 alone, every expert);
- NCCL alone on the layer's exchanges: the all-gather of the token rows
  (M·H bf16 per rank) and the reduce-scatter of the f32 sums (R·M·H per
  rank), graph-timed, with bytes moved per µs: the algorithm bandwidth
  (bytes received, or reduced, over time) and, for R > 1, the bus bandwidth
  as nccl-tests counts it (× (R − 1)/R);
- the kernels of one eager EP call on rank 0 by kind (torch.profiler; every
  rank makes the call): dispatch
  (ep_dispatch_*), matmuls and routing, return (ep_return, ep_finalize),
  NCCL.
Rank 0 prints a line per case and a markdown table at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import pathlib
import sys

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gpu_ep_check import EpLayer, Group, NcclUniqueId, load_nccl  # noqa: E402
from gpu_moe_suite import time_graph  # noqa: E402

# ncclDataType_t and ncclRedOp_t values (nccl.h).
NCCL_FLOAT32, NCCL_BFLOAT16, NCCL_SUM = 7, 9, 0


class Nccl:
    """The few NCCL calls the bench makes, through ctypes."""

    def __init__(self):
        self.lib = load_nccl()
        self.lib.ncclGetUniqueId.argtypes = [ctypes.POINTER(NcclUniqueId)]
        self.lib.ncclCommInitRank.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                              NcclUniqueId, ctypes.c_int]
        self.lib.ncclAllGather.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                           ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.ncclReduceScatter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                               ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                               ctypes.c_void_p]

    def unique_id(self) -> bytes:
        uid = NcclUniqueId()
        if self.lib.ncclGetUniqueId(ctypes.byref(uid)):
            raise RuntimeError("ncclGetUniqueId failed")
        # The id's raw bytes (a char array's value would stop at a zero).
        return ctypes.string_at(ctypes.addressof(uid), ctypes.sizeof(uid))

    def communicator(self, uid: bytes, ranks: int, rank: int) -> ctypes.c_void_p:
        handle = NcclUniqueId()
        ctypes.memmove(ctypes.addressof(handle), uid, len(uid))
        comm = ctypes.c_void_p()
        if self.lib.ncclCommInitRank(ctypes.byref(comm), ranks, handle, rank):
            raise RuntimeError(f"ncclCommInitRank failed on rank {rank}")
        return comm

    def all_gather(self, send, recv, comm):
        stream = torch.cuda.current_stream().cuda_stream
        if self.lib.ncclAllGather(send.data_ptr(), recv.data_ptr(), send.numel(),
                                  NCCL_BFLOAT16, comm, stream):
            raise RuntimeError("ncclAllGather failed")

    def reduce_scatter(self, send, recv, comm):
        stream = torch.cuda.current_stream().cuda_stream
        if self.lib.ncclReduceScatter(send.data_ptr(), recv.data_ptr(), recv.numel(),
                                      NCCL_FLOAT32, NCCL_SUM, comm, stream):
            raise RuntimeError("ncclReduceScatter failed")


def random_experts(count: int, rows: int, columns: int) -> torch.Tensor:
    """[count, rows, columns] bf16 of std 1/sqrt(columns), filled in place."""
    weights = torch.empty(count, rows, columns, dtype=torch.bfloat16, device="cuda")
    for expert in range(count):
        weights[expert].normal_(0.0, 1.0 / math.sqrt(columns))
    return weights


def router_inputs(config: dict) -> list[torch.Tensor]:
    """The inputs between the tokens and the experts: the gate, and the
    router's f32 bias where the layer has one."""
    e, h = config["num_experts"], config["hidden"]
    inputs = [torch.randn(e, h, device="cuda").div_(math.sqrt(h)).to(torch.bfloat16)]
    if config["has_gate_bias"] or config["has_score_bias"]:
        inputs.append(torch.randn(e, device="cuda") * 0.1)
    return inputs


def layer_call(layer: EpLayer, inputs, out, group: Group | None):
    """A closure running `layer` on the current stream (with `group`: a rank
    program; without: the single-device entry)."""
    m = inputs[0].shape[0]
    need = layer.bytes(m)
    workspace = torch.empty(max(need, 1), dtype=torch.uint8, device="cuda")
    extra = [ctypes.byref(group)] if group is not None else []

    def call():
        status = layer.fn(*[t.data_ptr() for t in inputs], out.data_ptr(), m,
                          workspace.data_ptr(), need, *extra,
                          torch.cuda.current_stream().cuda_stream)
        if status != 0:
            raise RuntimeError(layer.lib.moe_rt_last_error().decode())
    return call


KINDS = (("dispatch", ("ep_dispatch",)), ("return", ("ep_return", "ep_finalize")),
         ("NCCL", ("nccl",)))


def kernel_breakdown(call, by_name: dict | None = None) -> dict[str, float]:
    """µs of device time per kind of kernel in one eager call (and per
    kernel name into `by_name`, where given)."""
    from torch.profiler import ProfilerActivity, profile
    call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        call()
        torch.cuda.synchronize()
    totals = {"dispatch": 0.0, "matmuls and routing": 0.0, "return": 0.0, "NCCL": 0.0}
    for event in trace.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        name = event.name.lower()
        kind = next((kind for kind, prefixes in KINDS
                     if any(name.startswith(p.lower()) for p in prefixes)), None)
        if kind is None:
            kind = "NCCL" if "nccl" in name else "matmuls and routing"
        totals[kind] += event.time_range.elapsed_us()
        if by_name is not None:
            by_name[event.name] = by_name.get(event.name, 0.0) + event.time_range.elapsed_us()
    return totals


def run_case(case: dict, config: dict, layers: pathlib.Path, nccl: Nccl, comm, rank: int,
             ranks: int, barrier, verbose: bool = False) -> dict | None:
    m, h, e = case["tokens_per_rank"], config["hidden"], config["num_experts"]
    i = config["intermediate"]
    local = e // ranks
    gate = router_inputs(config)
    x = torch.randn(m, h, device="cuda").to(torch.bfloat16)
    w13, w2 = random_experts(local, 2 * i, h), random_experts(local, h, i)
    inputs = [x, *gate, w13, w2]
    out = torch.empty_like(x)
    program = EpLayer(layers / f"{case['rank_program']}.so", case["rank_program"], len(inputs))
    group = Group()
    if program.lib.moe_rt_group_from_nccl(comm, ctypes.byref(group)):
        raise RuntimeError(program.lib.moe_rt_last_error().decode())
    ep_call = layer_call(program, inputs, out, group)
    ep_us = time_graph(ep_call)
    # Every rank profiles (its collectives need the others); rank 0 reports.
    by_name = {}
    breakdown = kernel_breakdown(ep_call, by_name)
    if rank == 0 and verbose:
        for name, us in sorted(by_name.items(), key=lambda item: -item[1]):
            print(f"  {case['rank_program']}: {name[:60]} {us:.1f} us", flush=True)

    # NCCL alone on the layer's exchanges.
    gathered = torch.empty(ranks * m, h, dtype=torch.bfloat16, device="cuda")
    sums = torch.empty(ranks * m, h, dtype=torch.float32, device="cuda")
    own = torch.empty(m, h, dtype=torch.float32, device="cuda")
    gather_us = time_graph(lambda: nccl.all_gather(x, gathered, comm))
    scatter_us = time_graph(lambda: nccl.reduce_scatter(sums, own, comm))
    del w13, w2, gathered, sums
    torch.cuda.empty_cache()

    # The single-GPU layer on all R·M tokens, rank 0 alone.
    single_us = None
    barrier.wait()
    if rank == 0:
        tokens = torch.randn(ranks * m, h, device="cuda").to(torch.bfloat16)
        single_inputs = [tokens, *gate, random_experts(e, 2 * i, h), random_experts(e, h, i)]
        single = EpLayer(layers / f"{case['single']}.so", case["single"], len(single_inputs))
        single.fn.argtypes = single.fn.argtypes[:-2] + [ctypes.c_void_p]
        single_us = time_graph(layer_call(single, single_inputs, torch.empty_like(tokens),
                                          None))
        del single_inputs
        torch.cuda.empty_cache()
    barrier.wait()
    if rank != 0:
        return None
    gather_bytes = ranks * m * h * 2
    scatter_bytes = ranks * m * h * 4
    return dict(shape=case["shape"], ranks=ranks, m=m, ep_us=ep_us, single_us=single_us,
                gather_us=gather_us, gather_gbps=gather_bytes / gather_us / 1e3,
                scatter_us=scatter_us, scatter_gbps=scatter_bytes / scatter_us / 1e3,
                bus_factor=(ranks - 1) / ranks, breakdown=breakdown)


def describe(row: dict) -> str:
    bus = "" if row["ranks"] == 1 else \
        f", bus {row['gather_gbps'] * row['bus_factor']:.0f} / " \
        f"{row['scatter_gbps'] * row['bus_factor']:.0f} GB/s"
    kinds = ", ".join(f"{kind} {us:.1f}" for kind, us in row["breakdown"].items())
    return (f"{row['shape']} R={row['ranks']} M={row['m']} per rank: EP layer "
            f"{row['ep_us']:.1f} us, single GPU on {row['ranks'] * row['m']} tokens "
            f"{row['single_us']:.1f} us ({row['ep_us'] / row['single_us']:.2f}x); NCCL "
            f"all-gather of the tokens {row['gather_us']:.1f} us "
            f"({row['gather_gbps']:.0f} GB/s), reduce-scatter of the sums "
            f"{row['scatter_us']:.1f} us ({row['scatter_gbps']:.0f} GB/s){bus}; kernels of "
            f"one eager call (us): {kinds}")


def rank_main(rank: int, ranks: int, uids, args, barrier, failures):
    try:
        torch.cuda.set_device(rank)
        nccl = Nccl()
        # Rank 0 makes the communicator's id (its process hosts NCCL's
        # bootstrap root) and hands it to the others.
        if rank == 0:
            uid = nccl.unique_id()
            for _ in range(ranks - 1):
                uids.put(uid)
        else:
            uid = uids.get(timeout=600)
        comm = nccl.communicator(uid, ranks, rank)
        manifest = json.loads((args.layers / "ep_bench.json").read_text())
        rows = []
        for case in manifest["cases"]:
            if case["ranks"] != ranks or case["shape"] not in args.shapes or \
                    case["tokens_per_rank"] not in args.tokens:
                continue
            row = run_case(case, manifest["layers"][case["shape"]], args.layers, nccl, comm,
                           rank, ranks, barrier, args.kernels)
            if row:
                rows.append(row)
                print(describe(row), flush=True)
        if rank == 0:
            print_table(rows, torch.cuda.get_device_name())
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    except Exception as failure:  # noqa: BLE001 (reported, then the exit code)
        print(f"rank {rank}: {failure!r}", flush=True)
        failures.value += 1
        barrier.abort()


def print_table(rows, card: str):
    print(f"card: {card} x {rows[0]['ranks'] if rows else 0}")
    print("| shape | R | M per rank | EP layer (us) | single GPU, R·M tokens (us) | EP / single "
          "| all-gather (us, GB/s) | reduce-scatter (us, GB/s) | dispatch (us) | return (us) "
          "| NCCL in the layer (us) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = r["breakdown"]
        print(f"| {r['shape']} | {r['ranks']} | {r['m']} | {r['ep_us']:.1f} | "
              f"{r['single_us']:.1f} | {r['ep_us'] / r['single_us']:.2f} | "
              f"{r['gather_us']:.1f}, {r['gather_gbps']:.0f} | "
              f"{r['scatter_us']:.1f}, {r['scatter_gbps']:.0f} | {b['dispatch']:.1f} | "
              f"{b['return']:.1f} | {b['NCCL']:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("layers", type=pathlib.Path)
    parser.add_argument("--ranks", type=int, default=0,
                        help="GPUs (ranks) to use; 0: every GPU of the host")
    parser.add_argument("--shapes", default="mixtral_8x7b,qwen3_30b_a3b,deepseek_v3")
    parser.add_argument("--tokens", default="1,256,4096", help="tokens per rank")
    parser.add_argument("--out", type=pathlib.Path, help="rank 0's rows as JSON")
    parser.add_argument("--kernels", action="store_true",
                        help="also print rank 0's kernels of one EP call by name")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_ep_bench: error: no CUDA GPU", file=sys.stderr)
        return 1
    available = torch.cuda.device_count()
    ranks = args.ranks or available
    if ranks > available:
        print(f"gpu_ep_bench: error: {ranks} ranks asked for, {available} GPUs here",
              file=sys.stderr)
        return 1
    args.shapes = args.shapes.split(",")
    args.tokens = [int(t) for t in args.tokens.split(",")]
    context = mp.get_context("spawn")
    uids = context.Queue()
    barrier = context.Barrier(ranks, timeout=600)
    failures = context.Value("i", 0)
    processes = [context.Process(target=rank_main,
                                 args=(rank, ranks, uids, args, barrier, failures))
                 for rank in range(ranks)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = failures.value + sum(p.exitcode != 0 for p in processes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
