"""Expert-parallel layers on one GPU: the rank programs of
`moe-expert-parallel` against the single-device layer.

Runs on the GPU machine over the libraries scripts/gpu-ep-layers.sh builds
here (DIR/ep.json lists them):

    python3 bench/gpu_ep_check.py DIR

- R = 1 through NCCL: a communicator of one rank (ncclCommInitRank), the
  layer's group from moe_rt_group_from_nccl.
- R > 1 on one GPU: R threads run the R rank programs at once, each on its
  own stream, over an emulated group (moe_rt_collectives filled in here):
  an all-gather copies every rank's buffer into every receiver, a
  reduce-scatter sums the ranks' blocks on the host. So the dispatch and
  return kernels see the data a real R-rank exchange gives them.

Each case: the fresh random weights and tokens scripts/ep_cases.py wrote;
rank r takes tokens [r·M, (r+1)·M) and the experts its placement gives it;
the joined output must match (relative L2 < 1e-2: bf16 outputs, sums in
another order) moe-run's CPU lowering of the same rank programs on the same
inputs, the single-device layer on all R·M tokens, and a float64 reference
on sampled rows (router, top-k and experts in float64,
python/moe_compiler/reference.py). The invalid-id count of every rank must
be 0.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import pathlib
import sys
import threading

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from moe_compiler import reference  # noqa: E402

STATUS = ctypes.c_int32
ERROR = ctypes.POINTER(ctypes.c_char_p)
RankAndSize = ctypes.CFUNCTYPE(STATUS, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32),
                               ctypes.POINTER(ctypes.c_int32), ERROR)
AllGather = ctypes.CFUNCTYPE(STATUS, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.c_void_p, ctypes.c_void_p, ERROR)
ReduceScatter = ctypes.CFUNCTYPE(STATUS, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.c_void_p, ctypes.c_void_p, ERROR)


class Collectives(ctypes.Structure):
    _fields_ = [("rank_and_size", RankAndSize), ("all_gather", AllGather),
                ("reduce_scatter_sum_f32", ReduceScatter)]


class Group(ctypes.Structure):
    _fields_ = [("collectives", ctypes.POINTER(Collectives)), ("comm", ctypes.c_void_p)]


class NcclUniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * 128)]


def load_nccl() -> ctypes.CDLL:
    """NCCL as PyTorch ships it (already loaded by `import torch` where it
    links it), also named to the runtime through MOE_NCCL_LIBRARY."""
    candidates = [os.environ.get("MOE_NCCL_LIBRARY", "")]
    for root in sys.path:
        candidates += glob.glob(os.path.join(root, "nvidia", "nccl", "lib", "libnccl.so*"))
    candidates.append("libnccl.so.2")
    for path in filter(None, candidates):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        os.environ["MOE_NCCL_LIBRARY"] = path
        return library
    raise RuntimeError("no libnccl.so.2 found")


class EpLayer:
    """A rank program: moe_layer_<name>(inputs..., out, num_tokens,
    workspace, workspace_bytes, group, stream)."""

    def __init__(self, path: pathlib.Path, name: str, num_inputs: int):
        self.lib = ctypes.CDLL(str(path))
        self.fn = getattr(self.lib, f"moe_layer_{name}")
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p] * (num_inputs + 1) + [
            ctypes.c_int64, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(Group),
            ctypes.c_void_p]
        self.bytes = getattr(self.lib, f"moe_layer_{name}_workspace_bytes")
        self.bytes.restype = ctypes.c_size_t
        self.bytes.argtypes = [ctypes.c_int64]
        self.invalid = getattr(self.lib, f"moe_layer_{name}_invalid_ids")
        self.invalid.restype = ctypes.c_int
        self.invalid.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64,
                                 ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)]
        self.lib.moe_rt_last_error.restype = ctypes.c_char_p
        self.lib.moe_rt_group_from_nccl.restype = ctypes.c_int
        self.lib.moe_rt_group_from_nccl.argtypes = [ctypes.c_void_p, ctypes.POINTER(Group)]

    def run(self, inputs, out, group: Group, stream: torch.cuda.Stream):
        """Runs the layer; returns the invalid-id count (waits for it)."""
        m = inputs[0].shape[0]
        need = self.bytes(m)
        workspace = torch.full((max(need, 1),), 0xAB, dtype=torch.uint8, device="cuda")
        status = self.fn(*[t.data_ptr() for t in inputs], out.data_ptr(), m,
                         workspace.data_ptr(), need, ctypes.byref(group), stream.cuda_stream)
        if status != 0:
            raise RuntimeError(f"layer failed ({status}): {self.lib.moe_rt_last_error().decode()}")
        count = ctypes.c_int64(-1)
        if self.invalid(workspace.data_ptr(), need, m, stream.cuda_stream, ctypes.byref(count)):
            raise RuntimeError(self.lib.moe_rt_last_error().decode())
        return count.value


class EmulatedGroup:
    """R ranks of one process and one GPU (threads), exchanging through
    device copies and host sums; every rank blocks in each collective until
    all have entered it (60 s, then the collective fails)."""

    def __init__(self, ranks: int):
        self.ranks = ranks
        self.barrier = threading.Barrier(ranks, timeout=60)
        self.sends = [0] * ranks
        self.cuda = ctypes.CDLL("libcuda.so.1")
        stream = ctypes.c_void_p
        self.cuda.cuMemcpyDtoDAsync_v2.argtypes = [ctypes.c_uint64, ctypes.c_uint64,
                                                   ctypes.c_size_t, stream]
        self.cuda.cuMemcpyDtoHAsync_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64,
                                                   ctypes.c_size_t, stream]
        self.cuda.cuMemcpyHtoDAsync_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p,
                                                   ctypes.c_size_t, stream]
        self.cuda.cuStreamSynchronize.argtypes = [stream]
        self._callbacks = Collectives(RankAndSize(self._rank_and_size),
                                      AllGather(self._all_gather),
                                      ReduceScatter(self._reduce_scatter))
        self.groups = [Group(ctypes.pointer(self._callbacks), ctypes.c_void_p(rank + 1))
                       for rank in range(ranks)]

    def _rank_and_size(self, comm, rank, size, error):
        rank[0], size[0] = comm - 1, self.ranks
        return 0

    def _sync(self, stream):
        if self.cuda.cuStreamSynchronize(stream):
            raise RuntimeError("cuStreamSynchronize failed")

    def _exchange(self, comm, send, stream, body) -> int:
        """Every rank's `send` once it is ready on its stream; `body` copies
        on this rank's stream, complete before any rank leaves."""
        try:
            self._sync(stream)
            self.sends[comm - 1] = send
            self.barrier.wait()
            body(comm - 1)
            self._sync(stream)
            self.barrier.wait()
            return 0
        except Exception as failure:  # noqa: BLE001 (a callback must not raise)
            print(f"emulated collective failed: {failure!r}", flush=True)
            self.barrier.abort()
            return 1

    def _all_gather(self, send, recv, nbytes, comm, stream, error):
        def body(rank):
            for source in range(self.ranks):
                if self.cuda.cuMemcpyDtoDAsync_v2(recv + source * nbytes, self.sends[source],
                                                  nbytes, stream):
                    raise RuntimeError("cuMemcpyDtoDAsync failed")
        return self._exchange(comm, send, stream, body)

    def _reduce_scatter(self, send, recv, count, comm, stream, error):
        def body(rank):
            total = np.zeros(count, dtype=np.float32)
            block = np.empty(count, dtype=np.float32)
            for source in range(self.ranks):
                if self.cuda.cuMemcpyDtoHAsync_v2(block.ctypes.data,
                                                  self.sends[source] + rank * count * 4,
                                                  count * 4, stream):
                    raise RuntimeError("cuMemcpyDtoHAsync failed")
                self._sync(stream)
                total += block
            if self.cuda.cuMemcpyHtoDAsync_v2(recv, total.ctypes.data, count * 4, stream):
                raise RuntimeError("cuMemcpyHtoDAsync failed")
        return self._exchange(comm, send, stream, body)


_NCCL_COMM = []


def graph_replay_error(layer: EpLayer, single, inputs, group: Group) -> float:
    """Captures the layer (one rank through NCCL) in a CUDA graph, replays
    it on new tokens copied into the captured input, and returns the
    relative L2 of the replay's output against the single-device layer."""
    x, *weights = inputs
    m, h = x.shape
    need = layer.bytes(m)
    workspace = torch.empty(max(need, 1), dtype=torch.uint8, device="cuda")
    out = torch.empty_like(x)
    stream = torch.cuda.Stream()
    torch.cuda.synchronize()  # the inputs, made on the default stream

    def call():
        status = layer.fn(*[t.data_ptr() for t in inputs], out.data_ptr(), m,
                          workspace.data_ptr(), need, ctypes.byref(group),
                          torch.cuda.current_stream().cuda_stream)
        if status != 0:
            raise RuntimeError(layer.lib.moe_rt_last_error().decode())

    with torch.cuda.stream(stream):
        call()  # loads the kernels before the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        call()
    x.copy_(torch.randn_like(x, dtype=torch.float32).to(torch.bfloat16))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    return relative_l2(out.double().cpu().numpy(), single(x).double().cpu().numpy())


def nccl_group(layer: EpLayer) -> tuple[Group, ctypes.c_void_p]:
    """A group over the process's NCCL communicator of one rank (made once)."""
    if _NCCL_COMM:
        group = Group()
        if layer.lib.moe_rt_group_from_nccl(_NCCL_COMM[0], ctypes.byref(group)):
            raise RuntimeError(layer.lib.moe_rt_last_error().decode())
        return group, _NCCL_COMM[0]
    nccl = load_nccl()
    nccl.ncclGetUniqueId.argtypes = [ctypes.POINTER(NcclUniqueId)]
    nccl.ncclCommInitRank.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                      NcclUniqueId, ctypes.c_int]
    uid = NcclUniqueId()
    comm = ctypes.c_void_p()
    if nccl.ncclGetUniqueId(ctypes.byref(uid)) or \
            nccl.ncclCommInitRank(ctypes.byref(comm), 1, uid, 0):
        raise RuntimeError("cannot make a one-rank NCCL communicator")
    _NCCL_COMM.append(comm)
    group = Group()
    if layer.lib.moe_rt_group_from_nccl(comm, ctypes.byref(group)):
        raise RuntimeError(layer.lib.moe_rt_last_error().decode())
    return group, comm


def reference_rows(config, x, w_gate, w13, w2, rows):
    """float64 layer (router, top-k, experts) for token rows `rows`."""
    xs = x[rows].double().cpu().numpy()
    logits = reference.router(xs, w_gate.double().cpu().numpy(), None)
    weights, ids = reference.topk(logits, config["k"], config["scoring"],
                                  renormalize=config["renormalize"])
    out = np.zeros((len(rows), config["hidden"]))
    for i in range(len(rows)):
        for j in range(config["k"]):
            e = int(ids[i, j])
            gate_up = (w13[e].double() @ x[rows[i]].double()).cpu().numpy()
            act = reference.activation(gate_up[None, :], config["activation"])[0]
            down = (w2[e].double() @ torch.from_numpy(act).cuda()).cpu().numpy()
            out[i] += weights[i, j] * down
    return out


def load_bf16(path: pathlib.Path) -> torch.Tensor:
    """A bf16 .npy (ml_dtypes, stored as 2-byte voids) on the GPU."""
    array = np.load(path)
    return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16).cuda()


def relative_l2(got, expected) -> float:
    return float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-30))


def check_case(layers: pathlib.Path, case: dict, generator) -> bool:
    config, ranks, m = case["config"], case["ranks"], case["tokens_per_rank"]
    h = config["hidden"]
    x, w_gate, w13, w2 = (load_bf16(layers / path) for path in case["inputs"])
    cpu = load_bf16(layers / case["cpu_output"])

    single_layer = EpLayer(layers / f"{case['reference']}.so", case["reference"], 4)
    # The single-device layer takes no group: call it through the plain entry.
    single_layer.fn.argtypes = single_layer.fn.argtypes[:-2] + [ctypes.c_void_p]

    def single(tokens):
        result = torch.full_like(tokens, float("nan"))
        need = single_layer.bytes(tokens.shape[0])
        workspace = torch.empty(max(need, 1), dtype=torch.uint8, device="cuda")
        if single_layer.fn(tokens.data_ptr(), w_gate.data_ptr(), w13.data_ptr(), w2.data_ptr(),
                           result.data_ptr(), tokens.shape[0], workspace.data_ptr(), need,
                           torch.cuda.current_stream().cuda_stream):
            raise RuntimeError(single_layer.lib.moe_rt_last_error().decode())
        torch.cuda.synchronize()
        return result

    expected = single(x)

    layer = EpLayer(layers / f"{case['name']}.so", case["name"], 4)
    got = torch.full_like(x, float("nan"))
    invalid = [None] * ranks
    failures = []

    def run_rank(rank, group):
        try:
            torch.cuda.set_device(0)
            stream = torch.cuda.Stream()
            # The inputs, the output and the workspace fill are made on the
            # layer's stream, so that the layer's work is ordered after them.
            with torch.cuda.stream(stream):
                slots = case["slots"][rank]
                inputs = [x[rank * m:(rank + 1) * m].contiguous(), w_gate,
                          w13[slots].contiguous(), w2[slots].contiguous()]
                out = torch.full((m, h), float("nan"), dtype=torch.bfloat16, device="cuda")
                invalid[rank] = layer.run(inputs, out, group, stream)
            stream.synchronize()
            got[rank * m:(rank + 1) * m] = out
        except Exception as failure:  # noqa: BLE001
            failures.append(f"rank {rank}: {failure}")

    if ranks == 1:
        group, _comm = nccl_group(layer)
        run_rank(0, group)
        replay = graph_replay_error(layer, single, [x.clone(), w_gate, w13, w2], group)
        transport = f"NCCL, one rank; CUDA-graph replay on new tokens: rel L2 {replay:.2e}"
        if not replay < 1e-2:
            failures.append(f"graph replay: rel L2 {replay:.2e} against the single-device layer")
    else:
        emulated = EmulatedGroup(ranks)
        threads = [threading.Thread(target=run_rank, args=(rank, emulated.groups[rank]))
                   for rank in range(ranks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        transport = f"emulated group of {ranks} on one GPU"
    torch.cuda.synchronize()
    if failures:
        print(f"FAIL: {case['name']} ({transport}): {'; '.join(failures)}", flush=True)
        return False
    against_single = relative_l2(got.double().cpu().numpy(), expected.double().cpu().numpy())
    against_cpu = relative_l2(got.double().cpu().numpy(), cpu.double().cpu().numpy())
    rows = sorted(set(torch.randint(0, ranks * m, (6,), generator=generator,
                                    device="cuda").tolist()) | {0, ranks * m - 1})
    against_f64 = relative_l2(got[rows].double().cpu().numpy(),
                              reference_rows(config, x, w_gate, w13, w2, rows))
    finite = bool(torch.isfinite(got).all())
    good = (finite and against_single < 1e-2 and against_cpu < 1e-2 and against_f64 < 1e-2
            and invalid == [0] * ranks)
    slots = case["slots"] if len(case["slots"][0]) <= 8 else f"{len(case['slots'][0])} per rank"
    print(f"{'ok' if good else 'FAIL'}: {case['name']} ({transport}, {m} tokens per rank, "
          f"slots {slots}): rel L2 {against_cpu:.2e} against moe-run's CPU rank programs, "
          f"{against_single:.2e} against the single-device layer, {against_f64:.2e} against "
          f"float64 on {len(rows)} rows; invalid ids {invalid}; all outputs written: {finite}",
          flush=True)
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("layers", type=pathlib.Path)
    parser.add_argument("--ranks", default="",
                        help="only the cases of these rank counts (comma-separated)")
    args = parser.parse_args()
    generator = torch.Generator(device="cuda")
    generator.seed()
    cases = json.loads((args.layers / "ep.json").read_text())
    if args.ranks:
        wanted = {int(r) for r in args.ranks.split(",")}
        cases = [case for case in cases if case["ranks"] in wanted]
    failures = sum(not check_case(args.layers, case, generator) for case in cases)
    print(f"expert-parallel layers: {len(cases) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
