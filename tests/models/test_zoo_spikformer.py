"""Spikformer family and Spikformer V2 in the model zoo.

Golden facts: ``tests/data/official_keys/spikformer-{cifar,imagenet,dvs}.txt`` are the ``state_dict`` keys of
the official ``ZK-Zhou/spikformer`` classes built with their default configs (header line says which); the
parameter counts were measured by instantiating those classes: the total the code prints (it includes the unused
LayerNorms) and the total without the unused parameters (``_is_unused``: the positional embedding and those
LayerNorms). Forward checks use small configs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from spikec.errors import InputError
from spikec.models import build_model, default_input_shape, zoo_entry
from spikec.models.spikformer import spikformer_imagenet
from spikec.nn import MultiStepLIF

KEYS_DIR = Path(__file__).resolve().parents[1] / "data" / "official_keys"
OFFICIAL_COMMIT = "621268981827af47aa666c1b5f774de4281d90ad"

SMALL = {
    "spikformer-cifar": dict(img_size=16, embed_dim=32, num_heads=2, depth=3, T=2, num_classes=5),
    "spikformer-imagenet": dict(img_size=32, embed_dim=32, num_heads=2, depth=3, T=2, num_classes=5),
    "spikformer-dvs": dict(img_size=32, embed_dim=32, num_heads=2, depth=3, T=3, num_classes=5),
    "spikformer-v2": dict(img_size=32, embed_dim=32, num_heads=2, depth=3, T=2, num_classes=5),
}
V1 = ["spikformer-cifar", "spikformer-imagenet", "spikformer-dvs"]
ALL = V1 + ["spikformer-v2"]
UNUSED_PARTS = ("norm1", "norm2", "drop_path", "attn_drop", "res_lif")


def _small(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, {**SMALL[name], **overrides})


def _input(name: str, batch: int = 2, **overrides) -> torch.Tensor:
    torch.manual_seed(1)
    shape = default_input_shape(name, {**SMALL[name], **overrides}, batch=batch)
    if name == "spikformer-dvs":
        return torch.randint(0, 3, shape).float()  # event counts, [B, T, C, H, W]
    return torch.randn(shape) * 2.0


def _golden_keys(variant: str) -> tuple[str, list[str]]:
    lines = (KEYS_DIR / f"spikformer-{variant}.txt").read_text().splitlines()
    return lines[0], [line for line in lines[1:] if line.strip()]


def _is_unused(param_name: str) -> bool:
    return (param_name == "pos_embed" or param_name.startswith("norm.")
            or any(f".{part}." in param_name for part in ("norm1", "norm2")))


def _record_inputs(modules: dict[str, nn.Module]) -> tuple[dict[str, list[torch.Tensor]], list]:
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    handles = [m.register_forward_pre_hook(lambda mod, args, name=name: seen[name].append(args[0].detach()))
               for name, m in modules.items()]
    return seen, handles


def _is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


# ---------------------------------------------------------------------------------------------- the registry

def test_registry_entries_and_official_defaults():
    expected = {
        "spikformer-cifar": ("spikformer", dict(img_size=32, in_channels=3, num_classes=10, embed_dim=384,
                                                num_heads=12, mlp_ratio=4, depth=4, T=4, tau=2.0, residual="add")),
        "spikformer-imagenet": ("spikformer", dict(img_size=224, in_channels=3, num_classes=1000, embed_dim=512,
                                                   num_heads=8, mlp_ratio=4, depth=8, T=4, tau=2.0, residual="add")),
        "spikformer-dvs": ("spikformer", dict(img_size=128, in_channels=2, num_classes=10, embed_dim=256,
                                              num_heads=16, mlp_ratio=4, depth=2, T=16, tau=2.0, residual="add")),
        "spikformer-v2": ("spikformer-v2", dict(img_size=224, in_channels=3, num_classes=1000, embed_dim=512,
                                                num_heads=8, mlp_ratio=4, depth=8, T=4, tau=2.0, residual="add")),
    }
    for name, (family, defaults) in expected.items():
        entry = zoo_entry(name)
        assert entry.family == family
        assert entry.config_defaults() == defaults
        assert entry.summary


def test_input_shapes():
    assert default_input_shape("spikformer-cifar") == (1, 3, 32, 32)
    assert default_input_shape("spikformer-imagenet", batch=2) == (2, 3, 224, 224)
    assert default_input_shape("spikformer-dvs") == (1, 16, 2, 128, 128)
    assert default_input_shape("spikformer-dvs", {"T": 10, "img_size": 64}) == (1, 10, 2, 64, 64)
    assert default_input_shape("spikformer-v2") == (1, 3, 224, 224)


@pytest.mark.parametrize("config", [{"embed_dim": 36}, {"embed_dim": 48, "num_heads": 5}, {"residual": "xor"},
                                    {"img_size": 40}, {"depth": 0}, {"tau": 1.0}, {"colour": 3}])
def test_bad_config_is_an_input_error(config):
    with pytest.raises(InputError):
        build_model("spikformer-imagenet", config)


# ------------------------------------------------------------------------------ keys and parameter counts

@pytest.mark.parametrize("variant", ["cifar", "imagenet", "dvs"])
def test_state_dict_keys_equal_official_in_order(variant):
    header, golden = _golden_keys(variant)
    assert header.startswith(f"# ZK-Zhou/spikformer@{OFFICIAL_COMMIT} ")
    with torch.device("meta"):
        model = build_model(f"spikformer-{variant}")
    assert list(model.state_dict().keys()) == golden


PARAM_COUNTS = [  # (zoo name, config, code total, minus unused), measured on the official classes
    ("spikformer-cifar", {}, 9_330_874, 9_324_730),
    ("spikformer-cifar", {"num_classes": 100}, 9_365_524, None),
    ("spikformer-cifar", {"embed_dim": 256, "num_heads": 8}, 4_159_274, 4_155_178),
    ("spikformer-cifar", {"depth": 2}, 5_768_122, 5_765_050),
    ("spikformer-imagenet", {"embed_dim": 384}, 16_828_312, 16_816_024),
    ("spikformer-imagenet", {"depth": 6}, 23_385_640, 23_373_352),
    ("spikformer-imagenet", {}, 29_705_768, 29_689_384),
    ("spikformer-imagenet", {"depth": 10}, 36_025_896, 36_005_416),
    ("spikformer-imagenet", {"embed_dim": 768}, 66_363_208, 66_338_632),
    ("spikformer-dvs", {}, 2_585_610, 2_566_666),
]


@pytest.mark.parametrize("name,config,total,used", PARAM_COUNTS)
def test_parameter_counts_equal_reference(name, config, total, used):
    with torch.device("meta"):
        model = build_model(name, config)
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == total
    if used is not None:
        assert sum(p.numel() for n, p in params.items() if not _is_unused(n)) == used


def test_v2_parameter_count_and_stem_keys():
    with torch.device("meta"):
        v2 = build_model("spikformer-v2")
        v1 = build_model("spikformer-imagenet")
    v2_keys = list(v2.state_dict().keys())
    v1_keys = [k for k in v1.state_dict().keys() if ".norm1." not in k and ".norm2." not in k]
    assert sum(p.numel() for p in v2.parameters()) == 32_824_744  # ours; no official code to compare with
    assert set(v1_keys) <= set(v2_keys)
    extra = [k for k in v2_keys if k not in set(v1_keys)]
    assert extra and all(k.startswith("patch_embed.supp_") for k in extra)
    assert {k.split(".")[1] for k in extra} == {"supp_conv", "supp_bn", "supp_conv1", "supp_bn1", "supp_conv2",
                                                "supp_bn2", "supp_conv3", "supp_bn3"}


def test_spikformer_imagenet_weights_initialise_v2():
    torch.manual_seed(0)
    v1 = spikformer_imagenet(**{k: v for k, v in SMALL["spikformer-imagenet"].items()})
    v2 = _small("spikformer-v2")
    result = v2.load_state_dict(v1.state_dict(), strict=False)
    assert result.missing_keys and all(k.startswith("patch_embed.supp_") for k in result.missing_keys)
    assert result.unexpected_keys and all(".norm1." in k or ".norm2." in k for k in result.unexpected_keys)
    assert torch.equal(v2.patch_embed.rpe_conv.weight, v1.patch_embed.rpe_conv.weight)


# ------------------------------------------------------------------------------------------------ forward

@pytest.mark.parametrize("name", ALL)
def test_forward_gives_logits_and_binary_spikes(name):
    model = _small(name)
    lifs = {n: m for n, m in model.named_modules() if isinstance(m, MultiStepLIF)}
    outputs: dict[str, list[torch.Tensor]] = {n: [] for n in lifs}
    handles = [m.register_forward_hook(lambda mod, args, out, n=n: outputs[n].append(out.detach()))
               for n, m in lifs.items()]
    with torch.no_grad():
        logits = model(_input(name))
    for h in handles:
        h.remove()
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    called = {n: outs for n, outs in outputs.items() if outs}
    assert all(_is_binary(o) for outs in called.values() for o in outs)
    assert any(bool(o.any()) for outs in called.values() for o in outs)  # something fired
    never = sorted(n for n, outs in outputs.items() if not outs)
    assert never == (["block.0.attn.res_lif", "block.1.attn.res_lif", "block.2.attn.res_lif"]
                     if name == "spikformer-dvs" else [])


@pytest.mark.parametrize("name", ALL)
def test_unused_modules_are_never_called(name):
    model = _small(name)
    unused = {n: m for n, m in model.named_modules()
              if n.split(".")[-1] in UNUSED_PARTS or n == "norm"}
    if name == "spikformer-v2":
        assert unused == {}
    else:
        assert {n.split(".")[-1] for n in unused} >= {"norm1", "norm2"}
    calls: list[str] = []
    handles = [m.register_forward_pre_hook(lambda mod, args, n=n: calls.append(n)) for n, m in unused.items()]
    logits = model(_input(name))
    logits.sum().backward()
    for h in handles:
        h.remove()
    assert calls == []
    for n, p in model.named_parameters():
        if _is_unused(n):
            assert p.grad is None, n
    assert model.head.weight.grad is not None


@pytest.mark.parametrize("name", ALL)
def test_every_used_leaf_module_is_called(name):
    model = _small(name)
    leaves = {n: m for n, m in model.named_modules() if not list(m.children()) and n
              and n.split(".")[-1] not in UNUSED_PARTS and n != "norm"}
    calls: set[str] = set()
    handles = [m.register_forward_pre_hook(lambda mod, args, n=n: calls.add(n)) for n, m in leaves.items()]
    with torch.no_grad():
        model(_input(name))
    for h in handles:
        h.remove()
    assert calls == set(leaves)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_is_strict(name):
    a = _small(name).eval()
    torch.manual_seed(123)
    b = build_model(name, SMALL[name]).eval()
    sd = a.state_dict()
    b.load_state_dict(sd, strict=True)
    x = _input(name)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    missing = dict(sd)
    missing.pop("head.bias")
    with pytest.raises(RuntimeError, match="Missing key"):
        b.load_state_dict(missing, strict=True)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        b.load_state_dict({**sd, "block.0.attn.extra": torch.zeros(1)}, strict=True)


def _block_inputs(model: nn.Module, name: str) -> tuple[dict, list]:
    proj = "linear" if name == "spikformer-cifar" else "conv"
    watched = {}
    for i, blk in enumerate(model.block):
        for part in ("q", "k", "v"):
            watched[(i, part)] = getattr(blk.attn, f"{part}_{proj}")
        watched[(i, "proj")] = getattr(blk.attn, f"proj_{proj}")
        watched[(i, "fc1")] = getattr(blk.mlp, f"fc1_{proj}")
        watched[(i, "fc2")] = getattr(blk.mlp, f"fc2_{proj}")
    return _record_inputs(watched)


@pytest.mark.parametrize("name", ALL)
def test_iand_residual_keeps_every_block_input_binary(name):
    model = _small(name, residual="iand").train()  # BN on batch statistics: plenty of spikes
    seen, handles = _block_inputs(model, name)
    stem_convs = {n: m for n, m in model.patch_embed.named_children()
                  if isinstance(m, nn.Conv2d) and n != "proj_conv"}
    stem_seen, stem_handles = _record_inputs(stem_convs)
    with torch.no_grad():
        model(_input(name, residual="iand"))
    for h in handles + stem_handles:
        h.remove()
    for key, inputs in {**seen, **stem_seen}.items():
        assert inputs and all(_is_binary(t) for t in inputs), key
    assert any(bool(t.any()) for (_, part), ts in seen.items() if part == "q" for t in ts)


@pytest.mark.parametrize("name", ALL)
def test_add_residual_stays_within_the_reference_bound(name):
    model = _small(name).train()
    seen, handles = _block_inputs(model, name)
    with torch.no_grad():
        model(_input(name))
    for h in handles:
        h.remove()
    peak = 0.0
    for (layer, part), inputs in seen.items():
        t = torch.cat([x.flatten() for x in inputs])
        assert torch.equal(t, t.round()) and t.min() >= 0, (layer, part)
        bound = {"q": 2 + 2 * layer, "k": 2 + 2 * layer, "v": 2 + 2 * layer, "fc1": 3 + 2 * layer,
                 "proj": 1, "fc2": 1}[part]
        assert t.max() <= bound, (layer, part, t.max().item(), bound)
        peak = max(peak, t.max().item())
    assert peak > 1  # the SEW add really does produce non-binary inputs


def test_dvs_takes_batch_first_event_frames():
    model = _small("spikformer-dvs").eval()
    x = _input("spikformer-dvs")
    assert x.shape == (2, 3, 2, 32, 32)
    with torch.no_grad():
        ref = model.head(model.forward_features(x.permute(1, 0, 2, 3, 4)).mean(0))
        assert torch.equal(model(x), ref)


@pytest.mark.parametrize("residual", ["add", "iand"])
@pytest.mark.parametrize("name", ALL)
def test_tracer_accepts_the_model(name, residual):
    from spikec.frontends.torch import tracer

    model = _small(name, residual=residual, depth=1).eval()
    x = _input(name, batch=1, depth=1)
    with torch.no_grad():
        expected = model(x)
    result = tracer.trace_module(model, x)
    assert torch.equal(result.output, expected)
