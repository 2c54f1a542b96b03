"""Zoo: Spikingformer and Spike-driven Transformer V1 match the official code's structure and semantics.

Golden key lists (``tests/data/official_keys/<arch>.txt``) were written by instantiating the official classes
(zhouchenlin2096/Spikingformer@4378623, BICLab/Spike-Driven-Transformer@3faa822) with their published configs;
the header line of each file names the class and arguments. Parameter counts are what those classes report
(unused modules included). Forward tests use small configs; official-size models are built on the meta device,
which allocates nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from spikec.errors import InputError
from spikec.models import build_model, default_input_shape, zoo_entry
from spikec.nn import MultiStepLIF

KEYS_DIR = Path(__file__).resolve().parent.parent / "data" / "official_keys"

SPIKINGFORMER = ["spikingformer-cifar", "spikingformer-imagenet", "spikingformer-dvs"]
SDT = ["sdt-cifar", "sdt-imagenet", "sdt-dvs"]
ARCHS = SPIKINGFORMER + SDT

UNIFORM_OPTIONS = {"img_size", "in_channels", "num_classes", "embed_dim", "num_heads", "mlp_ratio", "depth", "T",
                   "tau"}

# Small configs for forward tests (a few hundred ms each on CPU).
SMALL = {
    "spikingformer-cifar": dict(embed_dim=32, num_heads=2, depth=2, T=2),
    "spikingformer-imagenet": dict(img_size=64, num_classes=7, embed_dim=32, num_heads=2, depth=2, T=2),
    "spikingformer-dvs": dict(img_size=32, embed_dim=32, num_heads=2, depth=2, T=3),
    "sdt-cifar": dict(embed_dim=32, num_heads=2, depth=2, T=2),
    "sdt-imagenet": dict(img_size=32, num_classes=7, embed_dim=32, num_heads=2, depth=2, T=2),
    "sdt-dvs": dict(img_size=16, embed_dim=32, num_heads=2, depth=2, T=3),
}

# The layers allowed to see non-spike input: the encoding (stem) conv, and Spikingformer's head, which reads
# the mean of the analog residual stream.
EXEMPT = {
    "spikingformer-cifar": {"patch_embed.block0_conv", "head"},
    "spikingformer-imagenet": {"patch_embed.proj_conv", "head"},
    "spikingformer-dvs": {"patch_embed.proj_conv", "head"},
    "sdt-cifar": {"patch_embed.proj_conv"},
    "sdt-imagenet": {"patch_embed.proj_conv"},
    "sdt-dvs": {"patch_embed.proj_conv"},
}


def _golden_keys(arch: str) -> list[str]:
    lines = (KEYS_DIR / f"{arch}.txt").read_text().splitlines()
    assert lines[0].startswith("# "), "golden key file must start with its provenance comment"
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _build_meta(arch: str, **config) -> nn.Module:
    with torch.device("meta"):
        return build_model(arch, config)


def _n_params(model: nn.Module, skip: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not any(s in name for s in skip))


def _example_input(arch: str, config: dict, batch: int = 2, seed: int = 0,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = default_input_shape(arch, config, batch=batch)
    if arch.endswith("-dvs"):  # event counts
        return torch.poisson(torch.rand(shape, generator=g, dtype=dtype) * 1.5, generator=g)
    return torch.randn(shape, generator=g, dtype=dtype) * 2.0


def _excited(arch: str, seed: int = 0) -> nn.Module:
    """A small model in eval mode whose neurons fire: BN scales of 1..3 and offsets of 0..1, with running
    statistics calibrated on one batch (so eval-mode BN normalizes like training mode would)."""
    torch.manual_seed(seed)
    model = build_model(arch, SMALL[arch])
    g = torch.Generator().manual_seed(seed + 1)
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for m in bns:
        m.weight.data = torch.rand(m.num_features, generator=g) * 2.0 + 1.0
        m.bias.data = torch.rand(m.num_features, generator=g)
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics exactly
    with torch.no_grad():
        model.train()(_example_input(arch, SMALL[arch], seed=seed + 2))
    for m in bns:
        m.momentum = 0.1
    return model.eval()


# --- registry ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_registered_with_uniform_options(arch):
    entry = zoo_entry(arch)
    assert entry.family == ("sdt" if arch.startswith("sdt") else "spikingformer")
    options = set(entry.config_defaults())
    extra = {"pooling_stat", "dvs_mode"} if arch.startswith("sdt") else set()
    assert options == UNIFORM_OPTIONS | extra


@pytest.mark.parametrize("arch, shape", [
    ("spikingformer-cifar", (1, 3, 32, 32)),
    ("spikingformer-imagenet", (1, 3, 224, 224)),
    ("spikingformer-dvs", (1, 16, 2, 128, 128)),
    ("sdt-cifar", (1, 3, 32, 32)),
    ("sdt-imagenet", (1, 3, 224, 224)),
    ("sdt-dvs", (1, 10, 2, 64, 64)),
])
def test_default_input_shape(arch, shape):
    assert default_input_shape(arch) == shape


@pytest.mark.parametrize("arch, defaults", [
    ("spikingformer-cifar", dict(embed_dim=384, num_heads=12, depth=4, T=4, tau=2.0, num_classes=10)),
    ("spikingformer-imagenet", dict(embed_dim=768, num_heads=8, depth=8, T=4, tau=2.0, num_classes=1000)),
    ("spikingformer-dvs", dict(embed_dim=256, num_heads=16, depth=2, T=16, tau=1.5, num_classes=10)),
    ("sdt-cifar", dict(embed_dim=512, num_heads=8, depth=2, T=4, pooling_stat="0011", dvs_mode=False)),
    ("sdt-imagenet", dict(embed_dim=512, num_heads=8, depth=8, T=4, pooling_stat="1111", dvs_mode=False)),
    ("sdt-dvs", dict(embed_dim=256, num_heads=8, depth=2, T=10, pooling_stat="0011", dvs_mode=True)),
])
def test_official_default_configs(arch, defaults):
    config = zoo_entry(arch).config_defaults()
    assert {k: config[k] for k in defaults} == defaults
    assert config["mlp_ratio"] == 4


@pytest.mark.parametrize("arch, config", [
    ("spikingformer-cifar", dict(embed_dim=384, num_heads=5)),
    ("spikingformer-dvs", dict(embed_dim=100, num_heads=2)),
    ("spikingformer-imagenet", dict(depth=0)),
    ("spikingformer-cifar", dict(tau=1.0)),
    ("sdt-cifar", dict(pooling_stat="0012")),
    ("sdt-imagenet", dict(pooling_stat="111")),
    ("sdt-dvs", dict(no_such_option=1)),
])
def test_bad_config_is_an_input_error(arch, config):
    with pytest.raises(InputError):
        build_model(arch, config)


# --- checkpoint compatibility --------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_keys_equal_official_in_order(arch):
    model = _build_meta(arch)
    assert list(model.state_dict().keys()) == _golden_keys(arch)


@pytest.mark.parametrize("arch, config, total", [
    # Spikingformer (code totals include the unused norm1/norm2 LayerNorms)
    ("spikingformer-cifar", {}, 9_326_266),
    ("spikingformer-cifar", dict(embed_dim=256, num_heads=16), 4_156_202),
    ("spikingformer-cifar", dict(depth=2), 5_765_818),
    ("spikingformer-imagenet", dict(embed_dim=384, num_heads=8), 16_828_312),
    ("spikingformer-imagenet", dict(embed_dim=512), 29_705_768),
    ("spikingformer-imagenet", {}, 66_363_208),
    ("spikingformer-dvs", {}, 2_568_714),
    # Spike-driven Transformer V1 (totals include the unused talking_heads)
    ("sdt-cifar", {}, 10_233_546),
    ("sdt-cifar", dict(num_classes=100), 10_279_716),
    ("sdt-imagenet", dict(embed_dim=384), 16_816_536),
    ("sdt-imagenet", dict(depth=6), 23_373_736),
    ("sdt-imagenet", {}, 29_689_896),
    ("sdt-imagenet", dict(depth=10), 36_006_056),
    ("sdt-imagenet", dict(embed_dim=768), 66_339_144),
    ("sdt-dvs", {}, 2_566_794),
    ("sdt-dvs", dict(img_size=128, num_classes=11, pooling_stat="0111", dvs_mode=False), 2_567_051),  # Gesture
])
def test_parameter_count_equals_official_code(arch, config, total):
    assert _n_params(_build_meta(arch, **config)) == total


def test_unused_parameters_account_for_paper_counts():
    # The papers quote the counts without the never-used modules (truncated to 0.01M).
    sf = _build_meta("spikingformer-imagenet", embed_dim=512)
    assert _n_params(sf, skip=(".norm1.", ".norm2.")) == 29_689_384
    sdt = _build_meta("sdt-imagenet")
    assert _n_params(sdt, skip=(".talking_heads.",)) == 29_689_896 - 8 * 64


@pytest.mark.parametrize("arch", ARCHS)
def test_load_state_dict_round_trip(arch):
    src = _excited(arch, seed=0)
    dst = build_model(arch, SMALL[arch]).eval()
    result = dst.load_state_dict(src.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    x = _example_input(arch, SMALL[arch])
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_missing_or_unexpected_key_fails_strict_load(arch):
    model = build_model(arch, SMALL[arch])
    state = model.state_dict()
    missing = dict(state)
    del missing["block.0.attn.q_conv.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(missing, strict=True)
    extra = dict(state)
    extra["block.0.attn.q_linear.weight"] = state["block.0.attn.q_conv.weight"]
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict(extra, strict=True)


# --- neurons -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_neuron_parameters(arch):
    model = build_model(arch, SMALL[arch])
    tau = 1.5 if arch == "spikingformer-dvs" else 2.0
    lifs = {name: m for name, m in model.named_modules() if isinstance(m, MultiStepLIF)}
    assert lifs
    for name, lif in lifs.items():
        leaf = name.rsplit(".", 1)[-1]
        expected = 0.5 if leaf in ("attn_lif", "talking_heads_lif") else 1.0
        assert lif.v_threshold == expected, name
        assert lif.tau == tau, name
        assert lif.detach_reset and lif.decay_input and lif.v_reset == 0.0, name


# --- forward -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_forward_gives_logits(arch):
    model = build_model(arch, SMALL[arch]).eval()
    x = _example_input(arch, SMALL[arch], batch=4)  # batch != T, so a time/batch mix-up changes the shape
    with torch.no_grad():
        y = model(x)
        y2 = model(x)
    num_classes = SMALL[arch].get("num_classes", 10)
    assert isinstance(y, torch.Tensor)
    assert y.shape == (4, num_classes)
    assert torch.isfinite(y).all()
    assert torch.equal(y, y2)  # the neurons keep no state between calls


def _record_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, args[0].detach()))
             for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("arch", ARCHS)
def test_spike_driven_every_synapse_after_the_stem_sees_spikes(arch):
    model = _excited(arch)
    seen = _record_inputs(model, _example_input(arch, SMALL[arch]))
    synapses = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}
    assert set(seen) == synapses - {n for n in synapses if n.endswith(".talking_heads")}
    for name, inp in seen.items():
        if name in EXEMPT[arch]:
            continue
        values = set(torch.unique(inp).tolist())
        assert values <= {0.0, 1.0}, f"{name} sees non-spike values {sorted(values)[:8]}"
        assert 1.0 in values, f"{name} never receives a spike: the test would be vacuous"
    stem = next(n for n in EXEMPT[arch] if n != "head")
    assert not set(torch.unique(seen[stem]).tolist()) <= {0.0, 1.0}  # the encoding layer is analog


def _expected_unused(arch: str) -> set[str]:
    depth = SMALL[arch]["depth"]
    if arch.startswith("spikingformer"):
        return {f"block.{i}.{n}" for i in range(depth) for n in ("norm1", "norm2")}
    unused = {f"block.{i}.attn.{n}" for i in range(depth) for n in ("talking_heads", "attn_lif")}
    unused.add("patch_embed.rpe_lif")
    stat = zoo_entry(arch).config_defaults()["pooling_stat"]
    unused |= {f"patch_embed.{p}" for p, on in zip(("maxpool", "maxpool1", "maxpool2", "maxpool3"), stat)
               if on == "0"}
    return unused


@pytest.mark.parametrize("arch", ARCHS)
def test_modules_the_official_forward_skips_are_never_called(arch):
    model = build_model(arch, SMALL[arch]).eval()
    called: set[str] = set()
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: called.add(name))
             for name, m in model.named_modules() if name and not isinstance(m, nn.ModuleList)]
    with torch.no_grad():
        model(_example_input(arch, SMALL[arch]))
    for h in hooks:
        h.remove()
    never = {name for name, m in model.named_modules()
             if name and not isinstance(m, nn.ModuleList) and name not in called}
    assert never == _expected_unused(arch)


def test_sdt_dvs_mode_erodes_and_other_variants_do_not():
    dvs = build_model("sdt-dvs", SMALL["sdt-dvs"])
    pools = [m for n, m in dvs.named_modules() if n.endswith("attn.pool.pool")]
    assert len(pools) == SMALL["sdt-dvs"]["depth"]
    assert all(isinstance(p, nn.MaxPool3d) and p.kernel_size == (1, 3, 3) and p.stride == (1, 1, 1)
               and p.padding == (0, 1, 1) for p in pools)
    cifar = build_model("sdt-cifar", SMALL["sdt-cifar"])
    assert not any(isinstance(m, nn.MaxPool3d) for m in cifar.modules())
    # Turning dvs_mode off changes the result of the same weights on the same events.
    plain = build_model("sdt-dvs", {**SMALL["sdt-dvs"], "dvs_mode": False})
    excited = _excited("sdt-dvs")
    plain.load_state_dict(excited.state_dict())
    x = _example_input("sdt-dvs", SMALL["sdt-dvs"])
    with torch.no_grad():
        assert not torch.equal(excited(x), plain.eval()(x))


# --- equality with the official forward ----------------------------------------------------------------------

# The SMALL configs (Spikingformer DVS at 128x128, the only size its official tokenizer accepts) and one SDT
# config exercising the MLP's extra residual (mlp_ratio=1) and an odd pooling_stat.
GOLDEN_CASES = {
    **{arch: (arch, SMALL[arch]) for arch in ARCHS},
    "spikingformer-dvs": ("spikingformer-dvs", {**SMALL["spikingformer-dvs"], "img_size": 128}),
    "sdt-cifar-mlp1-0101": ("sdt-cifar", {**SMALL["sdt-cifar"], "mlp_ratio": 1, "pooling_stat": "0101"}),
}

# Logits of the OFFICIAL classes (spikingjelly MultiStepLIFNode on its torch backend, float64) for GOLDEN_CASES,
# with the weights from ``_fill_state(seed=0)``, BN statistics calibrated in train mode on
# ``_example_input(seed=1)`` and evaluation on ``_example_input(seed=2)``; for SDT the official forward's
# ``[0]``, its TET output (CIFAR10-DVS) averaged over time. Every LIF fires on some but not all of its inputs.
OFFICIAL_LOGITS = {
    "spikingformer-cifar": [
        [
            0.8828322469553068, 0.799947736926831, -2.027358328466569, -1.643989054440637,
            2.1251475377195215, 0.30757072941500735, -0.5596533226284923, -1.1892923252709287,
            -0.1346312455719916, 1.3886640337150022,
        ],
        [
            1.3179026852739961, 0.27071889716726105, -0.7010027415635294, -0.6870021683735723,
            1.338807473293584, -0.32368075576537253, -0.6245867573428464, -0.8324193454130583,
            -0.7165597608789198, 0.10097479055400632,
        ],
    ],
    "spikingformer-imagenet": [
        [
            8.533462321731788, -2.9068187941598627, -2.406701650108249, -13.192185692798027,
            8.603655598782352, 3.9431882792935844, 1.994126712115128,
        ],
        [
            5.83313336063128, 4.9944376354383655, 0.7181905636446115, -19.628409051798137,
            8.186314393125446, 5.482505625275881, 13.275050653805552,
        ],
    ],
    "spikingformer-dvs": [
        [
            0.0429910684748946, -0.7954956947979993, 1.6114157667602003, 0.9695418012176859,
            -0.1111967385240587, -1.2188517114899882, 1.2214159125799304, 0.20301104286496024,
            -1.115824666643128, 0.22113735742776808,
        ],
        [
            0.8062194315701161, -0.6424416113548739, 0.6893868700737376, 0.1438117113080382,
            -0.16692303101686587, -1.8820187832775699, 0.606457408759512, 0.036906740978817326,
            -1.2054903915925446, 0.20983010308774264,
        ],
    ],
    "sdt-cifar": [
        [
            -0.0857498058869366, 1.3536940209633987, 0.3834038776015014, 0.11656772766324108,
            0.5839090925699258, 0.3898330679636376, 0.35242869650742104, -0.5305309542075094,
            1.1177883430987403, -0.9104426908487024,
        ],
        [
            -0.5416085091648035, 1.0091269864405172, 0.516668036590997, -0.3050340259769304,
            0.8541465961576924, 0.7042548726746967, 0.6376954111257023, -0.9033137987972816,
            0.7019213631519635, -1.0811647594793068,
        ],
    ],
    "sdt-imagenet": [
        [
            -0.2490773270905315, 0.7014787804958824, 0.6951949927374378, -0.2127895893328827,
            0.26430994824197873, 0.759849404140835, 0.36916475343772703,
        ],
        [
            -0.28313799004742607, 0.8396286859407956, 0.388772741995291, 0.04792129618563261,
            -0.006069523977358993, 0.6343159874175466, 0.14181877069569968,
        ],
    ],
    "sdt-cifar-mlp1-0101": [
        [
            -0.030406874720629973, 0.40665093872122043, 0.5893641460012318, 0.6070391032470617,
            -1.5177140936214393, -0.17193850965332427, 0.25682486726793213, -0.6439218979612308,
            -0.45304305638552517, -0.3230372154590926,
        ],
        [
            0.36044368820893746, 0.3964548295829183, 0.6806125295732091, 0.6131398328608225,
            -1.647721539732813, -0.5683027151864761, -0.09146377604567191, -0.8737016861173976,
            -0.183483652721893, -0.46190696250948804,
        ],
    ],
    "sdt-dvs": [
        [
            0.5434921784201764, 0.07534297726452872, 0.5528445666551612, 0.477420083101987,
            -0.6463927521680355, -0.6167818441062377, 0.7895786431412524, -0.0841916010032131,
            -0.043046551704804537, -0.48202935273941344,
        ],
        [
            0.08219089830760486, -0.09976293527732816, 0.40629249538004714, 0.2037306173783018,
            -0.5409350298373267, -0.9388657399348376, 0.5447476365690614, 0.14940327960301109,
            -0.04552194143287325, 0.04772471481122136,
        ],
    ],
}


def _fill_state(model: nn.Module, seed: int) -> None:
    """Deterministic float64 weights, drawn in state_dict order: BN scale U(1, 3) and shift U(-0.5, 0.5), BN
    statistics 0 / 1, other weights N(0, 1 / fan_in), other biases N(0, 0.01)."""
    g = torch.Generator().manual_seed(seed)
    bn_params = {f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))
                 for p in ("weight", "bias")}
    state = {}
    for key, t in model.state_dict().items():
        f64 = dict(generator=g, dtype=torch.float64)
        if key.endswith("num_batches_tracked"):
            state[key] = t
        elif key.endswith("running_mean"):
            state[key] = torch.zeros_like(t)
        elif key.endswith("running_var"):
            state[key] = torch.ones_like(t)
        elif key in bn_params and key.endswith("weight"):
            state[key] = torch.rand(t.shape, **f64) * 2.0 + 1.0
        elif key in bn_params:
            state[key] = torch.rand(t.shape, **f64) - 0.5
        elif t.dim() >= 2:
            state[key] = torch.randn(t.shape, **f64) / t[0].numel() ** 0.5
        else:
            state[key] = torch.randn(t.shape, **f64) * 0.1
    model.load_state_dict(state, strict=True)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_forward_equals_official_logits(case):
    arch, config = GOLDEN_CASES[case]
    model = build_model(arch, config).double()
    _fill_state(model, seed=0)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.momentum = None  # cumulative average: one batch sets the statistics exactly
    with torch.no_grad():
        model.train()(_example_input(arch, config, seed=1, dtype=torch.float64))
        y = model.eval()(_example_input(arch, config, seed=2, dtype=torch.float64))
    expected = torch.tensor(OFFICIAL_LOGITS[case], dtype=torch.float64)
    torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-9)


class _MatmulRecorder(TorchFunctionMode):
    """Records the operand shapes of every matmul (``@``) while active."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm):
            self.calls.append((tuple(args[0].shape), tuple(args[1].shape)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("arch, config, first", [
    # heads=4 so that tokens (8x8 or 4x4) differ from the head width d=8
    ("spikingformer-cifar", dict(embed_dim=32, num_heads=4, depth=1, T=2), "qk"),
    ("spikingformer-dvs", dict(img_size=32, embed_dim=32, num_heads=4, depth=1, T=2), "qk"),
    ("spikingformer-imagenet", dict(img_size=64, embed_dim=32, num_heads=4, depth=1, T=2), "kv"),
])
def test_spikingformer_attention_order(arch, config, first):
    model = build_model(arch, config).eval()
    recorder = _MatmulRecorder()
    with torch.no_grad(), recorder:
        model(_example_input(arch, config))
    assert len(recorder.calls) == 2 * config["depth"]
    (a1, b1), (a2, b2) = recorder.calls[:2]
    T, B, h, d = config["T"], 2, 4, 8
    n = a1[3] if first == "qk" else b1[3]
    assert n != d
    if first == "qk":  # (q @ k^T) @ v
        assert (a1, b1, a2, b2) == ((T, B, h, n, d), (T, B, h, d, n), (T, B, h, n, n), (T, B, h, n, d))
    else:  # q @ (k^T @ v)
        assert (a1, b1, a2, b2) == ((T, B, h, d, n), (T, B, h, n, d), (T, B, h, n, d), (T, B, h, d, d))


@pytest.mark.parametrize("arch", SDT)
def test_sdt_attention_has_no_matmul(arch):
    model = build_model(arch, SMALL[arch]).eval()
    recorder = _MatmulRecorder()
    with torch.no_grad(), recorder:
        model(_example_input(arch, SMALL[arch]))
    assert recorder.calls == []


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_has_no_data_dependent_control_flow(arch):
    # torch.fx traces symbolically (no real values), so it fails on any branch that depends on the input.
    import torch.fx as fx

    class LeafLIF(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, MultiStepLIF) or super().is_leaf_module(m, qualname)

    model = build_model(arch, SMALL[arch]).eval()
    traced = fx.GraphModule(model, LeafLIF().trace(model))
    x = _example_input(arch, SMALL[arch])
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
