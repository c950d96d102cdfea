"""ModelSpec: everything needed to create, serve and check one zoo model.

The description (shapes, normalisation, post chain, labels) is plain data and
cheap to load; the Flax module and its parameters load (and import JAX/Flax)
only when first used, so a client can use a spec without JAX.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pyflaxdev import reference
from pyflaxdev.errors import InvalidArgument
from pyflaxdev.results import Result
from pyflaxdev.spec import Normalization, TensorSpec

if TYPE_CHECKING:
    from pyflaxdev.device import Device
    from pyflaxdev.model import Model
    from pyflaxdev.worker import ServeHandle, WorkerStats

__all__ = ["ModelSpec"]


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A shipped model: description plus lazily loaded module and parameters."""

    name: str
    input: TensorSpec
    output: TensorSpec
    normalize: Normalization | None
    post: tuple[str, ...]
    topk: int
    labels: tuple[str, ...]
    make_module: Callable[[], Any] = field(repr=False)
    load_params: Callable[[], Any] = field(repr=False)
    load_heldout: Callable[[], tuple[npt.NDArray[Any], npt.NDArray[np.int64]]] = field(repr=False)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    #: A text model (``FLAX_PRE_TOKENIZE``): clients send up to ``text_max``
    #: bytes of UTF-8, ``load_vocab()`` is uploaded at creation and
    #: ``tokenizer(texts)`` gives what the kernel writes (``[n, *input_shape]``).
    tokenize: bool = False
    text_max: int = 0
    load_vocab: Callable[[], bytes] | None = field(default=None, repr=False)
    tokenizer: Callable[[Sequence[str]], npt.NDArray[Any]] | None = field(default=None, repr=False)
    #: Serving defaults: length buckets (:mod:`pyflaxdev.buckets`), compiled
    #: batch sizes (None: the worker's), request timeout at creation (0: the module's).
    buckets: tuple[int, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    timeout_ms: int = 0
    #: The same model at another sequence length (text models), if it has one.
    with_length: Callable[[int], ModelSpec] | None = field(default=None, repr=False)
    #: The identity "model" (``null``): the output is the input's bytes as float32,
    #: served by a copy (:class:`~pyflaxdev.runner.CopyRunner`), no module, no JAX.
    identity: bool = False

    def __post_init__(self) -> None:
        if self.identity and (
            self.input.dtype != np.float32
            or self.input.size != self.output.size
            or self.normalize is not None
            or self.post
            or self.tokenize
        ):
            raise InvalidArgument(
                f"identity model {self.name!r} must map float32 to as many float32 values,"
                " without normalisation, post chain or tokeniser"
            )

    # -- description ---------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one client input."""
        return self.input.shape

    @property
    def input_dtype(self) -> np.dtype[Any]:
        """dtype of a client input."""
        return self.input.dtype

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one model output (before postprocessing)."""
        return self.output.shape

    # -- lazily loaded parts -------------------------------------------------

    @functools.cached_property
    def module(self) -> Any:
        """The Flax module (imports Flax)."""
        return self.make_module()

    @functools.cached_property
    def params(self) -> Any:
        """The shipped parameters (a pytree of numpy arrays)."""
        return self.load_params()

    @functools.cached_property
    def _apply(self) -> Callable[[Any, Any], Any]:
        import jax

        fn: Callable[[Any, Any], Any] = jax.jit(self.module.apply)
        return fn

    def at_length(self, length: int | None) -> ModelSpec:
        """This model at sequence length ``length`` (a text model), or itself."""
        if length is None or not self.tokenize or self.input.shape[-1] == length:
            return self
        if self.with_length is None:
            raise InvalidArgument(f"shipped model {self.name!r} has no other lengths")
        return self.with_length(length)

    def heldout(self) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        """The held-out inputs (client dtype, ``[n, *input_shape]``) and their labels."""
        return self.load_heldout()

    # -- in-process reference --------------------------------------------------

    def _texts(self, x: Any) -> tuple[list[str], bool]:
        single = isinstance(x, (str, bytes))
        items = [x] if single else list(x)
        return [t.decode() if isinstance(t, bytes) else str(t) for t in items], single

    def preprocess(self, x: Any) -> npt.NDArray[Any]:
        """What the worker sees for ``x``: normalised float32, exactly as the kernel does it
        (a text model: ``[n, *input_shape]`` for a text or a sequence of texts)."""
        if self.tokenize:
            if self.tokenizer is None:
                raise ValueError(f"{self.name!r} has no in-process tokenizer")
            return self.tokenizer(self._texts(x)[0])
        if self.normalize is None:
            return np.asarray(x, dtype=self.input.dtype)
        return reference.normalize(np.asarray(x, dtype=self.input.dtype), self.normalize)

    def reference(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """In-process output (logits) for one input or a batch ``[n, *input_shape]``.

        Same float32 normalisation as the kernel, then ``module.apply`` (an
        identity model: the input as float32).  Returns ``[*output_shape]`` for
        one input, ``[n, *output_shape]`` for a batch.
        """
        if self.tokenize:
            texts, single = self._texts(x)
            batch = self.preprocess(texts)
        else:
            a = np.asarray(x, dtype=self.input.dtype)
            single = a.shape == self.input.shape
            batch = self.preprocess(a[None] if single else a)
        if self.identity:
            y = np.array(batch, dtype=np.float32)
        else:
            y = np.asarray(self._apply(self.params, batch), dtype=np.float32)
        y = y.reshape(len(batch), *self.output.shape)
        return y[0] if single else y

    def reference_result(self, x: Any) -> Result:
        """In-process postprocessed result for one input (numpy softmax/top-k,
        or mean pooling over the mask and L2 normalisation)."""
        if "mean_pool" in self.post:
            mask = self.preprocess(x)[0, 1] if self.tokenize else None
            return reference.pool(self.reference(x), mask, self.post)
        return reference.postprocess(self.reference(x), self.post, self.topk)

    def accuracy(self, x: npt.ArrayLike | None = None, y: npt.ArrayLike | None = None) -> float:
        """Top-1 accuracy of :meth:`reference` (on the held-out split by default)."""
        if x is None or y is None:
            x, y = self.heldout()
        logits = self.reference(x).reshape(len(np.asarray(y)), -1)
        return float(np.mean(logits.argmax(axis=1) == np.asarray(y)))

    # -- device helpers --------------------------------------------------------

    def create(
        self,
        device: Device,
        *,
        name: str | None = None,
        nslots: int = 64,
        timeout_ms: int = 0,
        max_batch: int = 0,
        max_queue_delay_us: int = 0,
        max_queue: int = 0,
        labels: Sequence[str] | None = None,
        exist_ok: bool = False,
        worker_post: int = 0,
        owner: int | None = None,
        group: int | None = None,
        mode: int = 0,
    ) -> Model:
        """Create this model on ``device`` (as ``name``, default the spec's name).

        The queueing knobs go to :meth:`~pyflaxdev.Device.create_model`; the
        spec's labels are uploaded unless ``labels`` is given (``()``: none),
        and a text model's vocabulary (kept if the model already had one).
        ``timeout_ms`` 0 takes the spec's default; ``worker_post`` 1 has the
        worker mean-pool (a chain starting with ``mean_pool``).  ``owner``,
        ``group`` and ``mode`` are the model node's (see
        :meth:`~pyflaxdev.Device.create_model`).
        """
        model = device.create_model(
            name or self.name,
            self.input.shape,
            self.input.dtype,
            self.output.shape,
            normalize=self.normalize,
            post=self.post,
            topk=self.topk,
            nslots=nslots,
            timeout_ms=timeout_ms or self.timeout_ms,
            max_batch=max_batch,
            max_queue_delay_us=max_queue_delay_us,
            max_queue=max_queue,
            labels=self.labels if labels is None else labels,
            exist_ok=exist_ok,
            tokenize=self.tokenize,
            text_max=self.text_max,
            worker_post=worker_post,
            owner=owner,
            group=group,
            mode=mode,
        )
        if self.load_vocab is not None:
            from pyflaxdev.errors import FlaxError

            try:
                model.set_vocab(self.load_vocab())
            except FlaxError as exc:
                if exc.errno != errno.EBUSY:  # EBUSY: it has one already (exist_ok)
                    raise
        return model

    def serving_defaults(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` for ``serve`` with this spec's buckets and batch sizes filled in (and
        ``identity`` for an identity model)."""
        out = dict(kwargs)
        if self.identity:
            out.setdefault("identity", True)
        if self.buckets is not None:
            out.setdefault("buckets", self.buckets)
        if self.batch_sizes is not None:
            out.setdefault("batch_sizes", self.batch_sizes)
        return out

    def serve(self, *, model: str | None = None, **kwargs: Any) -> WorkerStats:
        """``pyflaxdev.serve`` with this spec's module and parameters."""
        from pyflaxdev.worker import serve

        return serve(
            self.module, self.params, model=model or self.name, **self.serving_defaults(kwargs)
        )

    def serving(
        self, *, model: str | None = None, **kwargs: Any
    ) -> AbstractContextManager[ServeHandle]:
        """``pyflaxdev.serving`` for this spec: ``with spec.serving(...) as handle:``."""
        from pyflaxdev.worker import serving

        return serving(
            self.module, self.params, model=model or self.name, **self.serving_defaults(kwargs)
        )

    def label(self, index: int) -> str:
        """The label of class ``index`` (its number if there is none)."""
        return self.labels[index] if 0 <= index < len(self.labels) else str(index)

    def labelled(self, pairs: Sequence[tuple[int, float]]) -> list[tuple[str, float]]:
        """``(index, score)`` pairs with labels instead of indices."""
        return [(self.label(i), s) for i, s in pairs]
