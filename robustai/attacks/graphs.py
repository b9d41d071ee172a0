"""A whole attack captured once as a CUDA graph and replayed, for launch-bound models on a GPU.

A PGD-10 step on a small model (the MNIST CNN) runs a few dozen tiny kernels; on a fast GPU the
time goes into launching them from Python, not into the arithmetic. CUDA graphs
(``torch.cuda.CUDAGraph``) record every kernel of one :meth:`Attack.perturb` call for a batch
shape and replay them with a single launch. The replay computes the same kernels on the same
data: the iterates are the eager ones.

How a batch runs (per model, attack settings, batch shape, dtype, layout, autocast state and
parameter storage):

1. the first time: eagerly, as without graphs (this also runs the lazy CUDA initialisations);
2. the second time: eagerly on a side stream (the warm-up PyTorch asks for before a capture),
   then captured, without running, into a graph with static input and output tensors;
3. from then on: the batch is copied into the static input and the graph replayed.

So an evaluation of a few batches pays two eager runs per batch shape; a model evaluated again
(every epoch, another eps sweep with the same settings) replays. Graphs live with the model
(at most :data:`MAX_GRAPHS` per model, least recently used dropped first) and hold their own
GPU memory (about one eager run's activations each); :func:`clear` frees them.

What a graph cannot see (why it is opt-in, :meth:`Attack.with_cuda_graph`): Python code in the
model's ``forward`` or its hooks runs at capture only, not at replay; a forward that reads a
tensor's value on the host (``.item()``, ``if x.sum() > 0``) cannot be captured and runs eagerly
instead (one warning); new parameter tensors (``model.to(...)``, a replaced layer) are a new key,
but values copied into existing ones (an optimizer step, ``load_state_dict``) are seen by the
replay, as they must be when an attack runs inside adversarial training.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: graphs kept per model; each holds about one eager attack run's activations in GPU memory.
MAX_GRAPHS = 4


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    x: Tensor
    y: Tensor
    out: Tensor


class _Cache:
    """The graphs of one model: keys seen once, captured graphs, keys that cannot be captured."""

    def __init__(self) -> None:
        self.seen: set[Hashable] = set()
        self.graphs: OrderedDict[Hashable, _Graph] = OrderedDict()
        self.eager: set[Hashable] = set()


_caches: weakref.WeakKeyDictionary[nn.Module, _Cache] = weakref.WeakKeyDictionary()


def clear(model: nn.Module | None = None) -> None:
    """Drop the captured graphs (and their GPU memory) of ``model``, or of every model."""
    if model is None:
        _caches.clear()
    else:
        _caches.pop(model, None)


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def _key(attack: object, model: nn.Module, x: Tensor, y: Tensor) -> Hashable:
    """Everything a captured graph bakes in: the attack's settings, the model's train/eval flags
    and parameter storage, the batch's shape, dtype, layout and device, the autocast state."""
    return (
        type(attack),
        repr(attack),
        tuple(m.training for m in model.modules()),
        tuple(t.data_ptr() for t in model.parameters()),
        tuple(t.data_ptr() for t in model.buffers()),
        tuple(x.shape),
        x.stride(),
        x.dtype,
        x.device,
        y.dtype,
        _autocast_state(x.device.type),
    )


def run(
    attack: object,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    perturb: Callable[[nn.Module, Tensor, Tensor], Tensor],
) -> Tensor:
    """``perturb(model, x, y)`` eagerly, or from a captured CUDA graph (see the module doc)."""
    cache = _caches.get(model)
    if cache is None:
        cache = _caches[model] = _Cache()
    key = _key(attack, model, x, y)
    entry = cache.graphs.get(key)
    if entry is not None:
        cache.graphs.move_to_end(key)
        entry.x.copy_(x)
        entry.y.copy_(y)
        entry.graph.replay()
        return entry.out.clone()
    if key in cache.eager or key not in cache.seen:
        if len(cache.seen) > 256:  # e.g. a stream of odd batch sizes: start counting afresh
            cache.seen.clear()
        cache.seen.add(key)
        return perturb(model, x, y)
    return _capture(cache, key, attack, model, x, y, perturb)


def _capture(
    cache: _Cache,
    key: Hashable,
    attack: object,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    perturb: Callable[[nn.Module, Tensor, Tensor], Tensor],
) -> Tensor:
    """Warm up on a side stream (that run's result is returned), then capture without running."""
    enabled, dtype = _autocast_state("cuda")

    def body(xs: Tensor, ys: Tensor) -> Tensor:
        # autocast's cache of low-precision weight copies would hand the graph tensors that are
        # freed when the caller's autocast block ends; inside the graph the casts are recorded
        with torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False):
            return perturb(model, xs, ys)

    static_x, static_y = x.clone(), y.clone()
    with torch.cuda.device(x.device):
        current = torch.cuda.current_stream()
        side = torch.cuda.Stream()
        side.wait_stream(current)
        # A host sync (.item(), nonzero, a copy to the CPU) in the model cannot be captured and,
        # inside a capture, would break it: the warm-up is run with syncs made errors to find out.
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.cuda.stream(side):
                result = body(static_x, static_y)
        except RuntimeError as exc:
            failed: RuntimeError | None = exc
        else:
            failed = None
        finally:
            torch.cuda.set_sync_debug_mode(mode)
            current.wait_stream(side)
        if failed is not None:
            return _uncapturable(cache, key, attack, failed, lambda: perturb(model, x, y))
        result.record_stream(current)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                out = body(static_x, static_y)
        except RuntimeError as exc:
            return _uncapturable(cache, key, attack, exc, lambda: result)
    cache.graphs[key] = _Graph(graph, static_x, static_y, out)
    while len(cache.graphs) > MAX_GRAPHS:
        cache.graphs.popitem(last=False)
    logger.debug("captured %s as a CUDA graph for batch shape %s", type(attack).__name__, key[5])
    return result


def _uncapturable(
    cache: _Cache, key: Hashable, attack: object, exc: Exception, fallback: Callable[[], Tensor]
) -> Tensor:
    """Remember that ``key`` runs eagerly, say so once, and return ``fallback()``."""
    cache.eager.add(key)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    logger.warning(
        "%s: this model cannot be captured as a CUDA graph (%s); the attack runs eagerly",
        getattr(attack, "label", type(attack).__name__),
        first,
    )
    return fallback()
