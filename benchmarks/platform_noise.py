"""How steady is this machine's speed? Block medians of an in-cache and two memory-bound loops on one CPU.

    python benchmarks/platform_noise.py [--seconds 15] [--cpu 0] [--interleaved]

Each loop runs for `--seconds`, cut into 0.5 s blocks; a block's figure is the median time of one
pass (microseconds). A steady machine prints flat rows (max/min close to 1.00). On the shared VM
this project is developed on, with nothing else of ours running, the memory-bound rows show phases of
1-3 s that are 30-40% slower: run this before and after a latency benchmark to know whether the
machine, not the harness, moved (see issue 4's note).

`--interleaved` runs a model and the loops in turns instead (MobileNet alpha 0.25 at 128x128, random
weights, a one-thread tf.function as the agent times it, then one call of each loop), in one process
for `--seconds`, and prints the block medians side by side: when the model's time moves, the plain
loops move with it, so the change comes from the machine, not from TensorFlow or the harness.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def block_medians(work, seconds: float, block_s: float = 0.5) -> list[float]:
    """Median time of one call of `work` (us) per block of `block_s` seconds, for `seconds`."""
    blocks, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        times, start = [], time.monotonic()
        while time.monotonic() - start < block_s:
            before = time.perf_counter_ns()
            work()
            times.append(time.perf_counter_ns() - before)
        blocks.append(statistics.median(times) / 1e3)
    return blocks


def interleaved(loops: dict, seconds: float, cpu: int, block_s: float = 2.0) -> None:
    """Model call, then one call of each loop, in turns; print block medians (us) of each side by side."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = keras.applications.MobileNet(alpha=0.25, input_shape=(128, 128, 3), weights=None)
    image = tf.random.uniform((1, 128, 128, 3), seed=0)
    call = tf.function(lambda x: model(x, training=False))
    call(image)
    for thread in os.listdir("/proc/self/task"):  # TensorFlow's threads too
        os.sched_setaffinity(int(thread), [cpu])
    works = {"MobileNet-0.25-128": lambda: call(image).numpy()} | loops
    print("block medians (us): " + "  ".join(f"{name:>20}" for name in works))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        times: dict[str, list[int]] = {name: [] for name in works}
        start = time.monotonic()
        while time.monotonic() - start < block_s:
            for name, work in works.items():
                before = time.perf_counter_ns()
                work()
                times[name].append(time.perf_counter_ns() - before)
        print(" " * 20 + "  ".join(f"{statistics.median(t) / 1e3:20.0f}" for t in times.values()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--interleaved", action="store_true", help="a model and the loops in turns, side by side")
    args = parser.parse_args()
    os.sched_setaffinity(0, [args.cpu])
    small = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    l2 = np.ones(256 * 1024, dtype=np.float32)  # 1 MiB: fits the L2 cache
    dram = np.ones(16 * 1024 * 1024, dtype=np.float32)  # 64 MiB: beyond the caches
    loops = {"matmul 64x64 (in L1)": lambda: small @ small, "sum 1 MiB (L2)": l2.sum, "sum 64 MiB (memory)": dram.sum}
    print(f"CPU {args.cpu}, load {os.getloadavg()}")
    if args.interleaved:
        interleaved(loops, args.seconds, args.cpu)
        return
    for name, work in loops.items():
        blocks = block_medians(work, args.seconds)
        print(f"{name:22} max/min {max(blocks) / min(blocks):.2f}  blocks (us): "
              + " ".join(f"{b:.0f}" for b in blocks))


if __name__ == "__main__":
    main()
