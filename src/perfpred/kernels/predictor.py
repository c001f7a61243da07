"""Kernel predictors: one regressor per (target, kernel kind), and a model as the sum of its kernels.

A kernel's latency is a roofline-like prior (a constant plus time per FLOP plus time per byte, non-negative,
fitted on relative error) corrected by a small random forest on the logged configuration, which learns what
the prior misses (odd channel counts, groups, strides). The prior is what extrapolates to kernels larger than
any sampled; the forest only scales it. A model's latency is then a linear function of its kernel sum and
kernel count (the runtime's per-model and per-kernel overhead), fitted on whole-model measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from perfpred.kernels.detector import CONFIG_FIELDS, KINDS, POINTWISE, RATES, Kernel
from perfpred.kernels.sampler import BATCH_NORM_KINDS, NO_BATCH_NORM

MIN_FOREST_ROWS = 8  # below this a kind keeps its prior alone
#: kinds whose in-model latencies are summed into one overhead term each (None: every kind not named before). A
#: kind's cost inside a model differs from its cost alone by a factor of its own (caches, layouts, the runtime's
#: scheduling: TensorFlow runs a depthwise convolution inside a model ~2.6x slower than alone here, a convolution
#: ~0.5x), which the overhead fit learns per group, shrunk toward one common factor (fit_overhead_shrunk).
#: Transposed convolutions go with the convolutions and resizes with the element-wise kinds: the zoo holds neither,
#: so a group of their own could not be fitted, and in `rest` (until 2026-12-01) they took the factor of the zoo's
#: zero paddings and reshapes, 0 on TF and TFLite: a U-Net's three transposed convolutions (1.1 ms of its 7.0 on
#: TFLite, timed alone) were priced at nothing inside it.
#: Convolutions of a 1x1 window (`pointwise`, group_kind) are a group of their own on the targets whose rules name it
#: (conf/kernels/<target>.yaml `overhead_groups`, detector.OPTIONAL_GROUPS; elsewhere they join `conv`): a pointwise
#: convolution moves k^2 times more bytes per FLOP than a k x k one, and its in-model factor may differ from the
#: spatial ones'. One factor for both was fitted below 1 (TF 0.81, ONNX Runtime 0.71) by the zoo's ResNets and
#: MobileNets, whose time is mostly pointwise, and priced stacks of 3x3 and 5x5 convolutions 3-45 % too fast
#: (benchmarks/small_convs.py).
KIND_GROUPS: dict[str, tuple[str, ...] | None] = {
    POINTWISE: (POINTWISE,), "conv": ("conv", "transposed"), "depthwise": ("depthwise",), "dense": ("dense",),
    "pool": ("maxpool", "avgpool", "globalpool"), "elementwise": ("add", "unary", "concat", "resize"),
    "grouped": ("grouped",), "rest": None,
}
GROUP_COLUMNS = tuple(f"kernel_{group}_ms" for group in KIND_GROUPS)
#: a model's kernel terms as feature columns of a measurement table (`model_terms` without its constant): what the
#: kernel predictors say of the model, with no whole-model fit in them, so a model-level algorithm may read them
TERM_COLUMNS = ("kernel_sum_ms", "kernel_count", "kernel_read_mb", "kernel_dispatch_ms")
#: a group's factor (in-model / alone) is at most this many times the common one. The largest measured is TF's
#: depthwise convolutions, ~2.6x slower inside a model than alone (benchmarks/tf_in_context.py); a group that the
#: training models barely hold is otherwise free to take any factor: a fit without the synthetic networks gave
#: TFLite's pooling 12.9x (a fresh clone's tables, 2026-11-30), and the synthetic networks, predicted from the
#: others, 83 % MAPE. Zoo models predicted with their family left out (MAPE %, TF / TFLite / ORT), unbounded -> 4:
#: 20.4 / 19.0 / 24.9 -> 20.2 / 19.0 / 24.9 on one clone's tables, 17.5 / 42.8 / 24.8 -> 15.3 / 22.4 / 23.2 on a fresh
#: clone's (8 left the fresh TF and ORT figures unbounded's, 2 cost 3-6 points on TF)
MAX_GROUP_FACTOR = 4.0
#: strengths of the pull of each group's factor toward the common one, chosen by cross-validation
SHRINK_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
VECTOR_FLOATS = 8  # float32 lanes of this CPU's 256-bit vectors (AVX2; its AVX-512 holds 16, a multiple)


#: the unary kernels whose tensors (in + out) fit this many MB price a one-kernel model's input and output
#: (KernelModel.io_ms_per_mb): a core's L2 here (2 MiB) and on the Jetsons' CPUs. Larger ones stream from DRAM, at
#: 2-4x the cost per MB: three such draws (49-76 MB) in a redrawn kernel zoo doubled the slope fitted on every unary
#: kernel (0.025 -> 0.059 ms/MB on host-cpu-tf), and that slope, taken off every kernel of a model, moved the whole
#: zoo models predicted with their family left out from 17.3 to 21.4 % MAPE (that draw's unary kernels alone)
IO_CACHE_MB = 2.0
#: kinds whose prior also has the columns of a convolution split in groups (`_design`)
GROUP_COLUMN_KINDS = ("grouped",)
#: kinds whose prior prices the FLOPs of a convolution of one channel per group (depthwise, and ConvNeXt's grouped
#: ones) at a rate per window size (`_design`), each of these windows taking the sizes nearest it: a runtime has a
#: kernel per window, and TFLite (XNNPACK) runs 7x7 ones at ~8 GFLOP/s, 5-10x slower per FLOP than its 3x3 and 5x5
#: (the kernel zoo's `depthwise_by_window` draws). Out-of-fold MAPE of the depthwise kind, one rate / a rate per
#: window (3 fold draws, 2026-12-01's tables): TFLite 29.2 / 19.0 %, TF 2.3 / 2.2, ORT 53.1 / 55.3; grouped 28.3 /
#: 26.9, 22.8 / 18.6, 69.9 / 70.6. Whole zoo models, families left out: TFLite 10.4 -> 9.8 %, TF 13.5 -> 13.2, ORT
#: 11.6 -> 11.6 (adopted after that one look).
WINDOW_RATE_KINDS = ("depthwise", "grouped")
#: kinds whose prior prices the MB an activation function (or a layer norm) moves at a rate per function (`_design`,
#: the rates of detector.FUNCTION_RATES and CLASS_RATES; the kernel zoo's `unary_by_function` and
#: `unary_layer_norm` draws teach them)
FUNCTION_RATE_KINDS = ("unary",)
RATED_FUNCTIONS = RATES
MIN_FUNCTION_ROWS = 2
WINDOW_RATES = (3, 5, 7)
#: MB of a model's weights that stay in cache from one inference to the next (KernelModel.cache_mb), the candidates
#: `kernel-train` chooses from by leave-family-out on the zoo (fit_overhead_choosing). A kernel timed alone reads its
#: weights from cache whenever they fit; a model whose weights exceed what its cache keeps reads the excess from DRAM
#: on every inference. TensorFlow's own runtime buffers and the activations share this VM's 32 MB L3 with the weights,
#: and tenants we cannot see share it too, so the size is learnt, not read from the machine. Whole zoo models predicted
#: with their family left out (a fixed cache, before the choice; MAPE % TF / TFLite / ORT, 2026-11-30's tables):
#: every weight read as streamed (the model before) 12.5 / 13.5 / 17.4; 0 MB 12.4 / 14.1 / 18.0; 4 MB 12.8 / 12.6 /
#: 15.5; 8 MB 12.0 / 11.0 / 13.2; 16 MB 12.6 / 11.7 / 12.9; 32 MB 12.9 / 13.2 / 14.9; no weight streamed 15.1 /
#: 14.4 / 20.5
CACHE_GRID_MB = (0.0, 4.0, 8.0, 16.0, 32.0)
#: Shares of a one-kernel model's tensor I/O (KernelModel.io_ms_per_mb x the MB it feeds and fetches) taken off each
#: kernel inside a model (KernelModel.io_share), the candidates `kernel-train` chooses from with the cache size, by
#: the same leave-family-out. The I/O a one-kernel model pays is real, but part of it is work a model does too
#: (a kernel writes its output inside a model as well), and the MB-read term prices the memory a model moves: at a
#: full share a kernel with large tensors and little arithmetic came out at 0 ms inside a model (the first 1x1
#: convolution of a synthetic network at 320 px, 13 MB written, on host-cpu-tf), and nothing priced its writes.
#: Whole zoo models predicted with their family left out (MAPE %, TF / TFLite / ORT, 2026-12-01's tables, the cache
#: chosen as before): the full share (the model before) 12.8 / 12.7 / 13.1; a share of 0 for all three 10.7 / 10.8 /
#: 11.8 (seen after the grid was set, so not how it was chosen); the share chosen from this grid with the cache,
#: nested in the family left out, 10.7 / 12.3 / 12.8 (chosen on every family: 0 / 0.5 / 0, C 0 / 8 / 16 MB).
IO_SHARE_GRID = (0.0, 0.5, 1.0)
#: Channel blocks a kind's prior may count its FLOPs in (KernelRegressor.channel_block), chosen per (target, kind) by
#: the kernel zoo's own out-of-fold error (choose_channel_blocks; 1: FLOPs as counted). A runtime's convolution
#: computes whole blocks of output channels, one vector register wide: XNNPACK (TFLite), oneDNN (TensorFlow) and MLAS
#: (ONNX Runtime) tile them by 16 float32 lanes on this VM's AVX-512, 8 on AVX2, 4 on a Jetson's NEON, so a layer
#: of 19 channels costs what one of 32 does. Measured alone on TFLite (2026-12-01), vgg_odd_160's convolutions
#: (benchmarks/kernels_novel.py: 19, 37, 75, 141 channels) ran at 0.59x-0.97x the FLOP-counted predictor's speed,
#: tracking 19/32, 37/48, 75/80, 141/144, and unet_160's (multiples of 16) at 1.1x-1.3x. Out-of-fold MAPE of the
#: conv kind on the kernel zoo (3 fold draws), counted / blocks of 16: TF 8.5 / 5.6 %, TFLite 15.0 / 11.9, ORT 13.0 /
#: 14.7 (ORT's depthwise 74.0 / 69.2): a block helps where the runtime pads, hence a choice per target and kind.
CHANNEL_BLOCK_GRID = (1, 8, 16)
#: A block other than 1 is chosen for a kind only where its out-of-fold MAPE is at most this share of the counted
#: FLOPs' (choose_channel_blocks): a few tenths of a point between blocks is the folds' noise, and a block chosen on
#: it moved ONNX Runtime's whole zoo models, families left out, from 11.5 to 14.0 % (2026-12-01, no margin).
CHANNEL_BLOCK_MARGIN = 0.9
#: Channel alignments a kind's prior may split its FLOPs by (1: one FLOP column for every row). Under an alignment A,
#: the FLOPs of a kernel whose input or output channels are not a multiple of A go in columns of their own, at a
#: rate of their own: a runtime runs a kernel through its vectorised path only when the channels fill its blocks, and
#: through a generic one otherwise. ONNX Runtime's depthwise convolutions of the kernel zoo run at 16-100 GFLOP/s
#: with channels a multiple of 4 (492, 588, 1008 alike) and at 1.6-12 with 11, 30, 58, 73, 194, 309, 683 or 1401;
#: one FLOP rate for both mispriced either side by up to 5x. Chosen per (target, kind) after the channel block, by the
#: kernel zoo's out-of-fold MAPE with CHANNEL_BLOCK_MARGIN's margin (choose_alignments).
ALIGNMENT_GRID = (1, 4, 8)
#: The kernel table's rows of chains (sampler.build_chain): they teach no kind's regressor, only DISPATCH.
CHAIN = "chain"
#: How the overhead prices a kernel beyond its work (KernelModel.count_mode, chosen by `kernel-train` with the cache
#: size and I/O share, by leave-family-out): "count", a fitted cost per kernel, the same for every kind; "dispatch",
#: each kernel's in-model cost as the kernel zoo's chains measured it for its kind (dispatch_per_kernel), pinned as
#: the one-kernel model's call is (added to the overhead's constant, not fitted). TF runs a convolution with its batch
#: norm and ReLU at 13.6 us a kernel and an element-wise op at ~0: one fitted cost for both (8.7 us) priced the
#: synthetic networks' and MobileNetV3's many small convolutions too low and ResNet's adds too high.
COUNT_MODES = ("count", "dispatch")
#: the chain whose per-kernel cost a kind without chains of its own takes
DISPATCH_ALIASES = {"grouped": "conv", "transposed": "conv", "avgpool": "maxpool", "globalpool": "maxpool",
                    "concat": "add", "resize": "add", "other": "add"}


def padded_share(channels: np.ndarray, block: int) -> np.ndarray:
    """Channels rounded up to whole blocks, over the channels: the work a blocked kernel does per FLOP counted."""
    channels = np.maximum(np.asarray(channels, float), 1.0)
    return np.ceil(channels / block) * block / channels


def misaligned(frame: pd.DataFrame, alignment: int) -> np.ndarray:
    """Rows whose input or output channels are not a multiple of `alignment` (none under 1)."""
    channels = frame[["cin", "cout"]].to_numpy(float)
    return (np.mod(channels, max(int(alignment), 1)) != 0).any(axis=1)


def _design(frame: pd.DataFrame, group_columns: bool = False, channel_block: int = 1,
            window_rates: bool = False, alignment: int = 1, function_rates: tuple[str, ...] = ()) -> np.ndarray:
    """The prior's columns: 1, FLOPs, bytes moved (in millions, so that coefficients stay well scaled).

    `channel_block` counts the FLOPs of whole blocks of output channels (padded_share, CHANNEL_BLOCK_GRID).
    `window_rates` adds a FLOP column per WINDOW_RATES size for the rows of one channel per group, whose FLOPs then
    leave the common column (WINDOW_RATE_KINDS).
    `alignment` (ALIGNMENT_GRID) moves the FLOPs of the rows whose channels are not a multiple of it (misaligned)
    to a copy of each FLOP column, placed after them (and before the group columns).

    `function_rates` moves the MB of the rows whose activation function is one of them (the frame's `function`
    column, Kernel.function: a rate of detector.FUNCTION_RATES) to a column per function, placed last.

    `group_columns` adds two for a convolution split in groups, where a few channels per group leave the vector
    units idle and the runtime loops over the groups: FLOPs scaled by the share of a vector's lanes a group's
    channels leave idle (x8 at one channel per group, x1 from eight on), and groups x output pixels (millions).
    On host-cpu-tf grouped convolutions run through XLA and cost 0.02 ms per MFLOP at 44 channels per group, 0.2-2.4
    at 1-4: per group and output pixel, ~65 ns at 2 or 4 channels per group alike. Out-of-fold MAPE of the grouped
    kind (5 fold draws, `kernel-train`'s table of 2026-11-30) with neither / lanes / groups x pixels / both: TF 43.2 /
    32.7 / 24.3 / 23.5 %, TFLite 42.7 / 30.4 / 41.4 / 35.0, ONNX Runtime 52.4 / 51.9 / 52.0 / 51.9: both, the least in
    sum, for every target."""
    moved = (frame["bytes_read"] + frame["bytes_written"]).to_numpy(float)
    flops = frame["flops"].to_numpy(float)
    if channel_block > 1:
        flops = flops * padded_share(frame["cout"].to_numpy(float), channel_block)
    columns = [np.ones(len(frame)), flops / 1e6, moved / 1e6]
    if window_rates:
        groups = frame["groups"].to_numpy(float)
        one_per_group = (groups > 1) & (groups == frame["cin"].to_numpy(float))
        windows = np.asarray(WINDOW_RATES, float)
        nearest = windows[np.argmin(np.abs(frame["kernel_size"].to_numpy(float)[:, None] - windows[None, :]), axis=1)]
        columns[1] = np.where(one_per_group, 0.0, flops) / 1e6
        columns += [np.where(one_per_group & (nearest == window), flops, 0.0) / 1e6 for window in windows]
    if alignment > 1:
        off = misaligned(frame, alignment)
        flop_columns = [1, *range(3, len(columns))]
        columns += [np.where(off, columns[i], 0.0) for i in flop_columns]
        for i in flop_columns:
            columns[i] = np.where(off, 0.0, columns[i])
    if group_columns:
        groups = np.maximum(frame["groups"].to_numpy(float), 1.0)
        per_group = frame["cin"].to_numpy(float) / groups
        pixels = frame["output_elements"].to_numpy(float) / np.maximum(frame["cout"].to_numpy(float), 1.0)
        columns += [flops / 1e6 * VECTOR_FLOATS / np.clip(per_group, 1.0, VECTOR_FLOATS), groups * pixels / 1e6]
    if function_rates:
        functions = frame["function"].fillna("").to_numpy(str) if "function" in frame else np.full(len(frame), "")
        columns += [np.where(functions == rate, moved, 0.0) / 1e6 for rate in function_rates]
        columns[2] = np.where(np.isin(functions, list(function_rates)), 0.0, columns[2])
    return np.column_stack(columns)


@dataclass
class KernelRegressor:
    """Latency (ms) of one kernel kind from its configuration (detector.CONFIG_FIELDS)."""

    seed: int = 0
    coefficients: np.ndarray | None = None
    forest: object | None = None
    group_columns: bool = False  # the prior's columns of a grouped convolution (_design), for GROUP_COLUMN_KINDS
    channel_block: int = 1  # FLOPs counted in whole blocks of output channels (_design; 1 for models saved before)
    window_rates: bool = False  # a FLOP rate per window size (_design), for WINDOW_RATE_KINDS; False for models saved before
    alignment: int = 1  # misaligned channels' FLOPs at a rate of their own (_design); 1 for models saved before
    #: activation functions priced at an MB rate of their own (_design), for FUNCTION_RATE_KINDS: RATED_FUNCTIONS until
    #: `fit` keeps those its rows hold MIN_FUNCTION_ROWS of (the others cost the common rate); () for models saved before
    function_rates: tuple[str, ...] = ()

    @classmethod
    def for_kind(cls, kind: str, seed: int = 0, channel_block: int = 1, alignment: int = 1) -> KernelRegressor:
        return cls(seed, group_columns=kind in GROUP_COLUMN_KINDS, channel_block=channel_block,
                   window_rates=kind in WINDOW_RATE_KINDS, alignment=alignment,
                   function_rates=RATED_FUNCTIONS if kind in FUNCTION_RATE_KINDS else ())

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """The prior's columns of these rows (_design, with this regressor's options)."""
        return _design(frame, self.group_columns, self.channel_block, self.window_rates, self.alignment,
                       getattr(self, "function_rates", ()))

    def fit(self, frame: pd.DataFrame, latency_ms: np.ndarray) -> KernelRegressor:
        """Fit the prior (non-negative least squares on relative error), then the forest on the log ratio."""
        latency_ms = np.asarray(latency_ms, float)
        if self.function_rates:
            functions = frame["function"].fillna("") if "function" in frame else pd.Series("", index=frame.index)
            self.function_rates = tuple(f for f in self.function_rates if (functions == f).sum() >= MIN_FUNCTION_ROWS)
        design = self.design(frame)
        self.coefficients = nonnegative_on_relative_error(design, latency_ms)
        if not self.coefficients.any():
            self.coefficients = np.r_[latency_ms.mean(), np.zeros(design.shape[1] - 1)]
        if len(frame) >= MIN_FOREST_ROWS:
            from sklearn.ensemble import RandomForestRegressor

            residual = np.log(latency_ms / self._prior(frame))
            self.forest = RandomForestRegressor(n_estimators=60, min_samples_leaf=2, max_features=0.6,
                                                random_state=self.seed, n_jobs=1)
            self.forest.fit(_logged(frame), residual)
        return self

    def _prior(self, frame: pd.DataFrame) -> np.ndarray:
        return np.maximum(self.design(frame) @ self.coefficients, 1e-4)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted latency in ms per row, as measured alone (one model call per kernel)."""
        prior = self._prior(frame)
        if self.forest is None:
            return prior
        return prior * np.exp(self.forest.predict(_logged(frame)))

    def predict_in_model(self, frame: pd.DataFrame, io_ms_per_mb: float = 0.0,
                         fed_mb: np.ndarray | None = None) -> np.ndarray:
        """Predicted latency in ms per row inside a model: less the prior's constant, which is the cost of calling
        a one-kernel model (dispatch, fetching its output), paid once per model, not once per kernel; and less
        `io_ms_per_mb` per MB fed to and fetched from a one-kernel model (`fed_mb`: its input and output tensors, not
        its weights, which the one-kernel model holds; None: every byte it moves, as models saved before reckoned it),
        what that costs (KernelModel.io_ms_per_mb). Inside a model the tensors stay in the runtime; the memory its
        kernels do move is the overhead's MB-read term (model_terms)."""
        if fed_mb is None:
            fed_mb = (frame["bytes_read"] + frame["bytes_written"]).to_numpy(float) / 1e6
        return np.maximum(self.predict_less_call(frame) - io_ms_per_mb * np.asarray(fed_mb, float), 0.0)

    def predict_less_call(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted latency alone less the prior's constant (the one-kernel model's call); predict_in_model before
        the I/O is taken off."""
        return self.predict(frame) - self.coefficients[0]


def _logged(frame: pd.DataFrame) -> np.ndarray:
    """The forest's inputs: the logged configuration, channels per group, and whether the channel counts miss
    the 8-float vector width (an odd count leaves vector lanes idle: a VGG with odd channels runs slower per FLOP)."""
    channels = frame[["cin", "cout"]].to_numpy(float)
    per_group = np.log1p(channels[:, :1] / np.maximum(frame[["groups"]].to_numpy(float), 1.0))
    return np.column_stack([np.log1p(frame[list(CONFIG_FIELDS)].to_numpy(float)), per_group,
                            (channels % VECTOR_FLOATS != 0).astype(float)])


@dataclass
class KernelModel:
    """Every kind's regressor on one target, and the whole-model overhead (coefficients of `model_terms`)."""

    target: str
    regressors: dict[str, KernelRegressor] = field(default_factory=dict)
    overhead: np.ndarray = field(default_factory=lambda: np.r_[np.ones(len(KIND_GROUPS)), 0.0, 0.0, 0.0])
    log_residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))  # log(measured / predicted), left-out families
    zoo_terms: pd.DataFrame | None = None  # the zoo models' terms while training (perfpred.kernels.training)
    io_slope_ms_per_mb: float | None = None  # fit_io_slope's; None: the unary prior's slope (models saved before)
    #: MB of weights a model keeps in cache (CACHE_GRID_MB, chosen by `kernel-train`); None: models saved before it,
    #: whose MB-read term counted every weight and whose kernels paid the one-kernel model's I/O on their weights too
    cache_mb: float | None = None
    #: share of the one-kernel model's I/O taken off each kernel inside a model (IO_SHARE_GRID, chosen by
    #: `kernel-train`); None: models saved before it, which took all of it
    io_share: float | None = None

    #: per kind, the channel block its prior counts FLOPs in (choose_channel_blocks); None: models saved before it
    channel_blocks: dict[str, int] | None = None
    #: per kind, the channel alignment its prior splits FLOPs by (choose_alignments); None: models saved before it
    alignments: dict[str, int] | None = None
    #: per kind, a kernel's in-model cost beyond its work, in ms, from the kernel zoo's chains (dispatch_per_kernel);
    #: None: no chains measured (or a model saved before them)
    dispatch_ms: dict[str, float] | None = None
    #: COUNT_MODES' choice (`kernel-train`); None: models saved before it, which fitted a cost per kernel ("count")
    count_mode: str | None = None
    #: ms per MB written that the batch norm the kernel zoo's conv-like kernels are measured with costs
    #: (fit_batch_norm_rate), taken off a model's conv-like kernels that have none; None: models saved before it
    batch_norm_ms_per_mb: float | None = None
    #: the optional groups (detector.OPTIONAL_GROUPS) its overhead prices at factors of their own, as the target's
    #: rules name them (KernelModel.fit's `overhead_groups`); models saved before them have none
    overhead_groups: tuple[str, ...] = ()

    @classmethod
    def fit(cls, target: str, table: pd.DataFrame, seed: int = 0,
            by_block: dict[int, pd.Series] | None = None,
            by_alignment: dict[int, pd.Series] | None = None, overhead_groups=()) -> KernelModel:
        """Every kind's regressor on a kernel table, each with the channel block, then the channel alignment, its
        out-of-fold error chose (choose_channel_blocks and choose_alignments, on `by_block` and `by_alignment` if
        given), and the one-kernel model's I/O slope (fit_io_slope); its cache size and I/O share the grids' first
        until `kernel-train` chooses (a new model reckons with both either way). `overhead_groups`: the optional groups
        of its overhead (the target's rules' detector.OVERHEAD_GROUPS_KEY, training.overhead_groups)."""
        by_block = by_block or cross_validated_by_block(table, seed)
        blocks = choose_channel_blocks(table, seed, by_block)
        by_alignment = by_alignment or cross_validated_by_alignment(table, seed, blocks, by_block)
        alignments = choose_alignments(table, by_alignment)
        return cls(target, fit_kinds(table, seed, blocks, alignments), io_slope_ms_per_mb=fit_io_slope(table),
                   cache_mb=CACHE_GRID_MB[0], io_share=IO_SHARE_GRID[0], channel_blocks=blocks, alignments=alignments,
                   dispatch_ms=dispatch_per_kernel(table) or None, count_mode=COUNT_MODES[0],
                   batch_norm_ms_per_mb=fit_batch_norm_rate(table), overhead_groups=tuple(overhead_groups))

    def dispatch_sum_ms(self, kernels: list[Kernel]) -> float:
        """The in-model cost of a model's kernels beyond their work, each at its kind's chain's (DISPATCH_ALIASES for
        a kind without chains, 0 for one without either)."""
        dispatch = self.dispatch_ms or {}
        return float(sum(dispatch.get(k.kind, dispatch.get(DISPATCH_ALIASES.get(k.kind, ""), 0.0)) for k in kernels))

    def count_modes(self) -> tuple[str, ...]:
        """The COUNT_MODES this model can price kernels by: "dispatch" needs chains and a call to pin it beside."""
        return COUNT_MODES if self.dispatch_ms and self.call_ms > 0 else COUNT_MODES[:1]

    def _counted(self, terms: np.ndarray, kernels: list[Kernel], mode: str | None) -> np.ndarray:
        """model_terms' row as `mode` prices the kernels: "count" as it is; "dispatch" priced_by_dispatch."""
        if mode in (None, "count"):
            return terms
        return priced_by_dispatch(terms, self.dispatch_sum_ms(kernels), self.call_ms)

    @property
    def io_ms_per_mb(self) -> float:
        """What a one-kernel model pays per MB its kernel moves, beyond the kernel's work: fit_io_slope's per-MB
        slope of the `unary` kernels (an element-wise op does almost nothing but move its tensors) that fit the
        cache, 0 without them. On host-cpu-tf 0.025-0.043 ms/MB over the kernel zoo's draws of 2026-11-30. Taking
        it off every kernel's in-model latency moved the whole zoo models predicted with their family left out (kernel-train) from 22.8 to 22.2 % MAPE and from 32 to 47 % within
        10 % (tf), 22.3 to 21.6 % and 28 to 33 % (tflite), 30.4 to 30.1 % and 25 to 27 % (ORT)."""
        if self.io_slope_ms_per_mb is not None:
            return self.io_slope_ms_per_mb
        unary = self.regressors.get("unary")
        return float(unary.coefficients[2]) if unary is not None and unary.coefficients is not None else 0.0

    @property
    def call_ms(self) -> float:
        """What calling a model costs once, beyond its kernels (dispatch, fetching its output): the median of the
        kinds' prior constants, each the cost of calling a one-kernel model. The overhead takes it as its constant
        rather than fitting it: the zoo's real networks (0.5-100 ms here) leave a constant ill-determined, and a fit
        without the synthetic networks gave host-cpu-tf's 0.30 ms where a one-kernel model costs 0.10 (kernel-train,
        2026-11-30). Pinned, the zoo models predicted with their family left out went from 20.2 to 14.5 % MAPE
        (the synthetic networks, predicted from the others, 32 -> 17 %) on TF, 24.9 to 24.5 on ONNX Runtime, 19.0 to
        19.2 on TFLite (where a call costs 0.4 us)."""
        constants = [float(r.coefficients[0]) for r in self.regressors.values() if r.coefficients is not None]
        return float(np.median(constants)) if constants else 0.0

    def kernel_latencies(self, kernels: list[Kernel], io_share: float | None = None) -> np.ndarray:
        """Predicted latency (ms) of each kernel inside a model; a kind without a regressor uses the 'other' one.
        `io_share`: of the one-kernel model's I/O, the share taken off (IO_SHARE_GRID); default the model's own."""
        return self._in_model(*self._alone(kernels), io_share)

    def _alone(self, kernels: list[Kernel]) -> tuple[np.ndarray, np.ndarray]:
        """Each kernel's predicted latency alone less the one-kernel model's call (KernelRegressor.predict_less_call),
        and the MB a one-kernel model feeds and fetches: its activations in and out, or every byte it moves for
        models saved before the cache size (as KernelRegressor.predict_in_model reckons without `fed_mb`)."""
        frame = pd.DataFrame([k.features() | {"function": k.function} for k in kernels],
                             columns=[*CONFIG_FIELDS, "function"])
        kinds = np.array([k.kind for k in kernels])
        out = np.zeros(len(kernels))
        for kind in set(kinds):
            regressor = self.regressors.get(kind) or self.regressors.get("other")
            if regressor is None:
                raise ValueError(f"no kernel predictor for kind {kind!r} on {self.target}: measure its kernel zoo")
            mask = kinds == kind
            out[mask] = regressor.predict_less_call(frame[mask])
        out = out - self.batch_norm_ms(kernels)  # floored at 0 in _in_model, after the I/O is taken off
        if getattr(self, "cache_mb", None) is None:
            fed_mb = frame[["bytes_read", "bytes_written"]].to_numpy(float).sum(axis=1) / 1e6
        else:
            fed_mb = np.array([(k.bytes_read - k.weight_bytes + k.bytes_written) / 1e6 for k in kernels])
        return out, fed_mb

    def batch_norm_ms(self, kernels: list[Kernel]) -> np.ndarray:
        """Per kernel, what the batch norm its kind was measured with costs where the kernel has none (a conv-like
        kernel with no AFFINE layer fused): batch_norm_ms_per_mb x the MB it writes; 0 elsewhere."""
        rate = getattr(self, "batch_norm_ms_per_mb", None) or 0.0
        return np.array([rate * k.bytes_written / 1e6 if k.kind in BATCH_NORM_KINDS and not k.affine else 0.0
                         for k in kernels])

    def _in_model(self, alone_ms: np.ndarray, fed_mb: np.ndarray, io_share: float | None = None) -> np.ndarray:
        if io_share is None:
            io_share = 1.0 if getattr(self, "io_share", None) is None else self.io_share
        return np.maximum(alone_ms - io_share * self.io_ms_per_mb * fed_mb, 0.0)

    def terms(self, kernels: list[Kernel], cache_mb: float | None = None) -> np.ndarray:
        """The overhead's inputs: in-model kernel sums per group (ms, KIND_GROUPS), kernel count, MB read, 1.
        `cache_mb`: the weights kept in cache (model_terms); default the model's own."""
        cache_mb = getattr(self, "cache_mb", None) if cache_mb is None else cache_mb
        sums = group_sums(kernels, self.kernel_latencies(kernels), getattr(self, "overhead_groups", ()))
        terms = model_terms(sums, kernels, cache_mb)
        return self._counted(terms, kernels, getattr(self, "count_mode", None))

    def terms_by_candidate(self, kernels: list[Kernel], caches_mb=CACHE_GRID_MB,
                           io_shares=IO_SHARE_GRID) -> dict[tuple[float, float, str], np.ndarray]:
        """`terms` under each candidate (cache size, I/O share, count mode), the kernels predicted once."""
        alone, fed_mb = self._alone(kernels)
        candidates = {}
        for share in io_shares:
            sums = group_sums(kernels, self._in_model(alone, fed_mb, share), self.overhead_groups)
            for cache in caches_mb:
                terms = model_terms(sums, kernels, cache)
                candidates |= {(cache, share, mode): self._counted(terms, kernels, mode) for mode in self.count_modes()}
        return candidates

    def term_features(self, kernels: list[Kernel]) -> dict[str, float]:
        """The model's TERM_COLUMNS (in-model kernel sum in ms, kernel count, MB the kernels read, the kernels' in-model
        cost beyond their work by their chains, dispatch_sum_ms) and GROUP_COLUMNS."""
        terms = self.terms(kernels)
        groups = len(KIND_GROUPS)
        values = [float(terms[:groups].sum()), float(len(kernels)), float(terms[groups + 1]),
                  self.dispatch_sum_ms(kernels), *map(float, terms[:groups])]
        return dict(zip(TERM_COLUMNS + GROUP_COLUMNS, values, strict=True))

    def model_latency(self, kernels: list[Kernel]) -> float:
        """Predicted whole-model latency (ms): the overhead function of the kernel sum, count and bytes read."""
        return float(max(self.overhead @ self.terms(kernels), 1e-3))

    def interval(self, latency_ms: float, level: float = 0.9) -> tuple[float, float]:
        """A prediction interval from the residual quantiles of left-out families."""
        if not len(self.log_residuals):
            return latency_ms, latency_ms
        low, high = np.quantile(self.log_residuals, [(1 - level) / 2, (1 + level) / 2])
        return latency_ms * float(np.exp(low)), latency_ms * float(np.exp(high))


def measured(table: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    """A kernel table's rows measured ok, of one kind, or (None) of every kernel kind: the chains and the kernels
    measured without their batch norm (which only price it, fit_batch_norm_rate) left out."""
    ok = measured_ok(table) & ~without_batch_norm(table)
    return table[ok & ((table["kind"] != CHAIN) if kind is None else (table["kind"] == kind))]


def measured_ok(table: pd.DataFrame) -> pd.Series:
    """Which rows of a kernel table were measured ok (a positive latency), whatever they are."""
    return (table["status"] == "ok") & (table["latency_ms"] > 0)


def rated_for(table: pd.DataFrame, kinds) -> pd.DataFrame:
    """A kernel table as a target whose rules price activation functions at their own rates (detector.FUNCTION_RATES_KEY)
    reads it. Each entry of `kinds` is a kind (every function of it at its own rate) or `kind:function` (that function
    only: ONNX Runtime's layer norms, whose other functions cost it no more than in a model, see
    conf/kernels/host-cpu-onnxruntime.yaml). Elsewhere the function draws (`sampler.unary_by_function`,
    `sampler.unary_layer_norm`) are left out and no row names a function, so every other function costs its kind's
    common rate, as before the draws."""
    if "function" not in table.columns:
        return table
    kinds = list(kinds)
    functions = table["function"].fillna("").astype(str)
    rated = table["kind"].isin(kinds) | (table["kind"].astype(str) + ":" + functions).isin(kinds)
    named = (functions != "") & (table["kind"] != CHAIN)
    kept = table[~named | rated].copy()
    kept.loc[~(rated[kept.index] | (kept["kind"] == CHAIN)), "function"] = ""
    return kept


def without_batch_norm(table: pd.DataFrame) -> np.ndarray:
    """The rows of a kernel table measured without their batch norm (sampler.without_batch_norm)."""
    return table["name"].astype(str).str.endswith("_" + NO_BATCH_NORM).to_numpy(bool)


def fit_batch_norm_rate(table: pd.DataFrame) -> float:
    """ms per MB of output that a batch norm after a conv-like kernel costs: the median, over the kernel zoo's pairs
    (a configuration measured with and without it, sampler.without_batch_norm), of the difference over the MB the
    kernel writes; at least 0, and 0 without pairs."""
    ok = table[measured_ok(table)]
    latency = dict(zip(ok["name"], ok["latency_ms"], strict=True))
    bare = ok[without_batch_norm(ok)]
    paired = bare["name"].str[:-len(NO_BATCH_NORM) - 1].map(latency)  # the same configuration with its batch norm
    rates = [(with_ms - ms) / (written / 1e6)
             for with_ms, ms, written in zip(paired, bare["latency_ms"], bare["bytes_written"], strict=True)
             if pd.notna(with_ms) and written > 0]
    return max(float(np.median(rates)), 0.0) if rates else 0.0


def fit_kinds(table: pd.DataFrame, seed: int = 0, blocks: dict[str, int] | None = None,
              alignments: dict[str, int] | None = None) -> dict[str, KernelRegressor]:
    """One regressor per kind, on the table's ok rows; `blocks` and `alignments`: each kind's channel block and
    channel alignment (default 1)."""
    ok = measured(table)
    blocks, alignments = blocks or {}, alignments or {}
    return {kind: KernelRegressor.for_kind(kind, seed, blocks.get(kind, 1), alignments.get(kind, 1)).fit(
                rows, rows["latency_ms"].to_numpy())
            for kind, rows in ok.groupby("kind") if len(rows)}


def cross_validated_by_block(table: pd.DataFrame, seed: int = 0) -> dict[int, pd.Series]:
    """cross_validated with every kind in each block of CHANNEL_BLOCK_GRID (the same folds for every block)."""
    return {block: cross_validated(table, seed, blocks=block) for block in CHANNEL_BLOCK_GRID}


def chosen_out_of_fold(by_option: dict[int, pd.Series], table: pd.DataFrame, chosen: dict[str, int]) -> pd.Series:
    """cross_validated(table, seed, ...) with each kind's chosen option (its channel block, or its alignment), taken
    from the per-option predictions (cross_validated_by_block's or cross_validated_by_alignment's): a kind's folds
    and forests do not depend on the other kinds' options."""
    option_of = table.loc[by_option[1].index, "kind"].map(lambda kind: chosen.get(kind, 1))
    return pd.Series([by_option[option][row] for row, option in option_of.items()], index=by_option[1].index,
                     dtype=float)


def _choose_per_kind(table: pd.DataFrame, by_option: dict[int, pd.Series]) -> dict[str, int]:
    """Per kind, the option (a key of `by_option`, out-of-fold predictions under each) with the least MAPE, if at most
    CHANNEL_BLOCK_MARGIN of option 1's (the plain prior); else 1."""
    errors = {}
    for option, predicted in by_option.items():
        predicted = predicted.dropna()
        measured = table.loc[predicted.index, "latency_ms"]
        errors[option] = ((predicted - measured).abs() / measured).groupby(table.loc[predicted.index, "kind"]).mean()
    frame = pd.DataFrame(errors)
    chosen = {}
    for kind, row in frame.iterrows():
        best = int(row.idxmin())
        chosen[str(kind)] = best if row[best] <= CHANNEL_BLOCK_MARGIN * row[1] else 1
    return chosen


def choose_channel_blocks(table: pd.DataFrame, seed: int = 0,
                          by_block: dict[int, pd.Series] | None = None) -> dict[str, int]:
    """Per kind, the block of CHANNEL_BLOCK_GRID whose prior gives the kernel zoo's least out-of-fold MAPE
    (cross_validated_by_block's, or `by_block` computed before), if at most CHANNEL_BLOCK_MARGIN of the MAPE with
    FLOPs as counted (block 1); else 1."""
    return _choose_per_kind(table, by_block or cross_validated_by_block(table, seed))


def cross_validated_by_alignment(table: pd.DataFrame, seed: int, blocks: dict[str, int],
                                 by_block: dict[int, pd.Series] | None = None) -> dict[int, pd.Series]:
    """cross_validated with each kind in its chosen channel block and every kind under each alignment of
    ALIGNMENT_GRID (the same folds for every one); alignment 1's from `by_block` where given."""
    plain = (chosen_out_of_fold(by_block, table, blocks) if by_block is not None
             else cross_validated(table, seed, blocks=blocks))
    return {1: plain} | {alignment: cross_validated(table, seed, blocks=blocks, alignments=alignment)
                         for alignment in ALIGNMENT_GRID if alignment != 1}


def choose_alignments(table: pd.DataFrame, by_alignment: dict[int, pd.Series]) -> dict[str, int]:
    """Per kind, the alignment of ALIGNMENT_GRID whose prior gives the kernel zoo's least out-of-fold MAPE
    (cross_validated_by_alignment's), if at most CHANNEL_BLOCK_MARGIN of the MAPE with one FLOP rate (1); else 1."""
    return _choose_per_kind(table, by_alignment)


def dispatch_per_kernel(table: pd.DataFrame) -> dict[str, float]:
    """Per chained kind, what one more kernel of it costs inside a model (ms): the least-squares slope of the chains'
    latency over the kernels the target's rules see in them (kernels_in_descriptor), at least 0; a kind needs chains
    of two lengths. Empty without chains."""
    if "chain_of" not in table.columns:
        return {}
    chains = measured(table, CHAIN)
    out = {}
    for kind, rows in chains.groupby("chain_of"):
        lengths = rows["kernels_in_descriptor"].to_numpy(float)
        if len(np.unique(lengths)) >= 2:
            out[str(kind)] = max(float(np.polyfit(lengths, rows["latency_ms"].to_numpy(float), 1)[0]), 0.0)
    return out


def fit_io_slope(table: pd.DataFrame) -> float:
    """ms per MB a one-kernel model pays to take its input and give its output: the per-MB slope of the unary
    kernels (an element-wise op does almost nothing but move its tensors) whose tensors fit IO_CACHE_MB, fitted as
    the prior is (constant + slope, non-negative, on relative error); 0 with fewer than three of them."""
    unary = measured(table, "unary")
    moved_mb = (unary["bytes_read"] + unary["bytes_written"]).to_numpy(float) / 1e6
    cached = moved_mb <= IO_CACHE_MB
    if cached.sum() < 3:
        return 0.0
    design = np.column_stack([np.ones(cached.sum()), moved_mb[cached]])
    return float(nonnegative_on_relative_error(design, unary["latency_ms"].to_numpy(float)[cached])[1])


def cross_validated(table: pd.DataFrame, seed: int = 0, folds: int = 5, blocks: dict[str, int] | int | None = None,
                    alignments: dict[str, int] | int | None = None) -> pd.Series:
    """Out-of-fold predicted latency of every ok kernel (K folds per kind; leave-one-out under K rows). `blocks` and
    `alignments`: the channel block and alignment of every kind (an int) or per kind (a dict; 1 where it names none).

    Each kind's folds come from a generator of its own (seed, kind): one generator shared by every kind had more
    grouped rows re-deal the folds of every kind after it, and so re-pick their adaptive round's kernels."""
    ok = measured(table)
    predicted = pd.Series(np.nan, index=ok.index)
    for kind, rows in ok.groupby("kind"):
        if len(rows) < 3:
            continue
        order = np.random.default_rng([seed, KINDS.index(kind) if kind in KINDS else len(KINDS)]).permutation(len(rows))
        k = min(folds, len(rows))
        for fold in range(k):
            held = rows.index[order[fold::k]]
            train = rows.drop(held)
            block = blocks if isinstance(blocks, int) else (blocks or {}).get(kind, 1)
            alignment = alignments if isinstance(alignments, int) else (alignments or {}).get(kind, 1)
            regressor = KernelRegressor.for_kind(kind, seed, block, alignment).fit(train, train["latency_ms"].to_numpy())
            predicted[held] = regressor.predict(rows.loc[held])
    return predicted


def worst_configurations(table: pd.DataFrame, per_kind: int, seed: int = 0) -> list[str]:
    """Names of the `per_kind` kernels of each kind the out-of-fold predictor gets most wrong."""
    predicted = cross_validated(table, seed)
    ok = table.loc[predicted.dropna().index]
    error = np.abs(np.log(predicted.dropna() / ok["latency_ms"]))
    ranked = ok.assign(error=error).sort_values("error", ascending=False)
    return [name for _, rows in ranked.groupby("kind") for name in rows["name"].head(per_kind)]


def group_kind(kernel: Kernel, groups=()) -> str:
    """The kind KIND_GROUPS places a kernel by: its own, but POINTWISE for a convolution of a 1x1 window where
    `groups` (the optional groups a target's rules name, detector.OPTIONAL_GROUPS) holds it."""
    return POINTWISE if kernel.kind == "conv" and kernel.kernel_size == 1 and POINTWISE in groups else kernel.kind


def group_sums(kernels: list[Kernel], latencies_ms: np.ndarray, groups=()) -> np.ndarray:
    """The in-model latencies of a model's kernels summed per KIND_GROUPS group (by group_kind; an optional group
    that `groups` does not name sums to 0, its kernels counted in their kind's group)."""
    kinds = np.array([group_kind(k, groups) for k in kernels])
    sums, named = [], set()
    for members in KIND_GROUPS.values():
        chosen = ~np.isin(kinds, list(named)) if members is None else np.isin(kinds, list(members))
        named |= set(members or ())
        sums.append(float(np.asarray(latencies_ms, float)[chosen].sum()) if len(kernels) else 0.0)
    return np.array(sums)


def read_mb(kernels: list[Kernel], cache_mb: float | None = None) -> float:
    """MB a model's kernels read from memory per inference: their input activations, and the weights beyond the
    `cache_mb` a model keeps in cache from one inference to the next (None: every weight, as before CACHE_GRID_MB)."""
    total = sum(k.bytes_read for k in kernels) / 1e6
    if cache_mb is None:
        return total
    weights = sum(k.weight_bytes for k in kernels) / 1e6
    return total - weights + max(0.0, weights - cache_mb)


def model_terms(group_sums_ms: np.ndarray, kernels: list[Kernel], cache_mb: float | None = None) -> np.ndarray:
    """What a model costs: its kernels per group (group_sums), and beyond them per kernel (dispatch) and per byte read.

    A kernel timed alone over and over keeps its weights and input in cache; inside a model the layers
    before it have evicted its input, and the weights beyond what the cache keeps (`cache_mb`, read_mb) come from
    DRAM, so a model pays for the bytes its kernels read.
    """
    return np.r_[np.asarray(group_sums_ms, float), float(len(kernels)), read_mb(kernels, cache_mb), 1.0]


def priced_by_dispatch(terms: np.ndarray, dispatch_ms, call_ms: float) -> np.ndarray:
    """model_terms' rows (one row or a matrix) under the count mode "dispatch": no fitted cost per kernel, and the
    kernels' in-model costs by their chains (`dispatch_ms`, one per row) added to the constant, whose coefficient is
    pinned at `call_ms` (so the constant column holds 1 + dispatch / call). A copy."""
    terms = np.array(terms, dtype=float)
    terms[..., len(KIND_GROUPS)] = 0.0
    terms[..., -1] = 1.0 + np.asarray(dispatch_ms, float) / call_ms
    return terms


def _common_factor(terms: np.ndarray, measured_ms: np.ndarray, constant_ms: float | None = None) -> float:
    """The one factor of the pooled kernel sum (every group summed), from fit_overhead."""
    groups = terms.shape[1] - 3
    pooled = np.column_stack([terms[:, :groups].sum(axis=1), terms[:, groups:]])
    return float(fit_overhead(pooled, measured_ms, constant_ms)[0])


def _bounds(columns: int, constant_ms: float | None, upper: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the overhead's coefficients: non-negative, the first ones at most `upper`, the constant (the last)
    pinned at `constant_ms` where given."""
    lower, high = np.zeros(columns), np.full(columns, np.inf)
    if upper is not None:
        high[:len(upper)] = upper
    if constant_ms is not None:
        lower[-1] = high[-1] = constant_ms
    return lower, high


def bounded_lsq(design: np.ndarray, wanted: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """argmin |design @ x - wanted| with lower <= x <= upper; a coefficient whose bounds are equal is pinned there.

    The pinned ones are moved to the right-hand side and the rest solved by bounded-variable least squares (an
    active-set method, exact on these problems of a dozen columns): ten to twenty times faster than lsq_linear's
    default trust-region method, which the overhead's choice of cache size and shrinkage called some 50,000 times per
    target (three quarters of `perfpred kernel-train`). Where the optimum is not unique (terms nearly collinear) the
    two methods may return different minimisers of the same cost.
    """
    from scipy.optimize import lsq_linear

    lower, upper = (np.asarray(b, float) for b in bounds)
    pinned = upper <= lower
    solution = np.where(pinned, lower, 0.0)
    free = ~pinned
    if free.any():
        rest = np.asarray(wanted, float) - design[:, pinned] @ lower[pinned]
        solution[free] = lsq_linear(design[:, free], rest, bounds=(lower[free], upper[free]), method="bvls").x
    return solution


def _shrunk(terms: np.ndarray, measured_ms: np.ndarray, strength: float, common: float,
            constant_ms: float | None = None) -> np.ndarray:
    """fit_overhead with each group's factor pulled toward the `common` factor (_common_factor) by `strength`, and
    at most MAX_GROUP_FACTOR times it."""
    groups = terms.shape[1] - 3
    weights = 1.0 / measured_ms
    penalty = np.zeros((groups, terms.shape[1]))
    penalty[np.arange(groups), np.arange(groups)] = np.sqrt(strength)
    design = np.vstack([terms * weights[:, None], penalty])
    wanted = np.r_[measured_ms * weights, np.full(groups, np.sqrt(strength) * common)]
    upper = np.full(groups, MAX_GROUP_FACTOR * max(common, 1e-6))
    return bounded_lsq(design, wanted, _bounds(terms.shape[1], constant_ms, upper))


def fit_overhead_shrunk(terms: np.ndarray, measured_ms: np.ndarray, folds: np.ndarray,
                        grid: tuple[float, ...] = SHRINK_GRID, constant_ms: float | None = None) -> np.ndarray:
    """Non-negative overhead coefficients (rows of `model_terms`) on relative error, each group's factor shrunk toward
    the common one; the strength is the grid's best at predicting each fold (e.g. a family) from the others.
    `constant_ms`: the per-model constant, measured (KernelModel.call_ms) rather than fitted."""
    return fit_overhead_choosing({None: terms}, measured_ms, folds, grid, constant_ms)[1]


def fit_overhead_choosing(candidates: dict, measured_ms: np.ndarray, folds: np.ndarray,
                          grid: tuple[float, ...] = SHRINK_GRID, constant_ms: float | None = None) -> tuple:
    """fit_overhead_shrunk over several candidate term matrices (e.g. model_terms under each cache size): the
    candidate and shrinkage strength that best predict each fold (e.g. a family) from the others, chosen together
    (under three folds: the first candidate, the strongest pull); returns (the candidate's key, its coefficients
    fitted on every row)."""
    measured_ms = np.asarray(measured_ms, float)
    folds = np.asarray(folds)
    best = (np.inf, next(iter(candidates)), max(grid))
    if len(np.unique(folds)) >= 3:
        held_out = [folds == fold for fold in np.unique(folds)]
        for key, terms in candidates.items():
            # the same for every strength
            commons = [_common_factor(terms[~held], measured_ms[~held], constant_ms) for held in held_out]
            for strength in grid:
                relative = []
                for held, common in zip(held_out, commons, strict=True):
                    coefficients = _shrunk(terms[~held], measured_ms[~held], strength, common, constant_ms)
                    relative.append(np.abs(np.maximum(terms[held] @ coefficients, 1e-3) / measured_ms[held] - 1))
                error = float(np.concatenate(relative).mean())
                if error < best[0]:
                    best = (error, key, strength)
    _, key, strength = best
    terms = candidates[key]
    return key, _shrunk(terms, measured_ms, strength, _common_factor(terms, measured_ms, constant_ms), constant_ms)


def fit_overhead(terms: np.ndarray, measured_ms: np.ndarray, constant_ms: float | None = None) -> np.ndarray:
    """Non-negative coefficients of measured = terms @ coefficients (rows of `model_terms`), on relative error; the
    constant (the last) pinned at `constant_ms` where given.

    Every term is a cost a model pays, so none may count negatively: an unconstrained fit traded a negative
    constant against the kernel sum and predicted tiny models at 0 ms (TFLite).
    """
    if constant_ms is None:
        return nonnegative_on_relative_error(terms, measured_ms)
    measured_ms = np.asarray(measured_ms, float)
    weights = 1.0 / measured_ms
    return bounded_lsq(terms * weights[:, None], measured_ms * weights, _bounds(terms.shape[1], constant_ms))


def nonnegative_on_relative_error(design: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Non-negative coefficients of measured = design @ coefficients, least squares on relative error: the kernel
    priors, the one-kernel model's I/O slope and the whole-model overhead are all fitted so."""
    from scipy.optimize import nnls

    measured = np.asarray(measured, float)
    weights = 1.0 / measured
    return nnls(design * weights[:, None], measured * weights)[0]
