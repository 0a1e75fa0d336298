//===- EpGroup.cpp - emulated expert-parallel group -----------------------===//
//
// Each hook is one collective: every rank publishes its buffers, waits for
// the others, moves data as its realization would (gathering every rank's
// data, or packing per destination and exchanging counts first), and waits
// again before returning, since another rank may still read what it
// published.
//
//===----------------------------------------------------------------------===//

#include "EpGroup.h"

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/ExecutionEngine/CRunnerUtils.h"

#include "llvm/ADT/ArrayRef.h"

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

using namespace mlir;
using namespace mlir::moe;

/// moe-run's report hook, for programs that run outside a group.
extern "C" void moe_report_runtime_error(int64_t code, int64_t value,
                                         int64_t bound);

namespace {
/// What one rank publishes for a collective.
struct Published {
  const void *input = nullptr;  // dispatch: rows; combine: expert outputs
  const void *ids = nullptr;    // dispatch: ids; combine: origin
  const void *extra = nullptr;  // combine: routing weights
  int64_t numTokens = 0;
  // all_to_all dispatch: what this rank sends to each destination.
  std::vector<std::vector<int64_t>> sends; // per destination: assignments
  std::vector<std::vector<int32_t>> slots; // per destination: local slots
  std::vector<float> partial;              // allgather combine: [R·M, H]
};

/// The group: its size, a reusable barrier and the published buffers.
struct Group {
  int64_t ranks = 1;
  const RuntimeErrorReporter *report = nullptr;
  std::mutex mutex;
  std::condition_variable released;
  int64_t arrived = 0, generation = 0;
  std::vector<Published> published;

  void arriveAndWait() {
    std::unique_lock<std::mutex> lock(mutex);
    int64_t current = generation;
    if (++arrived == ranks) {
      arrived = 0;
      ++generation;
      released.notify_all();
      return;
    }
    released.wait(lock, [&] { return generation != current; });
  }
};

Group *activeGroup = nullptr;
thread_local int64_t thisRank = 0;

/// The group of the calling thread, or a group of one outside
/// runEmulatedGroup (a one-rank program runs alone).
Group &currentGroup() {
  static thread_local Group alone;
  if (activeGroup)
    return *activeGroup;
  alone.published.resize(1);
  return alone;
}

void report(Group &group, RuntimeErrorCode code, int64_t value,
            int64_t bound) {
  if (group.report)
    (*group.report)(static_cast<int64_t>(code), value, bound);
  else
    moe_report_runtime_error(static_cast<int64_t>(code), value, bound);
}
} // namespace

/// Element (i, j) of a rank-2 strided memref.
template <typename T>
static T &at(StridedMemRefType<T, 2> &m, int64_t i, int64_t j) {
  return m.data[m.offset + i * m.strides[0] + j * m.strides[1]];
}
template <typename T>
static T &at(StridedMemRefType<T, 1> &m, int64_t i) {
  return m.data[m.offset + i * m.strides[0]];
}

/// Whether every rank published the same valid token count (a rank that
/// found its operands inconsistent publishes -1); reports a count that
/// differs from rank 0's (from that rank).
static bool tokenCountsAgree(Group &group) {
  int64_t expected = group.published[0].numTokens;
  int64_t mine = group.published[thisRank].numTokens;
  if (mine != expected && mine >= 0 && expected >= 0)
    report(group, RuntimeErrorCode::UnequalTokenCounts, mine, expected);
  return llvm::all_of(group.published, [&](const Published &p) {
    return p.numTokens == expected && p.numTokens >= 0;
  });
}

/// The (rank, slot) that serves assignment `a` of `source`, or rank -1 for
/// a dropped id (-1, or an invalid one, reported when `reportInvalid`).
template <typename Ids>
static std::pair<int32_t, int32_t>
servingOf(Group &group, Ids &ids, StridedMemRefType<int32_t, 3> &serving,
          int64_t source, int64_t a, bool reportInvalid) {
  int64_t k = ids.sizes[1], experts = serving.sizes[1];
  int32_t id = at(ids, a / k, a % k);
  if (id == -1)
    return {-1, -1};
  if (id < -1 || id >= experts) {
    if (reportInvalid)
      report(group, RuntimeErrorCode::InvalidDispatchId, id, experts);
    return {-1, -1};
  }
  int32_t *entry = serving.data + serving.offset +
                   source * serving.strides[0] + id * serving.strides[1];
  return {entry[0], entry[serving.strides[2]]};
}

namespace {
/// The results of a dispatch on this rank, filled row by row.
template <typename T> struct DispatchResults {
  StridedMemRefType<T, 2> &rows;
  StridedMemRefType<int32_t, 2> &localIds;
  StridedMemRefType<int32_t, 1> &origin;
  int64_t next = 0;

  void padAll() {
    for (int64_t q = 0; q < origin.sizes[0]; ++q) {
      for (int64_t h = 0; h < rows.sizes[1]; ++h)
        at(rows, q, h) = T(0);
      at(localIds, q, 0) = -1;
      at(origin, q) = -1;
    }
  }
  void append(StridedMemRefType<T, 2> &input, int64_t token, int32_t slot,
              int64_t originIndex) {
    for (int64_t h = 0; h < rows.sizes[1]; ++h)
      at(rows, next, h) = at(input, token, h);
    at(localIds, next, 0) = slot;
    at(origin, next) = static_cast<int32_t>(originIndex);
    ++next;
  }
};
} // namespace

/// allgather: this rank gathers every rank's ids and rows (here: reads them
/// where they were published) and keeps the assignments it serves.
template <typename T>
static void dispatchByAllgather(Group &group,
                                StridedMemRefType<int32_t, 3> &serving,
                                DispatchResults<T> &results) {
  for (int64_t source = 0; source < group.ranks; ++source) {
    auto &input = *static_cast<StridedMemRefType<T, 2> *>(
        const_cast<void *>(group.published[source].input));
    auto &ids = *static_cast<StridedMemRefType<int32_t, 2> *>(
        const_cast<void *>(group.published[source].ids));
    int64_t numAssignments = ids.sizes[0] * ids.sizes[1];
    for (int64_t a = 0; a < numAssignments; ++a) {
      auto [rank, slot] = servingOf(group, ids, serving, source, a,
                                    /*reportInvalid=*/source == thisRank);
      if (rank == thisRank)
        results.append(input, a / ids.sizes[1], slot,
                       source * numAssignments + a);
    }
  }
}

/// all_to_all: every source has packed its assignments per destination;
/// the counts tell each destination where each source's rows go.
template <typename T>
static void dispatchByAllToAll(Group &group, DispatchResults<T> &results) {
  for (int64_t source = 0; source < group.ranks; ++source) {
    const Published &from = group.published[source];
    auto &input = *static_cast<StridedMemRefType<T, 2> *>(
        const_cast<void *>(from.input));
    auto &ids = *static_cast<StridedMemRefType<int32_t, 2> *>(
        const_cast<void *>(from.ids));
    int64_t numAssignments = ids.sizes[0] * ids.sizes[1];
    const std::vector<int64_t> &sent = from.sends[thisRank];
    for (auto [a, slot] : llvm::zip(sent, from.slots[thisRank]))
      results.append(input, a / ids.sizes[1], slot,
                     source * numAssignments + a);
  }
}

/// Packs this rank's assignments per destination (all_to_all's first step).
static void packSends(Group &group, StridedMemRefType<int32_t, 2> &ids,
                      StridedMemRefType<int32_t, 3> &serving) {
  Published &mine = group.published[thisRank];
  mine.sends.assign(group.ranks, {});
  mine.slots.assign(group.ranks, {});
  for (int64_t a = 0; a < ids.sizes[0] * ids.sizes[1]; ++a) {
    auto [rank, slot] = servingOf(group, ids, serving, thisRank, a,
                                  /*reportInvalid=*/true);
    if (rank < 0)
      continue;
    mine.sends[rank].push_back(a);
    mine.slots[rank].push_back(slot);
  }
}

template <typename T>
static void dispatch(StridedMemRefType<T, 2> *input,
                     StridedMemRefType<int32_t, 2> *ids,
                     StridedMemRefType<int32_t, 3> *serving,
                     StridedMemRefType<T, 2> *rows,
                     StridedMemRefType<int32_t, 2> *localIds,
                     StridedMemRefType<int32_t, 1> *origin,
                     int32_t realization) {
  Group &group = currentGroup();
  DispatchResults<T> results{*rows, *localIds, *origin};
  results.padAll();
  bool sized = serving->sizes[0] == group.ranks;
  if (!sized && thisRank == 0)
    report(group, RuntimeErrorCode::GroupSizeMismatch, serving->sizes[0],
           group.ranks);
  Published &mine = group.published[thisRank];
  mine.input = input;
  mine.ids = ids;
  // A token count of -1 makes every rank skip the exchange.
  bool rowsAgree = ids->sizes[0] == input->sizes[0];
  if (!rowsAgree)
    report(group, RuntimeErrorCode::MismatchedRows, ids->sizes[0],
           input->sizes[0]);
  mine.numTokens = rowsAgree && sized ? input->sizes[0] : -1;
  bool byAllToAll =
      realization == static_cast<int32_t>(EpRealization::AllToAll);
  if (byAllToAll && sized && rowsAgree)
    packSends(group, *ids, *serving);
  group.arriveAndWait();
  if (tokenCountsAgree(group)) {
    if (byAllToAll)
      dispatchByAllToAll(group, results);
    else
      dispatchByAllgather(group, *serving, results);
  }
  group.arriveAndWait();
}

//===----------------------------------------------------------------------===//
// Combine
//===----------------------------------------------------------------------===//

/// Calls `body(source, token, j, q)` for each valid received row q of
/// `rank`; reports an origin outside [-1, R·M·k) (from the rank that holds
/// it).
template <typename Body>
static void forEachReturned(Group &group, int64_t rank, int64_t k,
                            Body body) {
  const Published &from = group.published[rank];
  auto &origin = *static_cast<StridedMemRefType<int32_t, 1> *>(
      const_cast<void *>(from.ids));
  int64_t perSource = from.numTokens * k;
  for (int64_t q = 0; q < origin.sizes[0]; ++q) {
    int64_t o = at(origin, q);
    if (o == -1)
      continue;
    if (o < -1 || o >= group.ranks * perSource) {
      if (rank == thisRank)
        report(group, RuntimeErrorCode::InvalidOrigin, o,
               group.ranks * perSource);
      continue;
    }
    body(o / perSource, (o % perSource) / k, o % k, q);
  }
}

/// all_to_all: the rows come back to their source, which sums them over j.
static void combineByAllToAll(Group &group, int64_t k, float scale,
                              StridedMemRefType<float, 2> &weights,
                              StridedMemRefType<float, 2> &result) {
  int64_t numTokens = weights.sizes[0], width = result.sizes[1];
  // y[a] = the returned row of assignment a (null: dropped).
  std::vector<const float *> returned(numTokens * k, nullptr);
  std::vector<int64_t> stride(numTokens * k, 0);
  for (int64_t rank = 0; rank < group.ranks; ++rank) {
    auto &rows = *static_cast<StridedMemRefType<float, 2> *>(
        const_cast<void *>(group.published[rank].input));
    forEachReturned(group, rank, k, [&](int64_t source, int64_t token,
                                        int64_t j, int64_t q) {
      if (source != thisRank)
        return;
      returned[token * k + j] = &at(rows, q, 0);
      stride[token * k + j] = rows.strides[1];
    });
  }
  for (int64_t m = 0; m < numTokens; ++m)
    for (int64_t h = 0; h < width; ++h) {
      float sum = 0.0f;
      for (int64_t j = 0; j < k; ++j)
        if (const float *row = returned[m * k + j])
          sum += at(weights, m, j) * row[h * stride[m * k + j]];
      at(result, m, h) = scale * sum;
    }
}

/// allgather: each rank weights the rows it served into partial sums over
/// all tokens of all ranks; a reduce-scatter adds them up per source.
static void combineByReduceScatter(Group &group, int64_t k, float scale,
                                   StridedMemRefType<float, 2> &result) {
  int64_t numTokens = result.sizes[0], width = result.sizes[1];
  Published &mine = group.published[thisRank];
  mine.partial.assign(group.ranks * numTokens * width, 0.0f);
  auto &rows = *static_cast<StridedMemRefType<float, 2> *>(
      const_cast<void *>(mine.input));
  forEachReturned(group, thisRank, k, [&](int64_t source, int64_t token,
                                          int64_t j, int64_t q) {
    auto &weights = *static_cast<StridedMemRefType<float, 2> *>(
        const_cast<void *>(group.published[source].extra));
    float weight = at(weights, token, j);
    float *partial = &mine.partial[(source * numTokens + token) * width];
    for (int64_t h = 0; h < width; ++h)
      partial[h] += weight * at(rows, q, h);
  });
  group.arriveAndWait();
  for (int64_t m = 0; m < numTokens; ++m)
    for (int64_t h = 0; h < width; ++h) {
      float sum = 0.0f;
      for (int64_t rank = 0; rank < group.ranks; ++rank)
        sum += group.published[rank]
                   .partial[(thisRank * numTokens + m) * width + h];
      at(result, m, h) = scale * sum;
    }
}

static void combine(StridedMemRefType<float, 2> *rows,
                    StridedMemRefType<int32_t, 1> *origin,
                    StridedMemRefType<float, 2> *weights,
                    StridedMemRefType<float, 2> *result, float scale,
                    int32_t realization) {
  Group &group = currentGroup();
  int64_t k = weights->sizes[1];
  Published &mine = group.published[thisRank];
  mine.input = rows;
  mine.ids = origin;
  mine.extra = weights;
  mine.numTokens = weights->sizes[0];
  bool sized = origin->sizes[0] == group.ranks * mine.numTokens * k;
  if (rows->sizes[0] != origin->sizes[0])
    report(group, RuntimeErrorCode::MismatchedRows, rows->sizes[0],
           origin->sizes[0]);
  if (!sized || rows->sizes[0] != origin->sizes[0])
    mine.numTokens = -1; // every rank skips the exchange
  if (!sized && thisRank == 0)
    report(group, RuntimeErrorCode::GroupSizeMismatch,
           origin->sizes[0] / std::max<int64_t>(mine.numTokens * k, 1),
           group.ranks);
  for (int64_t m = 0; m < result->sizes[0]; ++m)
    for (int64_t h = 0; h < result->sizes[1]; ++h)
      at(*result, m, h) = 0.0f;
  group.arriveAndWait();
  bool agree = tokenCountsAgree(group);
  if (realization == static_cast<int32_t>(EpRealization::AllToAll)) {
    if (agree)
      combineByAllToAll(group, k, scale, *weights, *result);
  } else {
    // Every rank takes part in the reduce-scatter's barrier.
    if (agree)
      combineByReduceScatter(group, k, scale, *result);
    else
      group.arriveAndWait();
  }
  group.arriveAndWait();
}

//===----------------------------------------------------------------------===//
// Hooks and the group's threads
//===----------------------------------------------------------------------===//

extern "C" {
void _mlir_ciface_moe_ep_dispatch_f32(
    StridedMemRefType<float, 2> *input, StridedMemRefType<int32_t, 2> *ids,
    StridedMemRefType<int32_t, 3> *serving, StridedMemRefType<float, 2> *rows,
    StridedMemRefType<int32_t, 2> *localIds,
    StridedMemRefType<int32_t, 1> *origin, int32_t realization) {
  dispatch(input, ids, serving, rows, localIds, origin, realization);
}
// bf16 and f16 rows are moved as their 16-bit patterns.
void _mlir_ciface_moe_ep_dispatch_16(
    StridedMemRefType<uint16_t, 2> *input, StridedMemRefType<int32_t, 2> *ids,
    StridedMemRefType<int32_t, 3> *serving,
    StridedMemRefType<uint16_t, 2> *rows,
    StridedMemRefType<int32_t, 2> *localIds,
    StridedMemRefType<int32_t, 1> *origin, int32_t realization) {
  dispatch(input, ids, serving, rows, localIds, origin, realization);
}
void _mlir_ciface_moe_ep_combine(StridedMemRefType<float, 2> *rows,
                                 StridedMemRefType<int32_t, 1> *origin,
                                 StridedMemRefType<float, 2> *weights,
                                 StridedMemRefType<float, 2> *result,
                                 float scale, int32_t realization) {
  combine(rows, origin, weights, result, scale, realization);
}
}

llvm::ArrayRef<EpHook> mlir::moe::getEpHooks() {
  static const EpHook hooks[] = {
      {"_mlir_ciface_moe_ep_dispatch_f32",
       reinterpret_cast<void *>(&_mlir_ciface_moe_ep_dispatch_f32)},
      {"_mlir_ciface_moe_ep_dispatch_bf16",
       reinterpret_cast<void *>(&_mlir_ciface_moe_ep_dispatch_16)},
      {"_mlir_ciface_moe_ep_dispatch_f16",
       reinterpret_cast<void *>(&_mlir_ciface_moe_ep_dispatch_16)},
      {"_mlir_ciface_moe_ep_combine",
       reinterpret_cast<void *>(&_mlir_ciface_moe_ep_combine)}};
  return hooks;
}

void mlir::moe::runEmulatedGroup(
    int64_t ranks, const RuntimeErrorReporter &reporter,
    const std::function<void(int64_t rank)> &rankMain) {
  Group group;
  group.ranks = ranks;
  group.report = &reporter;
  group.published.resize(ranks);
  activeGroup = &group;
  std::vector<std::thread> threads;
  for (int64_t rank = 0; rank < ranks; ++rank)
    threads.emplace_back([&, rank] {
      thisRank = rank;
      rankMain(rank);
    });
  for (std::thread &thread : threads)
    thread.join();
  activeGroup = nullptr;
}
