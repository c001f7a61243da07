"""The measurement agent: one model, one fresh process, one JSON result (standard library + TensorFlow only).

The local runner runs this file as a subprocess; the SSH runner copies it to a board and runs it
there, so both produce the same statistics. Usage: `python agent.py JOB.json` (or `-` for stdin):
the result is the last stdout line, prefixed with RESULT_MARKER. Locally, perfpred.measure.forkserver runs
`measure` in fresh forked children of one process that imported the framework once. The statistics
functions are pure and importable (perfpred.measure.agent) without TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import platform
import statistics
import sys
import time

RESULT_MARKER = "PERFPRED-RESULT "
AGENT_VERSION = 5  # part of settings_id: rows of another agent version are never mixed (5: the machine probe)
Z95 = 1.959964


# --- statistics (pure) -----------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, linear interpolation between closest ranks."""
    position = (len(sorted_values) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def median_ci_half_width(values: list[float]) -> float:
    """Half-width of the distribution-free 95% confidence interval of the median (order statistics).

    The interval is [x_(j), x_(k)] with j, k = n/2 -+ 1.96 sqrt(n)/2 (normal approximation to the
    binomial); infinite below 6 values, where no such interval exists.
    """
    n = len(values)
    if n < 6:
        return math.inf
    ordered = sorted(values)
    spread = Z95 * math.sqrt(n) / 2.0
    low = max(int(math.floor(n / 2.0 - spread)), 1)
    high = min(int(math.ceil(n / 2.0 + 1 + spread)), n)
    return (ordered[high - 1] - ordered[low - 1]) / 2.0


def spearman(values: list[float]) -> float:
    """Spearman rank correlation between iteration index and value (0 for a constant series)."""
    n = len(values)
    order = sorted(range(n), key=values.__getitem__)
    ranks = [0.0] * n
    for rank, index in enumerate(order):
        ranks[index] = float(rank)
    mean = (n - 1) / 2.0
    covariance = sum((i - mean) * (r - mean) for i, r in enumerate(ranks))
    variance = sum((i - mean) ** 2 for i in range(n))
    return covariance / variance if variance else 0.0


def classify_pattern(values: list[float], spike_sigmas: float = 5.0, drift_rho: float = 0.5,
                     drift_rel: float = 0.01) -> dict:
    """Classify a timing series into the seed's four kinds of variation.

    Rule, applied in order: `drift` when the rank correlation of value with iteration index is at
    least `drift_rho` in magnitude AND the median of the last third differs from that of the first
    third by at least `drift_rel` of the median; else `high_spikes` / `low_spikes` when at least
    max(1, 0.5% of n) values lie more than `spike_sigmas` robust sigmas (1.4826 MAD, floored at 0.2%
    of the median) above / below the median (the more numerous side wins, ties go high); else
    `white_noise`. Series shorter than 10 values are `unclassified`.
    """
    n = len(values)
    if n < 10:
        return {"pattern": "unclassified", "high_spikes": 0, "low_spikes": 0, "drift_rho": 0.0}
    middle = statistics.median(values)
    mad = statistics.median(abs(v - middle) for v in values)
    sigma = max(1.4826 * mad, 0.002 * abs(middle), 1e-12)
    high = sum(v > middle + spike_sigmas * sigma for v in values)
    low = sum(v < middle - spike_sigmas * sigma for v in values)
    rho = spearman(values)
    third = n // 3
    shift = (statistics.median(values[-third:]) - statistics.median(values[:third])) / middle if middle else 0.0
    if abs(rho) >= drift_rho and abs(shift) >= drift_rel:
        pattern = "drift"
    elif max(high, low) >= max(1, math.ceil(0.005 * n)):
        pattern = "high_spikes" if high >= low else "low_spikes"
    else:
        pattern = "white_noise"
    return {"pattern": pattern, "high_spikes": int(high), "low_spikes": int(low), "drift_rho": round(rho, 4)}


def summarize(times_ms: list[float], trim: float = 0.05) -> dict:
    """Statistics of a series of per-iteration times in ms (mean, median, p90, p99, cv, pattern, ...)."""
    if not times_ms:
        raise ValueError("no timed iterations to summarize")
    ordered = sorted(times_ms)
    n = len(ordered)
    mean = statistics.fmean(ordered)
    std = statistics.stdev(ordered) if n > 1 else 0.0
    cut = int(n * trim)
    trimmed = ordered[cut:n - cut] if n - 2 * cut > 0 else ordered
    median = statistics.median(ordered)
    half_width = median_ci_half_width(ordered)
    return {
        "mean_ms": mean, "median_ms": median, "min_ms": ordered[0], "max_ms": ordered[-1], "std_ms": std,
        "p90_ms": percentile(ordered, 90), "p99_ms": percentile(ordered, 99),
        "trimmed_mean_ms": statistics.fmean(trimmed), "iterations": n, "cv": std / mean if mean else 0.0,
        "median_ci_rel": half_width / median if median and math.isfinite(half_width) else None,
    } | classify_pattern(list(times_ms))


def stop_reason(times_ms: list[float], elapsed_s: float, schedule: dict) -> str | None:
    """Why a schedule stops after these timed iterations, or None to keep going.

    fixed: after `iterations`. adaptive: `time_cap` past `max_seconds`, `max_iterations`, or
    `converged` once at least `min_iterations` ran for at least `min_seconds` and the 95% half-width of the median is at most
    `target_rel_ci` of it (checked every `check_every` iterations).
    """
    n = len(times_ms)
    if schedule["kind"] == "fixed":
        return "fixed" if n >= schedule["iterations"] else None
    if n >= schedule["max_iterations"]:
        return "max_iterations"
    if elapsed_s >= schedule["max_seconds"]:
        return "time_cap"
    if (n >= schedule["min_iterations"] and elapsed_s >= schedule.get("min_seconds", 0.0)
            and n % schedule.get("check_every", 1) == 0):
        median = statistics.median(times_ms)
        if median_ci_half_width(times_ms) <= schedule["target_rel_ci"] * median:
            return "converged"
    return None


def swap_activity(before: dict, after: dict, process_swap_kb: int) -> bool:
    """Whether swapping happened between two /proc/vmstat readings or the process has pages in swap."""
    moved = sum(after.get(k, 0) - before.get(k, 0) for k in ("pswpin", "pswpout"))
    return moved > 0 or process_swap_kb > 0


def timeout_result(timeout_s: float) -> dict:
    """The failed result of a worker stopped at its time limit."""
    return {"status": "failed", "reason": f"timeout: no result after {timeout_s:g} s (raise measure.timeout_s)"}


def crash_result(job: dict, error: BaseException) -> dict:
    """The failed result of a measurement that raised instead of returning one."""
    return {"model": job.get("model"), "status": "failed", "reason": f"{type(error).__name__}: {error}"[:500]}


def death_reason(exit_code: int) -> str:
    """How a worker that left no result ended: a signal (a negative code, or 128 + signal from a shell) or an exit code."""
    if exit_code < 0 or exit_code == 128 + 9:
        signal_number = -exit_code if exit_code < 0 else exit_code - 128
        return f"worker killed by signal {signal_number}" + (" (out of memory?)" if signal_number == 9 else "")
    return f"worker exited with code {exit_code}"


# --- the process: environment, memory, noise control -----------------------------------------

def _proc_status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def file_backed_mb() -> float:
    """Resident pages of this process that map files (shared libraries, mostly), in MB.

    They are left out of the memory figures: how many of them a process holds depends on how it
    was started (a forked child inherits none, a new interpreter faults in most of TensorFlow's
    libraries while importing it) and on what the page cache holds, not on the model. What remains
    (anonymous and shared memory: heap, tensors, the framework's own state) is the same for a
    fork worker, a spawned one and a board.
    """
    return max(_proc_status_kb("RssFile"), 0) / 1024


def _vmstat() -> dict:
    try:
        with open("/proc/vmstat") as vmstat:
            return {k: int(v) for k, v in (line.split() for line in vmstat) if k in ("pswpin", "pswpout")}
    except OSError:
        return {}


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next peak covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def environment() -> dict:
    """What the numbers depend on besides the model: CPU, cores, kernel, governor, load."""
    cpu_model = platform.processor() or platform.machine()
    cpuinfo = _read_text("/proc/cpuinfo") or ""
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("model name", "hardware")):
            cpu_model = line.split(":", 1)[1].strip()
            break
    return {
        "hostname": platform.node(), "cpu_model": cpu_model, "cpu_cores": os.cpu_count(),
        "kernel": platform.release(), "python_version": platform.python_version(),
        "governor": _read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "unreadable",
        "load_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _pin_process(pid, cpus) -> None:
    """Pin every thread of a process (a pid or "self") to `cpus`; a thread or process that ended meanwhile is skipped."""
    task = f"/proc/{pid}/task"
    for tid in os.listdir(task) if os.path.isdir(task) else (["0"] if pid == "self" else []):
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(int(tid), cpus)


def pin_threads(cpus, allowed) -> str | None:
    """Pin every thread of this process (not only the caller) to `cpus` among `allowed`; return the CPUs it pinned
    them to (without `cpus`: the CPUs it has).

    Not read back after pinning: a worker that ends its timed run lets every other worker use every CPU again
    (timing_turn), and doing so between this pin and a read-back recorded a preparing worker as on the timing CPU."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    if cpus:
        pinned = sorted(c for c in cpus if c in allowed) or sorted(allowed)
        try:
            os.sched_setaffinity(0, pinned)  # this thread first: whether pinning is permitted at all
        except OSError:
            return ",".join(map(str, sorted(os.sched_getaffinity(0))))
        _pin_process("self", pinned)
        return ",".join(map(str, pinned))
    return ",".join(map(str, sorted(os.sched_getaffinity(0))))


def preparation_cpus(cpu_affinity, prepare_cpus, allowed) -> list[int]:
    """The CPUs a worker prepares on: `prepare_cpus` if given, else the allowed ones outside the timing CPUs."""
    return sorted(prepare_cpus or set(allowed) - set(cpu_affinity or ()))


def apply_noise_control(job: dict, allowed) -> dict:
    """Pin every thread to the timing CPUs and raise the priority as configured; return what was applied."""
    applied: dict = {"cpu_affinity": pin_threads(job.get("cpu_affinity"), allowed), "priority": None}
    if job.get("priority") is not None:
        with contextlib.suppress(OSError):  # not permitted here: the applied value below says so
            os.setpriority(os.PRIO_PROCESS, 0, int(job["priority"]))
    applied["priority"] = os.getpriority(os.PRIO_PROCESS, 0)
    # With the kernel's autogroup scheduling, a nice value only ranks processes of one session against
    # each other; the session's own nice ranks it against the other sessions of a shared machine.
    applied["autogroup_nice"] = None
    if job.get("priority") is not None and _read_text("/proc/sys/kernel/sched_autogroup_enabled") == "1":
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(int(job["priority"])))
        group = _read_text("/proc/self/autogroup") or ""
        applied["autogroup_nice"] = int(group.split()[-1]) if group.split() else None
    return applied


def _process_tree(pid: int) -> list[int]:
    """A process and all its descendants (Linux /proc)."""
    tree, stack = [], [pid]
    while stack:
        tree.append(stack.pop())
        try:
            threads = os.listdir(f"/proc/{tree[-1]}/task")
        except OSError:  # the process ended while the tree was walked (checking first would race with its exit)
            threads = []
        for tid in threads:
            stack += [int(c) for c in (_read_text(f"/proc/{tree[-1]}/task/{tid}/children") or "").split()]
    return tree


def _pin_others(cpus) -> None:
    """Pin every thread of the other workers of this fork server (and their children) to `cpus`."""
    mine = set(_process_tree(os.getpid()))
    for pid in _process_tree(os.getppid())[1:]:
        if pid not in mine:
            _pin_process(pid, cpus)


@contextlib.contextmanager
def timing_turn(lock_path: str | None, prepare_cpus, allowed):
    """Hold the timing CPUs alone: workers that prepare concurrently take turns on a file lock.

    The holder moves the other workers to `prepare_cpus` for its timed run and, before passing the
    turn on, lets them use every CPU again, so that preparation uses the timing CPUs between timed runs.
    """
    if not lock_path:
        yield 0.0
        return
    import fcntl

    started = time.perf_counter()
    with open(lock_path, "a") as lock:  # opened here: each worker has its own open file, hence its own lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if prepare_cpus:
                _pin_others(prepare_cpus)
            yield time.perf_counter() - started
        finally:
            _pin_others(allowed)
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- the machine probe ---------------------------------------------------------------------------

#: Floats the probe sums: 1 MiB, which fits the L2 cache of every CPU measured here (and a Jetson's).
PROBE_FLOATS = 256 * 1024
#: Seconds the probe runs (a few hundred passes), on the timing CPU before the warm-up and after the timed run.
PROBE_SECONDS = 0.02


def probe_data():
    """The probe's array: PROBE_FLOATS float32 ones."""
    import numpy as np

    return np.ones(PROBE_FLOATS, dtype=np.float32)


def machine_probe_us(data=None, seconds: float = PROBE_SECONDS) -> float:
    """How fast this CPU runs now: the median time (us) of summing 1 MiB of float32, passes for `seconds`.

    On a shared VM a model's time moves with the machine's, up to 2x for tens of seconds, and an in-cache loop moves
    with it (benchmarks/platform_noise.py --interleaved: MobileNet 1755-2090 us while the 1 MiB sum went 58-69 us).
    Timed next to each model, it tells which rows were measured while the machine ran slow (stage.retime_slow).
    `data`: the array to sum (probe_data()), allocated before the timed run so that its peak memory never includes it.
    """
    data = probe_data() if data is None else data
    data.sum()
    times, end = [], time.perf_counter_ns() + seconds * 1e9
    while not times or time.perf_counter_ns() < end:
        before = time.perf_counter_ns()
        data.sum()
        times.append(time.perf_counter_ns() - before)
    return statistics.median(times) / 1e3


# --- the model: descriptor -> callable -----------------------------------------------------------

def _walk(node, visit) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def prepare_descriptor(descriptor: dict, input_width: int | None) -> dict:
    """Refuse code-carrying layers; rebuild the model at a square input width if one is given and differs.

    Only the model's own inputs change; the recorded build shapes of inner layers are dropped so that
    Keras infers them again from the new input.
    """
    def refuse_code(node: dict) -> None:
        if node.get("class_name") == "Lambda":
            name = node.get("config", {}).get("name", "?")
            raise ValueError(f"layer {name!r} is a Lambda layer: perfpred never runs code from a descriptor; "
                             "replace it with a standard Keras layer")

    _walk(descriptor, refuse_code)
    if input_width is None:
        return descriptor
    inputs = [layer["config"] for layer in descriptor.get("config", {}).get("layers", [])
              if layer.get("class_name") == "InputLayer"]
    shapes = [config.get("batch_shape") or config.get("batch_input_shape") for config in inputs]
    if not shapes or all(shape and len(shape) == 4 and shape[1:3] == [input_width] * 2 for shape in shapes):
        return descriptor  # already at this width: build it exactly as written
    for config, shape in zip(inputs, shapes, strict=True):
        if shape and len(shape) == 4:
            config["batch_shape"] = [shape[0], input_width, input_width, shape[3]]
            config.pop("batch_input_shape", None)

    def forget_build_shapes(node: dict) -> None:
        node.pop("build_config", None)

    for layer in descriptor.get("config", {}).get("layers", []):
        _walk(layer, forget_build_shapes)
    build = descriptor.get("build_config")
    if isinstance(build, dict) and isinstance(build.get("input_shape"), list) and len(build["input_shape"]) == 4:
        build["input_shape"] = [build["input_shape"][0], input_width, input_width, build["input_shape"][3]]
    return descriptor


def _build(descriptor: dict, job: dict):
    import keras

    keras.utils.set_random_seed(job.get("seed", 0))
    return keras.models.model_from_json(json.dumps(descriptor))  # random weights: never loaded


def _inputs(model):
    import numpy as np

    rng = np.random.default_rng(0)
    shapes = []
    for tensor in model.inputs:
        shape = [1 if d is None else int(d) for d in tensor.shape]
        if any(d is None for d in tensor.shape[1:]):
            raise ValueError(f"input {tensor.name} has an unknown dimension {tensor.shape}: give --input-size")
        shapes.append(shape)
    return [rng.standard_normal(shape).astype("float32") for shape in shapes]


def tf_callable(model, inputs: list, device: str):
    """The deployed graph: a traced tf.function; each call returns once its result is computed."""
    import tensorflow as tf

    specs = [tf.TensorSpec(x.shape, tf.float32) for x in inputs]
    graph = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                        input_signature=specs, jit_compile=False)
    tensors = [tf.constant(x) for x in inputs]
    sync = tf.test.experimental.sync_devices if device == "gpu" else None

    def call() -> None:
        outputs = graph(*tensors)
        if sync is not None:
            sync()
        tf.nest.flatten(outputs)[0].numpy()  # the result exists on the host

    return call


def convert_tflite(descriptor: dict, job: dict) -> tuple[bytes, dict]:
    """Build the Keras model and convert it to a float32 TFLite flatbuffer, weights frozen into it.

    Also returns the Keras model's output on the measurement input, so the interpreter's output can be
    checked against it: a conversion that does not compute the model is a failed row, never a figure.
    """
    import tensorflow as tf

    started = time.perf_counter()
    model = _build(descriptor, job)
    inputs = _inputs(model)
    built = {"build_s": time.perf_counter() - started, "input_width": int(inputs[0].shape[1])}
    specs = [tf.TensorSpec(x.shape, tf.float32) for x in inputs]
    graph = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False), input_signature=specs)
    expected = tf.nest.flatten(model(inputs if len(inputs) > 1 else inputs[0], training=False))[0].numpy()  # eager
    started = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()], model)
    # The default lowering through a SavedModel keeps the weights as resource variables that the interpreter
    # never initialises (NaN outputs, ~10x more ops) and takes ~4x longer; freezing is what a deployment ships.
    converter.experimental_lower_to_saved_model = False
    with _freezing_without_rebuild():
        flatbuffer = converter.convert()
    built |= {"convert_s": time.perf_counter() - started, "tflite_bytes": len(flatbuffer)}
    return flatbuffer, built | {"inputs": inputs, "expected_output": expected}


@contextlib.contextmanager
def _freezing_without_rebuild():
    """The TFLite converter freezes the function's variables into a GraphDef, then rebuilds a whole ConcreteFunction
    from it (imported, pruned, wrapped: ~40 % of converting ResNet-50) only to read its input and output tensors.
    Here the freezing keeps the GraphDef and takes those tensors from the function itself, less the captured
    tensors it turned into constants (as the rebuilt function's inputs are): the same flatbuffer, byte for byte
    (tests/test_measure.py; 25 of 25 zoo models, in 0.63 of the time: benchmarks/tflite_convert_speed.py). Where this
    TensorFlow lacks the private functions it relies on (another version, on a board), the converter runs as it is.
    (The same shortcut in tf2onnx's freezing changed its graphs: it reshaped other batch-norm constants, three
    layout breaks fewer in InceptionResNetV2, so the ONNX export keeps TensorFlow's stock freezing.)"""
    try:
        from tensorflow.python.framework import convert_to_constants as freezing

        stock = freezing.convert_variables_to_constants_v2_as_graph
        converter_data, replace = freezing._FunctionConverterDataInEager, freezing._replace_variables_by_constants
    except (ImportError, AttributeError):
        yield
        return

    class Frozen:
        def __init__(self, function, converted: set):
            gone = {id(function.graph.internal_captures[i]) for i in converted}
            self.inputs = [tensor for tensor in function.inputs if id(tensor) not in gone]
            self.outputs, self.graph = function.outputs, function.graph

    def freeze(function, lower_control_flow=True, aggressive_inlining=False):
        graph_def, converted = replace(converter_data=converter_data(
            func=function, lower_control_flow=lower_control_flow, aggressive_inlining=aggressive_inlining))
        return Frozen(function, converted), graph_def

    freezing.convert_variables_to_constants_v2_as_graph = freeze
    try:
        yield
    finally:
        freezing.convert_variables_to_constants_v2_as_graph = stock


def in_child(function, *args):
    """Run function(*args) in a forked child and return its result, so that its memory never counts here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            payload = ("ok", function(*args))
        except BaseException as error:
            payload = ("error", f"{type(error).__name__}: {error}")
        with os.fdopen(write_end, "wb") as pipe:
            pickle.dump(payload, pipe)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"the conversion process died (exit status {os.waitstatus_to_exitcode(status)})")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise RuntimeError(value)
    return value


def tflite_callable(flatbuffer: bytes, threads: int, inputs: list, expected=None):
    """The TFLite interpreter on a flatbuffer, inputs set once; each call is one invoke().

    With `expected` (the Keras output on these inputs), one invoke is checked against it first.
    """
    import numpy as np
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    for detail, value in zip(details, inputs, strict=True):
        interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
    if expected is not None:
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        scale = float(np.max(np.abs(expected))) or 1.0
        error = float(np.max(np.abs(output - expected))) / scale if output.shape == expected.shape else math.inf
        if not error <= 1e-3:  # NaN too
            raise RuntimeError(f"the TFLite model does not compute the Keras model: relative output error {error:.3g}")
    return interpreter.invoke


def run_schedule(call, schedule: dict, before_timed=None) -> tuple[list[float], dict]:
    """Warm up (discarded), then time calls with a monotonic ns clock until the schedule stops."""
    clock = time.perf_counter_ns
    started = clock()
    warmup_runs = 0
    while warmup_runs < schedule["warmup"] or (clock() - started) / 1e9 < schedule.get("warmup_seconds", 0.0):
        call()
        warmup_runs += 1
    warmup_s = (clock() - started) / 1e9
    if before_timed is not None:
        before_timed()
    window = [time.monotonic()]  # the system-wide clock: windows of different workers can be compared
    timed_start = clock()
    times_ms: list[float] = []
    reason = None
    while reason is None:
        before = clock()
        call()
        after = clock()
        times_ms.append((after - before) / 1e6)
        reason = stop_reason(times_ms, (after - timed_start) / 1e9, schedule)
    return times_ms, {"warmup_runs": warmup_runs, "warmup_s": warmup_s, "timed_s": (clock() - timed_start) / 1e9,
                      "stop_reason": reason, "timed_window_s": window + [time.monotonic()]}


def _onnx_file(job: dict) -> None:
    """An ONNX file has no descriptor to read: check it exists and that the target runs ONNX."""
    if job.get("toolchain") != "onnxruntime":
        raise ValueError("an ONNX file is measured on an onnxruntime target (e.g. --target host-cpu-onnxruntime)")
    if not os.path.isfile(job["descriptor"]):
        raise OSError("no such ONNX file")
    return None


def _prepare(descriptor: dict | None, job: dict, result: dict):
    """Build the model (TFLite: convert it in a child) and return the call that the schedule times."""
    threads = int(job.get("threads", {}).get("intra_op", 0))
    started = time.perf_counter()
    if job["toolchain"] == "onnxruntime":  # local only: the module is not copied to boards
        from perfpred.measure import onnx_runtime

        return onnx_runtime.prepare(descriptor, job, result, in_child)
    if job["toolchain"] == "tflite":  # converted in a child: the Keras model never lives in this process
        flatbuffer, built = in_child(convert_tflite, descriptor, job)
        inputs, expected = built.pop("inputs"), built.pop("expected_output")
        result |= built
        return tflite_callable(flatbuffer, threads or -1, inputs, expected)
    model = _build(descriptor, job)
    inputs = _inputs(model)
    result |= {"build_s": time.perf_counter() - started, "input_width": int(inputs[0].shape[1])}
    return tf_callable(model, inputs, job.get("device", "cpu"))


def measure(job: dict) -> dict:
    """Measure one model as the job says and return the result (status ok or failed, with a reason).

    Two phases: preparation (import, build or conversion, first call) on `prepare_cpus` (default:
    the CPUs outside `cpu_affinity`), then, holding the timing turn (`timing_lock`) when workers prepare concurrently, the timed run with
    every thread pinned to `cpu_affinity` at the configured priority.
    """
    allowed = set(job.get("allowed_cpus") or (os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()))
    result = {"agent_version": AGENT_VERSION, "model": job.get("model"), "status": "ok", "reason": ""}
    prepare = preparation_cpus(job.get("cpu_affinity"), job.get("prepare_cpus"), allowed) or None
    result |= environment() | {"prepare_cpus": pin_threads(prepare, allowed)}
    try:  # a descriptor that is unreadable or carries code fails before the framework import
        if str(job["descriptor"]).endswith(".onnx"):  # run as it is, by ONNX Runtime (perfpred.measure.onnx_runtime)
            descriptor = _onnx_file(job)
        else:
            with open(job["descriptor"]) as handle:
                descriptor = prepare_descriptor(json.load(handle), job.get("input_width"))
    except (OSError, ValueError) as error:
        return result | {"status": "failed", "reason": f"descriptor {job['descriptor']}: {error}"[:500]}
    started = time.perf_counter()
    import tensorflow as tf

    threads = job.get("threads", {})
    tf.config.threading.set_intra_op_parallelism_threads(int(threads.get("intra_op", 0)))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads.get("inter_op", 0)))
    device = job.get("device", "cpu")
    if device == "gpu":
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            raise RuntimeError("target device is gpu but TensorFlow sees no GPU on this machine")
        tf.config.experimental.set_memory_growth(gpus[0], True)
    result |= {"tf_version": tf.__version__, "import_s": time.perf_counter() - started}
    try:
        call = _prepare(descriptor, job, result)
    except Exception as error:  # a descriptor that cannot be built is a failed row, not a crash
        return result | {"status": "failed", "reason": f"build: {type(error).__name__}: {error}"[:500]}
    result["baseline_memory_mb"] = _proc_status_kb("VmRSS") / 1024 - file_backed_mb()
    result["build_peak_memory_mb"] = _proc_status_kb("VmHWM") / 1024 - file_backed_mb()
    first = time.perf_counter_ns()
    call()
    result["first_call_ms"] = (time.perf_counter_ns() - first) / 1e6
    swap_before: dict = {}

    def reset_peaks() -> None:  # right before the timed run: its peak, not the build's or the tracing's
        swap_before.update(_vmstat())
        if device == "gpu":
            tf.config.experimental.reset_memory_stats("GPU:0")
        result["peak_scope"] = "timed_run" if _reset_peak_rss() else "process"

    probed = probe_data()
    with timing_turn(job.get("timing_lock"), prepare, allowed) as waited_s:
        result |= apply_noise_control(job, allowed) | {"turn_wait_s": waited_s}
        result["probe_us"] = machine_probe_us(probed)  # before the warm-up, which warms the caches again
        times_ms, timing = run_schedule(call, job["schedule"], reset_peaks)
        result["probe_after_us"] = machine_probe_us(probed)
    result |= timing | summarize(times_ms, job.get("trim", 0.05))
    result["file_memory_mb"] = file_backed_mb()
    result["host_memory_mb"] = _proc_status_kb("VmHWM") / 1024 - result["file_memory_mb"]
    result["memory_mb"] = result["host_memory_mb"]
    if device == "gpu":
        result["memory_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    swap_kb = max(_proc_status_kb("VmSwap"), 0)
    result |= {"swapped": swap_activity(swap_before, _vmstat(), swap_kb), "process_swap_kb": swap_kb}
    result["latency_ms"] = result[job.get("central", "median") + "_ms"]
    result["times_ms"] = [round(t, 6) for t in times_ms]
    return result


def main(argv: list[str]) -> int:
    """Read the job (file or '-'), measure, print the result line; a failure is a result too."""
    if argv[1:] in ([], ["-"]):
        job = json.load(sys.stdin)
    else:
        with open(argv[1]) as handle:
            job = json.load(handle)
    try:
        result = measure(job)
    except Exception as error:
        result = crash_result(job, error)
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
