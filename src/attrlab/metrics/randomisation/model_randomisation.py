"""Cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity checks for saliency
maps", section 3): re-initialise the layers of a trained model one after the other, from the
output layer down to the input layer, recompute the attributions after every step and
measure how similar they stay to the attributions of the trained model.

A method whose maps stay similar does not depend on what the model learned (an edge
detector passes through unchanged); lower similarity is better (``higher_is_better=False``).

::

    metric = attrlab.metrics.get("sanity_spearman")
    r = metric.compute(model, x, y, attributions, method=method)   # one cascade
    steps, sim = r.curve                                            # sim: (N, K + 1)
    r.scores                                                        # (N,) = sim[:, 1:].mean(1)

Definitions (each a documented choice):

* **The user's model is never modified.** Randomisation happens on ``copy.deepcopy(model)``
  and the method is re-bound to that copy with :func:`rebind`, which deep-copies the method
  while mapping every module/parameter/buffer of the original model to its counterpart in
  the copy. Sub-methods (``NoiseTunnel.base``, ``DeepLiftShap.deeplift``) and module
  references (``GradCAM.layer``) therefore follow the copy and keep all constructor options.
  Hooks registered on the user's model are copied with it (they may be part of the model's
  function, e.g. the pre-hook of ``torch.nn.utils.weight_norm``).
* **Layers.** One cascade step per module that has parameters of its own
  (``parameters(recurse=False)``: Conv, Linear, BatchNorm-like, ...; containers and
  parameter-free modules are skipped), listed in *forward order*: the order in which the
  modules are first called during a forward pass of the first input (registration order
  from ``named_modules`` for modules never called, placed after the called module registered
  before them). ``order="registration"`` uses the plain ``named_modules`` order instead (what
  Quantus's MPRT does). The cascade runs in reverse: step 1 randomises the output layer,
  step K the input layer; randomisation is cumulative. ``layers=[names]`` restricts the
  cascade to the named modules; a named container is one step that randomises every
  parameterised module inside it (block-wise cascades as in paper 03, Fig. 11).
* **Re-initialisation.** ``init="normal"`` (default): every parameter of the layer is drawn
  from N(0, ``std``), ``std=0.01``, exactly as paper 03 (PruneGrad), section 4.2 states
  ("reinitialize its parameters with a normal distribution with zero mean and a standard
  deviation of 0.01"); buffers (BatchNorm running statistics) are not learnable parameters
  and are kept. ``init="reset"``: the module's own ``reset_parameters()`` (PyTorch's default
  initialisation; for BatchNorm this also resets the running statistics). Step ``i``
  (1-based, top-down) is initialised from seed ``seed + i - 1``: ``"normal"`` draws with a
  ``torch.Generator`` seeded with it (the numbers of ``torch.manual_seed(seed + i - 1)``),
  ``"reset"`` runs inside :func:`torch.random.fork_rng` after ``torch.manual_seed(seed + i -
  1)`` (``reset_parameters`` takes no generator); either way the global RNG is left untouched
  and a run is reproducible. With ``same_seed=True`` every layer uses ``seed``, which is
  Quantus's convention (its ``seed + 1``).
* **Maps.** Attributions are reduced to one value per position by summing over the channel
  dimension (dimension 1 of inputs with three or more dimensions), then normalised to
  [-1, 1] by dividing each map by its maximum absolute value, as paper 03, section 4.2 says
  ("We normalize the attribution maps to range [-1, 1] before calculating similarity
  scores"); an all-zero map stays zero. Division by the max-abs keeps the sign and the zero.
* **Similarities** (per sample): ``"spearman"`` rank correlation of the normalised maps,
  ``"spearman_abs"`` the same on their absolute values (paper 03, Fig. 11 (a)/(b)),
  ``"pearson"`` correlation, and ``"ssim"``: scikit-image's ``structural_similarity`` on the
  2-D maps (defaults: 7x7 uniform window, K1=0.01, K2=0.03, sample covariance; the window
  shrinks to the largest odd size that fits a smaller map), with ``data_range`` the joint
  range ``max(a, b) - min(a, b)`` of the two normalised maps (the convention Quantus uses).
  If a map is constant the correlations are undefined: the similarity is then 1.0 when the
  two normalised maps are identical and 0.0 otherwise.
* **Curve and score.** ``curve`` returns ``x = [0, 1, ..., K]`` (cascade steps) and
  ``y`` of shape (N, K + 1). Step 0 compares the given ``attributions`` with maps recomputed
  on the unrandomised copy (1.0 for deterministic methods; the noise floor for stochastic
  ones such as SmoothGrad); step k compares them with maps computed after the top k layers
  were randomised. The score is the mean over steps 1..K of that same curve, from the same
  cascade (``compute`` runs it once; for stochastic methods such as SmoothGrad the score is
  exactly ``y[:, 1:].mean(1)`` of the returned curve); ``higher_is_better=False``. The
  names of the layers, top-down, are returned by :meth:`ModelRandomisation.cascade_layers`.

Relation to Quantus's ``MPRT`` (``quantus.MPRT``, 0.6): with ``layer_order="top_down"``,
``init="reset"``, ``same_seed=True``, ``seed = quantus seed + 1`` and
``order="registration"`` the randomised models are the same (Quantus calls
``torch.manual_seed(seed + 1)`` and ``reset_parameters()`` on every module that has that
method, in reverse ``named_modules`` order; for Conv/Linear/BatchNorm layers that is the set
of modules with parameters of their own used here), so the Spearman (with and without abs)
and Pearson curves agree to float precision (tested). They differ in:
(1) SSIM: Quantus flattens each explanation to 1-D before calling ``structural_similarity``
(a 1-D 7-sample window) and normalises by the maximum over the whole *batch*
(``normalise_by_max`` over all axes), while here SSIM is 2-D on per-sample normalised maps,
so the values differ; on the same 2-D pair Quantus's ``ssim`` function and ours agree
(tested). In Quantus 0.6.0, ``MPRT`` with its own ``ssim`` raises (that function returns a
list, on which MPRT calls ``.tolist()``). (2) ``return_average_correlation`` averages all
K + 1 entries including the unrandomised "original" one (its loop skips a key ``"orig"``
that never exists); the score here averages steps 1..K. (3) Quantus re-seeds the *global*
RNG and leaves it changed. (4) Quantus takes ``abs`` of the maps by default.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...methods.base import Attribution
from ..base import CurveMetric, register

SIMILARITIES = ("ssim", "spearman", "spearman_abs", "pearson")


# --------------------------------------------------------------------------------------------
# Re-binding a method to another (structurally identical) model
# --------------------------------------------------------------------------------------------


def rebind(method: Attribution, model: nn.Module) -> Attribution:
    """A copy of ``method`` bound to ``model``, a structurally identical model (typically
    ``copy.deepcopy(method.model)``), with every constructor option kept.

    The method is deep-copied with a ``memo`` that maps each module, parameter and buffer of
    ``method.model`` to the one of the same name in ``model``: every reference the method
    (or any sub-method, e.g. ``NoiseTunnel.base`` or ``DeepLiftShap.deeplift``) holds to
    the old model or to one of its modules (``GradCAM.layer``) points into ``model`` in the
    copy. Other state (options, fitted statistics) is copied. ``method`` is not changed.
    """
    if not isinstance(method, Attribution):
        raise TypeError(f"method must be an attrlab Attribution, got {type(method).__name__}")
    old = method.model
    memo: dict[int, Any] = {}
    for getter in ("named_modules", "named_parameters", "named_buffers"):
        old_items = dict(getattr(old, getter)())
        new_items = dict(getattr(model, getter)())
        if old_items.keys() != new_items.keys():
            missing = sorted(set(old_items) ^ set(new_items))[:5]
            raise ValueError(f"cannot rebind: the models differ in structure ({getter}: "
                             f"{', '.join(missing) or 'root'} ...)")
        for name, obj in old_items.items():
            memo[id(obj)] = new_items[name]
    return copy.deepcopy(method, memo)


# --------------------------------------------------------------------------------------------
# Layers and their re-initialisation
# --------------------------------------------------------------------------------------------


def _own_params(module: nn.Module) -> list[nn.Parameter]:
    return list(module.parameters(recurse=False))


def parameterized_modules(model: nn.Module, inputs: Tensor | None = None,
                          order: str = "forward", _in_place: bool = False) -> list[str]:
    """Names of the modules that have parameters of their own, bottom-up.

    ``order="forward"`` sorts them by their first call in a forward pass of ``inputs[:1]``
    (hooks go on a deep copy; the model is not run in place); modules never called keep their
    registration position after the preceding called module. ``order="registration"`` (or
    ``inputs=None``) is the ``named_modules`` order.
    """
    if order not in ("forward", "registration"):
        raise ValueError(f"order must be 'forward' or 'registration', got {order!r}")
    names = [n for n, m in model.named_modules() if _own_params(m)]
    if order == "registration" or inputs is None or not names:
        return names
    probe = (model if _in_place else copy.deepcopy(model)).eval()
    modules = dict(probe.named_modules())
    first_call: dict[str, int] = {}
    handles = []

    def hook(name: str) -> Callable:
        def record(*_: Any) -> None:
            first_call.setdefault(name, len(first_call))
        return record

    try:
        for n in names:
            handles.append(modules[n].register_forward_pre_hook(hook(n)))
        with torch.no_grad():
            probe(inputs[:1])
    finally:
        for h in handles:
            h.remove()
    key: dict[str, tuple[int, int]] = {}
    anchor = -1
    for i, n in enumerate(names):
        if n in first_call:
            anchor = first_call[n]
        key[n] = (anchor, i) if n not in first_call else (first_call[n], -1)
    return sorted(names, key=lambda n: key[n])


def _randomize(modules: Sequence[nn.Module], init: str, std: float, seed: int) -> None:
    """Re-initialise ``modules`` in place from ``seed``, leaving the global RNG untouched.

    ``"normal"``: every own parameter drawn with ``normal_(0, std, generator=g)``, one
    ``torch.Generator`` per device seeded with ``seed`` (the same numbers as
    ``torch.manual_seed(seed)`` followed by ``normal_`` on the default generators).
    ``"reset"``: ``reset_parameters()`` takes no generator, so it runs inside
    :func:`torch.random.fork_rng` after ``torch.manual_seed(seed)``.
    """
    with torch.no_grad():
        if init == "normal":
            gens: dict[torch.device, torch.Generator] = {}
            for m in modules:
                for p in _own_params(m):
                    if p.device not in gens:
                        gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
                    p.normal_(0.0, std, generator=gens[p.device])
            return
        resets = []
        for m in modules:
            reset = getattr(m, "reset_parameters", None)
            if not callable(reset):
                raise ValueError(f"init='reset' needs reset_parameters(); "
                                 f"{type(m).__name__} has none (use init='normal')")
            resets.append(reset)
        devices = sorted({p.device.index or 0 for m in modules for p in m.parameters()
                          if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for reset in resets:
                reset()


# --------------------------------------------------------------------------------------------
# Map preparation and similarity functions
# --------------------------------------------------------------------------------------------


def prepare_maps(attributions: Tensor) -> np.ndarray:
    """(N, C, ...) attributions -> (N, ...) float64 maps: summed over channels (dimension 1,
    for inputs with >= 3 dimensions), each divided by its max-abs (range [-1, 1], paper 03,
    section 4.2); an all-zero map stays zero."""
    a = attributions.detach().to("cpu", torch.float64)
    if a.dim() >= 3:
        a = a.sum(1)
    peak = a.flatten(1).abs().amax(1).view((-1,) + (1,) * (a.dim() - 1))
    return (a / torch.where(peak > 0, peak, torch.ones_like(peak))).numpy()


def _constant_rows(x: np.ndarray) -> np.ndarray:
    return (x == x[:, :1]).all(1)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return (a * b).sum(1) / np.where(den > 0, den, 1.0)


def _fallback(a: np.ndarray, b: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Constant maps: 1.0 if both maps are identical, else 0.0."""
    const = _constant_rows(a) | _constant_rows(b)
    same = (a == b).all(1)
    return np.where(const, np.where(same, 1.0, 0.0), values)


def _ssim_window(shape: tuple[int, ...], win_size: int | None) -> int:
    side = min(shape)
    w = 7 if win_size is None else win_size
    w = min(w, side if side % 2 else side - 1)
    if w < 3:
        raise ValueError(f"SSIM needs maps of at least 3 pixels per side, got {shape}")
    return w


def similarity(a: Tensor | np.ndarray, b: Tensor | np.ndarray, kind: str,
               win_size: int | None = None, prepared: bool = False) -> Tensor:
    """Per-sample similarity (N,) of two batches of maps.

    Unless ``prepared``, both are first reduced and normalised with :func:`prepare_maps`.
    ``kind`` is one of ``"ssim"``, ``"spearman"``, ``"spearman_abs"``, ``"pearson"``.
    """
    from scipy.stats import rankdata

    if kind not in SIMILARITIES:
        raise ValueError(f"unknown similarity {kind!r}; use one of {', '.join(SIMILARITIES)}")
    if not prepared:
        a, b = prepare_maps(torch.as_tensor(a)), prepare_maps(torch.as_tensor(b))
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    n = a.shape[0]
    fa, fb = a.reshape(n, -1), b.reshape(n, -1)
    if kind == "ssim":
        from skimage.metrics import structural_similarity

        win = _ssim_window(a.shape[1:], win_size)
        out = np.empty(n)
        for i in range(n):
            lo, hi = min(fa[i].min(), fb[i].min()), max(fa[i].max(), fb[i].max())
            if hi == lo:  # both maps constant and equal
                out[i] = 1.0
                continue
            out[i] = structural_similarity(a[i], b[i], win_size=win, data_range=float(hi - lo))
        return torch.from_numpy(out).float()
    if kind == "spearman_abs":
        fa, fb = np.abs(fa), np.abs(fb)
    if kind in ("spearman", "spearman_abs"):
        values = _rowwise_pearson(rankdata(fa, axis=1), rankdata(fb, axis=1))
    else:
        values = _rowwise_pearson(fa, fb)
    return torch.from_numpy(_fallback(fa, fb, values)).float()


# --------------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------------


def _attribute_batched(method: Any, inputs: Tensor, targets: Tensor, batch_size: int) -> Tensor:
    return torch.cat([
        method.attribute(inputs[i:i + batch_size], target=targets[i:i + batch_size]).detach()
        for i in range(0, inputs.shape[0], batch_size)
    ])


class ModelRandomisation(CurveMetric):
    """Cascading parameter randomisation (see the module docstring for every definition).

    Options: ``layers`` (module names to use as cascade steps; default every module with
    parameters of its own), ``order`` (``"forward"`` or ``"registration"``), ``init``
    (``"normal"`` with ``std``, paper 03; or ``"reset"``), ``seed``, ``same_seed``,
    ``win_size`` (SSIM window), ``batch_size`` (samples per attribution call).
    """

    similarity: ClassVar[str] = ""
    higher_is_better = False
    category = "randomisation"
    needs_method = True
    fast = False  # K + 1 attribution passes
    cost_formula = "K + 1 method calls per sample (K = cascade steps), no own forward passes"

    def __init__(self, layers: Sequence[str] | None = None, order: str = "forward",
                 init: str = "normal", std: float = 0.01, seed: int = 0,
                 same_seed: bool = False, win_size: int | None = None,
                 batch_size: int = 256) -> None:
        super().__init__(batch_size)
        if init not in ("normal", "reset"):
            raise ValueError(f"init must be 'normal' or 'reset', got {init!r}")
        if order not in ("forward", "registration"):
            raise ValueError(f"order must be 'forward' or 'registration', got {order!r}")
        if not (isinstance(std, (int, float)) and std > 0 and math.isfinite(std)):
            raise ValueError(f"std must be a positive number, got {std!r}")
        if layers is not None and (isinstance(layers, str) or not layers):
            raise ValueError("layers must be a non-empty list of module names")
        self.layers = None if layers is None else list(layers)
        self.order, self.init, self.std = order, init, float(std)
        self.seed, self.same_seed, self.win_size = int(seed), bool(same_seed), win_size

    # -- the cascade -------------------------------------------------------------------------
    def cascade_layers(self, model: nn.Module, inputs: Tensor | None = None,
                       _in_place: bool = False) -> list[str]:
        """Names of the cascade steps in randomisation order (top-down: output layer first).
        ``inputs`` (a batch) give the forward order; without them registration order is used."""
        bottom_up = parameterized_modules(model, inputs, self.order, _in_place)
        if self.layers is None:
            return bottom_up[::-1]
        modules = dict(model.named_modules())
        unknown = [n for n in self.layers if n not in modules]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; modules with parameters: {bottom_up}")
        empty = [n for n in self.layers if not any(True for _ in modules[n].parameters())]
        if empty:
            raise ValueError(f"layer(s) {empty} have no parameters to randomise")
        rank = {n: i for i, n in enumerate(bottom_up)}

        def position(name: str) -> int:
            inner = [rank[n] for n in bottom_up if n == name or n.startswith(name + ".")]
            return min(inner)

        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"duplicate layer names in {self.layers}")
        return sorted(self.layers, key=position, reverse=True)

    def randomized(self, method: Attribution, inputs: Tensor | None = None
                   ) -> Iterator[tuple[str, Attribution]]:
        """Yield ``(layer name, method bound to the randomised copy)`` after each cascade step.

        Step 0 (the unrandomised copy) is yielded first with the name ``"original"``. The same
        copy is randomised further at every step: consume the iterator in order.
        """
        clone = copy.deepcopy(method.model)
        names = self.cascade_layers(clone, inputs, _in_place=True)  # traced on our copy
        bound = rebind(method, clone)
        modules = dict(clone.named_modules())
        yield "original", bound
        for i, name in enumerate(names):
            root = modules[name]
            targets = [m for m in root.modules() if _own_params(m)]
            _randomize(targets, self.init, self.std, self.seed + (0 if self.same_seed else i))
            yield name, bound

    def n_steps(self, model: nn.Module) -> int:
        """K, the number of cascade steps on ``model`` (the curve has K + 1 points)."""
        return len(self.layers) if self.layers is not None else \
            len(parameterized_modules(model, None, "registration"))

    def forward_passes(self, **info: Any) -> float:
        """0 per sample: the model runs only inside the method calls (plus, for
        ``order="forward"``, one single-row pass per call to trace the layer order)."""
        self._cost_info(info)
        return 0.0

    def method_calls(self, **info: Any) -> float:
        """K + 1: the maps on the unrandomised copy and after each of the K cascade steps;
        K from ``n_layers``, the ``layers`` option or the ``model``."""
        info = self._cost_info(info)
        if info.get("n_layers") is not None:
            k = info["n_layers"]
        elif self.layers is not None or info.get("model") is not None:
            k = self.n_steps(info.get("model"))
        else:
            raise ValueError(f"the cost of {self.name!r} depends on the model's layers: pass "
                             "model=... or n_layers=...")
        return float(k + 1)

    def summarize(self, x: Tensor, y: Tensor) -> Tensor:
        """The mean similarity over the randomised steps 1..K (step 0 left out)."""
        return y[:, 1:].mean(1)

    def _curve(self, model: nn.Module, inputs: Tensor, targets: Tensor, attributions: Tensor,
               *, method: Attribution | None = None, **_: Any) -> tuple[Tensor, Tensor]:
        """``x = [0, 1, ..., K]`` (cascade steps, 0 = unrandomised) and ``y`` (N, K + 1)."""
        reference = prepare_maps(attributions)
        cols = []
        for _, bound in self.randomized(method, inputs):
            maps = prepare_maps(_attribute_batched(bound, inputs, targets, self.batch_size))
            cols.append(similarity(reference, maps, self.similarity, self.win_size, prepared=True))
        if len(cols) < 2:
            raise ValueError(f"metric {self.name!r}: the model has no parameterised layer "
                             "to randomise")
        y = torch.stack(cols, 1)
        return torch.arange(y.shape[1], dtype=torch.float32), y


@register
class SanitySSIM(ModelRandomisation):
    """Cascading randomisation, SSIM of the normalised 2-D maps (paper 02 section 4.3,
    paper 03 Fig. 11 (c))."""

    name = "sanity_ssim"
    similarity = "ssim"


@register
class SanitySpearman(ModelRandomisation):
    """Cascading randomisation, Spearman rank correlation (paper 03 Fig. 11 (a))."""

    name = "sanity_spearman"
    similarity = "spearman"


@register
class SanitySpearmanAbs(ModelRandomisation):
    """Cascading randomisation, Spearman rank correlation of |maps| (paper 03 Fig. 11 (b))."""

    name = "sanity_spearman_abs"
    similarity = "spearman_abs"


@register
class SanityPearson(ModelRandomisation):
    """Cascading randomisation, Pearson correlation of the normalised maps."""

    name = "sanity_pearson"
    similarity = "pearson"
