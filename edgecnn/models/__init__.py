"""The four networks, torchvision-exact, behind a registry.

>>> from edgecnn.models import create, list_archs
>>> list_archs()
['alexnet', 'vgg16', 'resnet18', 'googlenet']
>>> model = create("resnet18", num_classes=10, small_input=True)

At defaults every network has torchvision 0.28's modules and state_dict keys, so
torchvision's ImageNet ``.pth`` files load unchanged (``weights="imagenet"`` fetches
them). ``test_*`` variants (hidden from :func:`list_archs` unless ``include_test``) keep
each topology at 1/8 of the width for fast tests.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecnn.checkpoint import is_edgecnn_checkpoint, load_checkpoint, read_torch_file, validate_checkpoint
from edgecnn.errors import EdgecnnError, suggest
from edgecnn.models._registry import ArchInfo, arch_info, list_archs, register_arch
from edgecnn.models.profile import LayerProfile, count_macs, count_params, min_input_size, profile_layers
from edgecnn.models.weights import PUBLISHED, PublishedWeights, fetch_published, published_weights

__all__ = [
    "PUBLISHED",
    "ArchInfo",
    "LayerProfile",
    "PublishedWeights",
    "arch_info",
    "count_macs",
    "count_params",
    "create",
    "fetch_published",
    "from_checkpoint",
    "list_archs",
    "min_input_size",
    "profile_layers",
    "published_weights",
    "register_arch",
]

for _module in ("alexnet", "vgg", "resnet", "googlenet"):  # importing registers; this is the listing order
    importlib.import_module(f"edgecnn.models.{_module}")


def _build(info: ArchInfo, num_classes: int, options: dict[str, Any]) -> nn.Module:
    unknown = [k for k in options if k not in info.options]
    if unknown:
        valid = sorted(k for k in info.options if k != "num_classes")
        raise EdgecnnError(
            f"{info.name} has no option '{unknown[0]}'.{suggest(unknown[0], valid)} "
            f"Valid options: num_classes, {', '.join(valid)}"
        )
    for key, value in (("num_classes", num_classes), ("in_channels", options.get("in_channels", 3))):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise EdgecnnError(f"{info.name}: {key} must be a positive integer (got {value!r})")
    model = info.builder(num_classes=num_classes, **options)
    # The options actually used, defaults filled in: record these in checkpoints.
    model.arch_name = info.name
    model.arch_options = {**info.options, **options, "num_classes": num_classes}
    return model


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def _load_state(
    model: nn.Module,
    state: dict[str, Any],
    *,
    source: str,
    reset_head: bool,
    ckpt: dict[str, Any] | None = None,
) -> None:
    """Load ``state`` into ``model`` strictly, with one-line errors that say what to do."""
    name = model.arch_name
    expected = model.state_dict()
    state = dict(state)
    if getattr(model, "aux_logits", None) is False:  # torchvision's GoogLeNet file carries aux heads
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    head = tuple(h + "." for h in model.head_modules)
    allowed_missing: set[str] = set()
    if reset_head:
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        allowed_missing = {k for k in expected if k.startswith(head)}
    stem = model.stem_conv + ".weight"
    if (
        stem in state
        and stem in expected
        and state[stem].ndim == 4
        and state[stem].shape[1] == 3
        and expected[stem].shape[1] == 1
        and state[stem].shape[2:] == expected[stem].shape[2:]
    ):
        state[stem] = state[stem].sum(dim=1, keepdim=True)  # grey input: the sum of the RGB filters
    for k in expected:  # files saved before BatchNorm counted batches lack these buffers
        bn = k.removesuffix("num_batches_tracked")
        if bn != k and k not in state and bn + "weight" in state:
            state[k] = torch.tensor(0, dtype=torch.long)

    missing = [k for k in expected if k not in state and k not in allowed_missing]
    unexpected = [k for k in state if k not in expected]
    bad_shape = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or bad_shape):
        model.load_state_dict(state, strict=not allowed_missing)
        return

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
    if bad_shape:
        shown = "; ".join(
            f"{k}: checkpoint {_shape(state[k])} vs model {_shape(expected[k])}" for k in bad_shape[:3]
        )
        parts.append(f"{len(bad_shape)} shape mismatch(es) ({shown}{'; ...' if len(bad_shape) > 3 else ''})")
    msg = f"cannot load {source} into {name}: {', '.join(parts)}"
    ckpt_arch = ckpt.get("arch") if ckpt else None
    if not missing and not unexpected and all(k.startswith(head) for k in bad_shape):
        classes = state[bad_shape[0]].shape[0]
        ours = model.arch_options["num_classes"]
        msg += (
            f". The checkpoint's head has {classes} classes, the model's {ours}: "
            f"pass reset_head=True (CLI --reset-head) to fine-tune on a new label set, "
            f"or num_classes={classes} to keep its head"
        )
    elif ckpt_arch and ckpt_arch != name:
        msg += f". It is a {ckpt_arch} checkpoint: load it with from_checkpoint() or create('{ckpt_arch}')"
    elif ckpt:
        saved = {k: v for k, v in ckpt.get("model_options", {}).items() if model.arch_options.get(k) != v}
        opts = ", ".join(f"{k}={v!r}" for k, v in saved.items()) or "the same options"
        msg += f". The checkpoint was saved with {opts}: build the model with them or use from_checkpoint()"
    elif model.arch_options.get("small_input"):
        msg += (
            ". small_input=True changes the stem (and the alexnet/vgg16 head); "
            "these weights are for the full-size variant"
        )
    else:
        msg += ". Is it a checkpoint of another architecture or variant?"
    raise EdgecnnError(msg)


def create(
    name: str,
    *,
    num_classes: int = 1000,
    weights: str | os.PathLike | None = None,
    reset_head: bool = False,
    **options: Any,
) -> nn.Module:
    """Build architecture ``name``, optionally loading weights strictly.

    ``options`` are the builder's keyword options (``in_channels``, ``small_input``,
    ``dropout``, ...); those whose value is None are ignored, so an unset flag never
    overrides a default. ``weights`` is None (fresh init), ``"imagenet"`` (torchvision's
    published file, fetched and checksummed), a torchvision state_dict file, or an
    edgecnn checkpoint. ``reset_head=True`` keeps the model's fresh classifier head instead
    of the checkpoint's (fine-tuning on a new label set). With ``in_channels=1`` and
    3-channel weights the first conv's filters are summed over the RGB axis. For
    googlenet, ``weights="imagenet"`` turns ``transform_input`` on unless given, like
    torchvision. The returned model carries ``arch_name`` and ``arch_options`` (the options
    actually used, defaults included).
    """
    info = arch_info(name)
    options = {k: v for k, v in options.items() if v is not None}
    if num_classes is None:
        num_classes = 1000
    if weights is None:
        return _build(info, num_classes, options)

    ckpt = None
    if weights == "imagenet":
        if info.published is None:
            raise EdgecnnError(f"{name} has no published ImageNet weights; published: {', '.join(PUBLISHED)}")
        if info.family == "googlenet" and options.get("in_channels", 3) == 3:
            options.setdefault("transform_input", True)
        path = fetch_published(info.published)
        state = read_torch_file(path)
        source = f"ImageNet weights {path}"
    else:
        path = Path(weights)
        obj = read_torch_file(path)
        source = str(path)
        if is_edgecnn_checkpoint(obj):
            ckpt = validate_checkpoint(obj, path)
            state = ckpt["state_dict"]
        elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state = obj
        else:
            raise EdgecnnError(
                f"cannot read checkpoint {path}: neither a state_dict nor an edgecnn checkpoint; "
                "re-download or re-train it"
            )
    model = _build(info, num_classes, options)
    _load_state(model, state, source=source, reset_head=reset_head, ckpt=ckpt)
    return model


def from_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model an edgecnn checkpoint was saved from: ``(model, checkpoint_dict)``.

    The model is in training mode, like any fresh module: call ``.eval()`` for inference.
    """
    ckpt = load_checkpoint(path)
    info = arch_info(ckpt["arch"])
    options = dict(ckpt.get("model_options", {}))
    num_classes = options.pop("num_classes", 1000)
    model = _build(info, num_classes, options)
    _load_state(model, ckpt["state_dict"], source=str(path), reset_head=False, ckpt=ckpt)
    return model, ckpt
