"""Several members' LoRA adapters on one frozen base, each sequence routed to its own member.

The members of an ensemble differ only in their LoRA weights, so one forward (and backward)
pass through the base can serve all of them: the rows of a batch are grouped by member, every
adapted linear layer applies the base weight to all rows at once and each member's low-rank
update to its own rows with one batched matmul over the stacked (A, B) pairs. The base's
weights are read, and its kernels launched, once for M members instead of M times.

Nothing of peft's is re-implemented where peft decides: each member's layers are created by
``lorauq.lora.attach_lora`` itself (so member m's initial A is bit for bit what peft draws
after ``torch.manual_seed(m)``, and the RNG state after it is the one a single-member run
continues from), copied out, and peft is unloaded again. What peft would save is saved in
peft's format (``adapter_model.safetensors`` with peft's key names + ``adapter_config.json``),
so ``PeftModel.from_pretrained`` loads a member without lorauq.

The forward of one member's rows equals peft's ``result + lora_B(lora_A(dropout(x))) *
scaling`` (input cast to the adapter's dtype, result cast back), up to the rounding of a
batched matmul; rows do not interact in a transformer, so a member's logits do not depend on
which other members share its pass.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lorauq.errors import ModelError

__all__ = ["Route", "StackedLora", "StackedLoraLinear"]

_PEFT_PREFIX = "base_model.model."


@dataclass
class Route:
    """Which member each row of the coming forward pass belongs to.

    The rows are grouped: ``counts[j]`` rows for slot ``slots[j]``, in that order. ``widths``
    (each group's own padded width, at the right end of the row) and ``generators`` are needed
    only for LoRA dropout: each member's mask is drawn from its own generator with the shape
    its own batch would have had on its own, so the masks are the ones a single-member run
    draws.
    """

    slots: list[int]
    counts: list[int]
    widths: list[int] | None = None
    generators: list[torch.Generator] | None = None
    _index: dict[torch.device, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def equal(self) -> bool:
        return len(set(self.counts)) == 1

    @property
    def n_max(self) -> int:
        return max(self.counts)

    def index(self, device: torch.device) -> torch.Tensor:
        """Row r's place in the (slots × n_max) padded layout, once per device and route."""
        if device not in self._index:
            places = [j * self.n_max + i for j, n in enumerate(self.counts) for i in range(n)]
            self._index[device] = torch.as_tensor(places, device=device)
        return self._index[device]

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, T, F) -> (slots, n_max·T, F); a view when every member has as many rows."""
        _, width, features = x.shape
        if self.equal:
            return x.reshape(len(self.slots), -1, features)
        padded = x.new_zeros(len(self.slots) * self.n_max, width, features)
        padded = padded.index_copy(0, self.index(x.device), x)
        return padded.reshape(len(self.slots), -1, features)

    def merge(self, y: torch.Tensor, width: int) -> torch.Tensor:
        """The inverse of :meth:`split`: (slots, n_max·T, F) -> (rows, T, F)."""
        features = y.shape[-1]
        if self.equal:
            return y.reshape(-1, width, features)
        flat = y.reshape(len(self.slots) * self.n_max, width, features)
        return flat.index_select(0, self.index(y.device))

    def dropout(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """Inverted dropout with each member's mask from its own generator (as ``F.dropout``
        draws it: ``bernoulli_(1 - p)`` on a tensor of the member's batch shape, / (1 - p))."""
        if self.widths is None or self.generators is None:
            raise RuntimeError("LoRA dropout in training needs the route's widths and generators")
        mask = torch.ones_like(x)
        width, row = x.shape[1], 0
        for n, w, generator in zip(self.counts, self.widths, self.generators, strict=True):
            noise = torch.empty((n, w, x.shape[2]), dtype=x.dtype, device=x.device)
            noise.bernoulli_(1 - p, generator=generator).div_(1 - p)
            mask[row : row + n, width - w :] = noise
            row += n
        return x * mask


class _Router:
    """The route of the current pass, shared by every stacked layer of one base."""

    def __init__(self) -> None:
        self.route: Route | None = None

    def current(self) -> Route:
        if self.route is None:
            raise RuntimeError("a stacked-LoRA forward pass needs a route (StackedLora.routed)")
        return self.route


class StackedLoraLinear(nn.Module):
    """A frozen linear layer plus M members' LoRA (A, B), applied per row group."""

    def __init__(
        self,
        base_layer: nn.Module,
        a: Sequence[torch.Tensor],
        b: Sequence[torch.Tensor],
        scaling: float,
        dropout: float,
        router: _Router,
    ):
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = nn.ParameterList([nn.Parameter(t.detach().clone()) for t in a])
        self.lora_B = nn.ParameterList([nn.Parameter(t.detach().clone()) for t in b])
        self.scaling = scaling
        self.dropout = dropout
        self._router = router  # a plain attribute: not a submodule

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        route = self._router.current()
        a = torch.stack([self.lora_A[j] for j in route.slots])  # (S, r, in)
        b = torch.stack([self.lora_B[j] for j in route.slots])  # (S, out, r)
        x = x.to(a.dtype)
        if self.dropout > 0 and self.training:
            x = route.dropout(x, self.dropout)
        hidden = torch.bmm(route.split(x), a.transpose(1, 2))
        delta = torch.bmm(hidden, b.transpose(1, 2)) * self.scaling
        return (result + route.merge(delta, x.shape[1])).to(result.dtype)


@dataclass
class _Member:
    """What one member's peft attachment gave: its config (to save) and RNG state after init."""

    config: object
    rng_state: torch.Tensor


def _lora_layers(peft_model) -> dict[str, nn.Module]:
    """peft module name -> LoRA layer, checked to be plain LoRA on linear-like layers."""
    from peft.tuners.lora import LoraLayer

    layers = {}
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        problems = [
            what
            for what, bad in (
                ("an embedding", "default" in module.lora_embedding_A),
                ("DoRA or another variant", bool(module.lora_variant)),
                ("a LoRA bias", bool(module.lora_bias.get("default"))),
                ("no linear lora_A", not isinstance(module.lora_A["default"], nn.Linear)),
            )
            if bad
        ]
        if problems:
            raise ModelError(
                f"{name}: stacked LoRA supports plain LoRA on linear layers; this one has "
                f"{', '.join(problems)}; train or evaluate members one at a time"
            )
        layers[name] = module
    if not layers:
        raise ModelError("peft adapted no layer: check lora.target_modules")
    return layers


class StackedLora:
    """M members' LoRA on one base, installed in place; :meth:`remove` (or leaving the ``with``
    block) puts the base's own layers back, so the caller's base model is left as it was.

    ``attach(member)`` must wrap ``base_model`` with a fresh peft LoRA model of that member:
    ``lorauq.lora.attach_lora`` for training (seeded), any peft model of the saved config for
    evaluation (weights are loaded afterwards). It runs in a forked RNG, so the caller's torch
    RNG is untouched; the state each member's init left is kept as its dropout RNG.
    """

    def __init__(self, base_model: nn.Module, attach: Callable[[int], object], members: list[int]):
        if not members:
            raise ValueError("StackedLora needs at least one member")
        self.base_model = base_model
        self.members = list(members)
        self.router = _Router()
        self._members: list[_Member] = []
        a_all: dict[str, list[torch.Tensor]] = {}
        b_all: dict[str, list[torch.Tensor]] = {}
        geometry: dict[str, tuple[float, float]] = {}
        was_training = base_model.training  # peft's wrapping may switch modes
        # attach_lora seeds torch; fork so the caller's RNGs are left as they were
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        for member in self.members:
            with torch.random.fork_rng(devices=devices):
                peft_model = attach(member)
                try:
                    layers = _lora_layers(peft_model)
                    rng_state = torch.get_rng_state()
                    config = copy.deepcopy(peft_model.peft_config["default"])
                    for name, layer in layers.items():
                        a_all.setdefault(name, []).append(layer.lora_A["default"].weight.detach())
                        b_all.setdefault(name, []).append(layer.lora_B["default"].weight.detach())
                        dropout = layer.lora_dropout["default"]
                        p = dropout.p if isinstance(dropout, nn.Dropout) else 0.0
                        geometry.setdefault(name, (layer.scaling["default"], p))
                finally:
                    peft_model.unload()
                    if hasattr(base_model, "peft_config"):
                        del base_model.peft_config
            self._members.append(_Member(config, rng_state))
        if any(len(v) != len(self.members) for v in a_all.values()):
            raise ModelError("members were attached to different layers")
        self.layers: dict[str, StackedLoraLinear] = {}
        for peft_name in a_all:
            name = peft_name.removeprefix(_PEFT_PREFIX)
            parent_name, _, attr = name.rpartition(".")
            parent = base_model.get_submodule(parent_name)
            scaling, p = geometry[peft_name]
            layer = StackedLoraLinear(
                getattr(parent, attr), a_all[peft_name], b_all[peft_name], scaling, p, self.router
            )
            setattr(parent, attr, layer)
            self.layers[peft_name] = layer
        base_model.train(was_training)

    # --- lifetime ---------------------------------------------------------------------

    def remove(self) -> None:
        """Put the base's own layers back (idempotent)."""
        for peft_name, layer in self.layers.items():
            name = peft_name.removeprefix(_PEFT_PREFIX)
            parent_name, _, attr = name.rpartition(".")
            setattr(self.base_model.get_submodule(parent_name), attr, layer.base_layer)
        self.layers = {}

    def __enter__(self) -> StackedLora:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @contextlib.contextmanager
    def routed(self, route: Route) -> Iterator[None]:
        """Route the passes inside the block (forward, and backward if it recomputes)."""
        self.router.route = route
        try:
            yield
        finally:
            self.router.route = None

    # --- one member's view ------------------------------------------------------------

    def rng_state(self, slot: int) -> torch.Tensor:
        """The CPU RNG state member ``slot``'s own peft init left (its dropout RNG's start)."""
        return self._members[slot].rng_state.clone()

    def parameters(self, slot: int) -> list[nn.Parameter]:
        """Member ``slot``'s trainable tensors in peft's order (A then B, layer by layer), so
        an optimiser over them has the state_dict layout of one over the peft model."""
        params = []
        for layer in self.layers.values():
            params += [layer.lora_A[slot], layer.lora_B[slot]]
        return params

    def pairs(self, slot: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.lora_A[slot], layer.lora_B[slot]) for layer in self.layers.values()]

    def state_dict(self, slot: int) -> dict[str, torch.Tensor]:
        """Member ``slot``'s adapter under peft's saved key names."""
        out = {}
        for peft_name, layer in self.layers.items():
            out[f"{peft_name}.lora_A.weight"] = layer.lora_A[slot].detach()
            out[f"{peft_name}.lora_B.weight"] = layer.lora_B[slot].detach()
        return out

    def load_state_dict(self, slot: int, weights: dict[str, torch.Tensor]) -> None:
        """Load a peft adapter file's tensors into member ``slot``; every key must match."""
        mine = self.state_dict(slot)
        missing = sorted(set(mine) - set(weights))
        unexpected = sorted(set(weights) - set(mine))
        if missing or unexpected:
            raise ValueError(
                f"adapter keys differ: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        with torch.no_grad():
            for key, param in mine.items():
                if weights[key].shape != param.shape:
                    raise ValueError(
                        f"{key}: shape {tuple(weights[key].shape)}, expected {tuple(param.shape)}"
                    )
                param.copy_(weights[key])

    def adapter(self, slot: int) -> tuple[dict[str, torch.Tensor], object]:
        """Member ``slot`` as (tensors, config) in peft's format, for
        :func:`lorauq.checkpoints.write_checkpoint`: what ``PeftModel.from_pretrained`` reads."""
        tensors = {k: v.to("cpu").contiguous() for k, v in self.state_dict(slot).items()}
        config = copy.deepcopy(self._members[slot].config)
        config.inference_mode = True
        return tensors, config
