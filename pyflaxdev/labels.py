"""Class labels of a model (``FLAX_IOC_LABELS_SET``/``GET``, sysfs ``labels``).

On the wire labels are UTF-8, one per line, each ended by a newline; label
``i`` names output element ``i`` (element ``i`` of the pooled vector after
``mean_pool``).  :func:`check_labels` applies the module's rules with messages
that name the offending label: not empty, no control character (tab and
newline included), at most ``FLAX_LABEL_MAX`` (127) bytes each, at most
``min(FLAX_LABELS_MAX, elements)`` labels and ``FLAX_LABELS_BYTES_MAX`` bytes
in all.  The module rejects the same with ``EINVAL`` (a bad label) or
``E2BIG`` (too many).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pyflaxdev.errors import InvalidArgument, LabelsTooLarge
from pyflaxdev.uapi import lib

__all__ = ["check_labels", "decode_labels", "encode_labels", "max_labels"]


def max_labels(elements: int) -> int:
    """Most labels a model whose result vector has ``elements`` values accepts."""
    return min(int(lib.FLAX_LABELS_MAX), elements)


def _bad_label(label: str) -> str | None:
    """Why the module would reject ``label``, or None."""
    if not label:
        return "is empty"
    nbytes = len(label.encode("utf-8", "surrogatepass"))
    if nbytes > lib.FLAX_LABEL_MAX:
        return f"is {nbytes} bytes of UTF-8, longer than {lib.FLAX_LABEL_MAX}"
    for ch in label:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return f"contains the control character {ch!r}"
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        return "is not encodable as UTF-8"
    return None


def check_labels(labels: Iterable[str], elements: int, *, model: str = "") -> tuple[str, ...]:
    """Check labels as the module will; return them as a tuple.

    Raises :class:`InvalidArgument` (``EINVAL``) naming the first bad label,
    or :class:`LabelsTooLarge` (``E2BIG``) for too many labels or bytes.
    """
    items = (labels,) if isinstance(labels, str) else tuple(labels)
    where = f" of model {model!r}" if model else ""
    for i, label in enumerate(items):
        if not isinstance(label, str):
            raise InvalidArgument(f"label {i}{where} must be a str, got {type(label).__name__}")
        why = _bad_label(label)
        if why is not None:
            raise InvalidArgument(f"label {i} ({label[:40]!r}){where} {why}")
    limit = max_labels(elements)
    if len(items) > limit:
        raise LabelsTooLarge(
            f"{len(items)} labels{where}: at most {limit} (one per result element,"
            f" at most {lib.FLAX_LABELS_MAX})"
        )
    size = len(encode_labels(items))
    if size > lib.FLAX_LABELS_BYTES_MAX:
        raise LabelsTooLarge(
            f"labels{where} take {size} bytes, more than {lib.FLAX_LABELS_BYTES_MAX}"
        )
    return items


def encode_labels(labels: Sequence[str]) -> bytes:
    """The wire form: every label followed by a newline (empty for no labels)."""
    return "".join(f"{label}\n" for label in labels).encode("utf-8")


def decode_labels(data: bytes) -> tuple[str, ...]:
    """Parse the wire form (the last newline optional)."""
    if not data:
        return ()
    text = data.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    return tuple(text.split("\n"))
