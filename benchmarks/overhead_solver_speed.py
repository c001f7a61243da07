"""The kernel overhead's bounded least squares: predictor.bounded_lsq (BVLS on the free coefficients, a pinned
constant moved to the right-hand side) against scipy's lsq_linear with its default trust-region method, as
`kernel-train` called it before, on the very problems one target's fit poses (collected while it runs).

Both solve every problem, interleaved in blocks; reported: the time of each, and how far apart their solutions
are in cost (relative) and in coefficients (where the optimum is not unique, both are optimal).

    python benchmarks/overhead_solver_speed.py --target host-cpu-onnxruntime --problems 3000
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host-cpu-onnxruntime")
    parser.add_argument("--problems", type=int, default=3000, help="problems timed (a random sample of those posed)")
    args = parser.parse_args()
    from scipy.optimize import lsq_linear

    from perfpred import config
    from perfpred.kernels import predictor, training

    posed = []
    solve = predictor.bounded_lsq

    def collecting(design, wanted, bounds):
        posed.append((design.copy(), np.array(wanted, float), (bounds[0].copy(), bounds[1].copy())))
        return solve(design, wanted, bounds)

    predictor.bounded_lsq = collecting
    started = time.perf_counter()
    training.fit_target(args.target, config.load_params())
    print(f"{args.target}: kernel-train's fit posed {len(posed)} bounded least-squares problems "
          f"({time.perf_counter() - started:.0f} s with bounded_lsq)")
    predictor.bounded_lsq = solve
    sample = np.random.default_rng(0).choice(len(posed), min(args.problems, len(posed)), replace=False)

    def trust_region(design, wanted, bounds):  # the former call: a pinned constant as bounds [c, c + 1e-12]
        lower, upper = bounds
        upper = np.where(upper <= lower, lower + 1e-12, upper)
        return lsq_linear(design, wanted, bounds=(lower, upper)).x

    seconds = {"bounded_lsq": 0.0, "lsq_linear trf": 0.0}
    solutions = {name: [None] * len(sample) for name in seconds}
    for block in np.array_split(np.arange(len(sample)), 20):
        order = list(seconds) if block[0] % 2 == 0 else list(seconds)[::-1]
        for name in order:
            method = solve if name == "bounded_lsq" else trust_region
            started = time.perf_counter()
            for i in block:
                solutions[name][i] = method(*posed[sample[i]])
            seconds[name] += time.perf_counter() - started

    def cost(i, x):
        design, wanted, _ = posed[sample[i]]
        return float(np.sum((design @ x - wanted) ** 2))

    relative = np.array([(cost(i, solutions["bounded_lsq"][i]) - cost(i, solutions["lsq_linear trf"][i]))
                         / max(cost(i, solutions["lsq_linear trf"][i]), 1e-300) for i in range(len(sample))])
    apart = np.array([np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)
                      for a, b in zip(solutions["bounded_lsq"], solutions["lsq_linear trf"], strict=True)])
    print(f"{len(sample)} problems: bounded_lsq {seconds['bounded_lsq']:.2f} s, lsq_linear (trf) "
          f"{seconds['lsq_linear trf']:.2f} s (ratio {seconds['bounded_lsq'] / seconds['lsq_linear trf']:.3f})")
    print(f"cost of bounded_lsq's solution relative to trf's: min {relative.min():.2e}, max {relative.max():.2e} "
          f"(negative: lower); largest coefficient apart, relative: median {np.median(apart):.3f}, max {apart.max():.3f}")


if __name__ == "__main__":
    main()
