"""Bottleneck adapters (chapter 9): the lab's one hand-written tuning method.

A bottleneck adapter (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP",
arXiv:1902.00751) is a small two-layer network on the output of a frozen sublayer:

    h  ->  h + W_up f(W_down h)          W_down: (m, d), W_up: (d, m), m << d = hidden_size

`W_up` starts at zero, so a new adapter is exactly the identity and the model is unchanged until
it trains. Only adapters train; each task's adapter is saved on its own (a safetensors file) and
several adapters share one loaded base, swapped by name. peft has no bottleneck adapters and
AdapterHub's `adapters` library pins transformers 4.57, hence this module. Its API reads like
peft's, as functions on a plain transformers model (which stays a `LlamaForCausalLM`, so
`Trainer` and TRL's `SFTTrainer` train it like any model; they only see the trainable params):

    from labkit import adapters
    adapters.add_adapter(model, "sentiment", adapters.BottleneckConfig(bottleneck_size=16))
    adapters.set_adapter(model, "sentiment")          # active, and the only trainable params
    SFTTrainer(model=model, ...).train()
    adapters.save_adapter(model, "sentiment", "sentiment.safetensors")
    adapters.load_adapter(model, "entities.safetensors", "entities")   # another task, same base
    with adapters.disable_adapter(model):             # the bare base, temporarily
        ...

Placement: an adapter wraps a sublayer and transforms its output before the decoder layer adds
it to the residual stream. `targets=("self_attn", "mlp")` is Houlsby et al.'s placement (after
attention and after the feed-forward block); `("mlp",)`, the default, is that placement at the
feed-forward block only. Pfeiffer et al.'s configuration (AdapterFusion, arXiv:2005.00247),
which reads the hidden state after the residual addition and layer norm, is not implemented.
Sizes come from `model.config` (hidden_size), so any causal LM whose layers have such sublayers
works.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers.activations import ACT2FN

FORMAT = "labkit-bottleneck-adapter/1"  # written into every adapter file's metadata


class AdapterError(ValueError):
    """An adapter that does not fit this model or does not exist; the message says which."""


@dataclass(frozen=True)
class BottleneckConfig:
    """bottleneck_size: m, the width of the bottleneck; activation: a transformers ACT2FN name;
    targets: names of the sublayers (last component of the module path) an adapter follows."""
    bottleneck_size: int = 16
    activation: str = "relu"
    targets: tuple[str, ...] = ("mlp",)

    def __post_init__(self):
        if self.bottleneck_size < 1:
            raise AdapterError(f"bottleneck_size must be >= 1, got {self.bottleneck_size}")
        if self.activation not in ACT2FN:
            raise AdapterError(f"unknown activation {self.activation!r}; one of {', '.join(sorted(ACT2FN))}")
        object.__setattr__(self, "targets", tuple(self.targets))


class Bottleneck(nn.Module):
    """One adapter: (..., d) -> (..., d), h + up(f(down(h))); exactly the identity at creation."""

    def __init__(self, hidden_size: int, bottleneck_size: int, activation: str = "relu"):
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck_size)  # W_down: (m, d), b: (m,)
        self.act = ACT2FN[activation]
        self.up = nn.Linear(bottleneck_size, hidden_size)    # W_up: (d, m), b: (d,)
        nn.init.zeros_(self.up.weight)  # zero-init: a new adapter adds exactly 0
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:     # h: (B, T, d)
        return h + self.up(self.act(self.down(h)))          # (B, T, d)


class AdapterLayer(nn.Module):
    """A frozen sublayer followed by the active one of its named adapters (or none)."""

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        self.base_layer = base_layer
        self.adapters = nn.ModuleDict()
        self.active: str | None = None
        self.disabled = False

    def forward(self, *args, **kwargs):
        out = self.base_layer(*args, **kwargs)
        if self.active is None or self.disabled:
            return out
        adapter = self.adapters[self.active]
        if isinstance(out, tuple):  # attention returns (output, weights)
            return (adapter(out[0]), *out[1:])
        return adapter(out)


# ---- the peft-like API ----------------------------------------------------------------------
def hidden_size(model: nn.Module) -> int:
    """The width d of the model's hidden states, from its config (text part of multimodal ones)."""
    config = model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(config.hidden_size)


def adapter_layers(model: nn.Module) -> dict[str, AdapterLayer]:
    """Every AdapterLayer in the model, by module path (e.g. "model.layers.0.mlp")."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AdapterLayer)}


def adapter_names(model: nn.Module) -> list[str]:
    layers = list(adapter_layers(model).values())
    return list(layers[0].adapters) if layers else []


def active_adapter(model: nn.Module) -> str | None:
    layers = list(adapter_layers(model).values())
    return layers[0].active if layers else None


def _wrap_targets(model: nn.Module, targets: tuple[str, ...]) -> dict[str, AdapterLayer]:
    """Wrap each sublayer named in `targets` (once); return the AdapterLayers that follow them."""
    found = [(name, m) for name, m in model.named_modules()
             if name.rsplit(".", 1)[-1] in targets and not isinstance(m, AdapterLayer)
             and not name.endswith("base_layer")]
    already = {name: m for name, m in adapter_layers(model).items() if name.rsplit(".", 1)[-1] in targets}
    if not found and not already:
        raise AdapterError(f"no sublayer named {' or '.join(map(repr, targets))} in "
                           f"{type(model).__name__}; pass BottleneckConfig(targets=...) with the name "
                           "of its layers' feed-forward (or attention) module, e.g. 'mlp' or 'feed_forward'")
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        wrapper = AdapterLayer(module)
        setattr(model.get_submodule(parent_name) if parent_name else model, child, wrapper)
        already[name] = wrapper
    return dict(sorted(already.items()))


def add_adapter(model: nn.Module, name: str, config: BottleneckConfig = BottleneckConfig()) -> nn.Module:
    """Add a new (identity) adapter called `name` after every target sublayer; freeze the base.
    Like peft, a new adapter is not yet active: call `set_adapter(model, name)`. Returns `model`.
    Raises AdapterError when the name is taken or no target sublayer exists."""
    if name in adapter_names(model):
        raise AdapterError(f"the model already has an adapter named {name!r}; pick another name")
    for p in model.parameters():
        p.requires_grad_(False)
    ref = next(model.parameters())
    d = hidden_size(model)
    for layer in _wrap_targets(model, config.targets).values():
        adapter = Bottleneck(d, config.bottleneck_size, config.activation).to(ref.device, ref.dtype)
        adapter.config = config
        layer.adapters[name] = adapter.requires_grad_(False)
    _set_trainable(model, active_adapter(model))
    return model


def _layers_with(model: nn.Module, name: str) -> dict[str, AdapterLayer]:
    layers = {k: m for k, m in adapter_layers(model).items() if name in m.adapters}
    if not layers:
        raise AdapterError(f"no adapter named {name!r}; the model has {adapter_names(model) or 'none'}")
    return layers


def _set_trainable(model: nn.Module, name: str | None) -> None:
    for layer in adapter_layers(model).values():
        for adapter_name, adapter in layer.adapters.items():
            adapter.requires_grad_(adapter_name == name)


def set_adapter(model: nn.Module, name: str) -> None:
    """Make `name` the active adapter: it alone runs in the forward pass and is trainable
    (like peft's `set_adapter`); every other parameter is frozen."""
    _layers_with(model, name)
    for layer in adapter_layers(model).values():
        layer.active = name if name in layer.adapters else None
    _set_trainable(model, name)


@contextmanager
def disable_adapter(model: nn.Module) -> Iterator[None]:
    """Inside the block the model is the bare base (like peft's `model.disable_adapter()`)."""
    layers = list(adapter_layers(model).values())
    before = [layer.disabled for layer in layers]
    for layer in layers:
        layer.disabled = True
    try:
        yield
    finally:
        for layer, was in zip(layers, before):
            layer.disabled = was


def adapter_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The adapter's tensors, keyed by layer path: "model.layers.0.mlp.down.weight" -> (m, d)."""
    return {f"{path}.{key}": t for path, layer in _layers_with(model, name).items()
            for key, t in layer.adapters[name].state_dict().items()}


def save_adapter(model: nn.Module, name: str, path: str | Path) -> Path:
    """Write adapter `name` to one safetensors file (atomically), with the base's hidden_size and
    the adapter's config in its metadata. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = next(iter(_layers_with(model, name).values())).adapters[name].config
    metadata = {"format": FORMAT, "hidden_size": str(hidden_size(model)),
                "config": json.dumps(asdict(config))}
    tensors = {k: t.detach().cpu().contiguous() for k, t in adapter_state_dict(model, name).items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; an adapter is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_adapter(model: nn.Module, path: str | Path, name: str) -> nn.Module:
    """Add the adapter saved at `path` under `name`, frozen and not active (`set_adapter` makes
    it both, as after `add_adapter`). Returns `model`. Raises AdapterError, naming both sizes,
    when the file was made for a base with another hidden_size or number of layers, or when it
    is not an adapter file."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: no such adapter file")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise AdapterError(f"{path}: not a bottleneck adapter file (metadata format "
                               f"{metadata.get('format')!r}, expected {FORMAT!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    saved_d, d = int(metadata["hidden_size"]), hidden_size(model)
    if saved_d != d:
        raise AdapterError(f"{path}: this adapter was made for a base with hidden_size={saved_d}, "
                           f"but this model has hidden_size={d}; load it on the base it was trained on")
    config = BottleneckConfig(**json.loads(metadata["config"]))
    add_adapter(model, name, config)
    layers = _layers_with(model, name)
    saved_layers = sorted({k.rsplit(".", 2)[0] for k in tensors})
    if saved_layers != sorted(layers):
        delete_adapter(model, name)
        raise AdapterError(f"{path}: this adapter has {len(saved_layers)} adapted sublayers "
                           f"({saved_layers[:2]}...), this model has {len(layers)} "
                           f"({sorted(layers)[:2]}...); "
                           "load it on the base it was trained on")
    for layer_path, layer in layers.items():
        adapter = layer.adapters[name]
        ref = next(adapter.parameters())
        adapter.load_state_dict({k: tensors[f"{layer_path}.{k}"].to(ref.device, ref.dtype)
                                 for k in adapter.state_dict()})
        adapter.requires_grad_(False)
    return model


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter `name` from every layer (the active one becomes none if it was `name`)."""
    for layer in _layers_with(model, name).values():
        del layer.adapters[name]
        if layer.active == name:
            layer.active = None


def unload(model: nn.Module) -> nn.Module:
    """Remove every adapter and put the original sublayers back (like peft's `unload()`): the
    model is the base again, with its original parameter names. Returns `model`."""
    for path, layer in adapter_layers(model).items():
        parent_name, _, child = path.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.base_layer)
    return model
