"""Networks: shapes, deep supervision, attention gates, residual shortcut, learning, Pix2Pix seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_lvseg.models.attention_res_unet import AttentionGate, AttentionResUNet, ResidualBlock
from napari_lvseg.models.pix2pix import PatchDiscriminator, Pix2PixGenerator, one_hot

torch.set_num_threads(1)


@pytest.mark.parametrize("depth,size", [(1, (6, 10)), (2, (16, 16)), (3, (24, 40)), (4, (32, 48))])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_unet_output_shape(depth, size, norm):
    model = AttentionResUNet(in_channels=2, out_channels=3, base_width=4, depth=depth, norm=norm).eval()
    out = model(torch.randn(2, 2, *size))
    assert out.shape == (2, 3, *size)


def test_deep_supervision_list_in_training_tensor_in_eval():
    model = AttentionResUNet(base_width=4, depth=3, deep_supervision=True)
    x = torch.randn(1, 1, 32, 32)
    outputs = model.train()(x)
    assert isinstance(outputs, list) and len(outputs) == 3  # main + one per coarser decoder level
    assert all(o.shape == (1, 5, 32, 32) for o in outputs)
    out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5, 32, 32)
    # Without deep supervision training mode returns the plain tensor too.
    assert isinstance(AttentionResUNet(base_width=4, depth=3).train()(x), torch.Tensor)


def test_indivisible_size_raises_clear_error():
    model = AttentionResUNet(base_width=4, depth=4)
    with pytest.raises(ValueError, match=r"36x32 .*divisible by 2\*\*depth = 16"):
        model(torch.randn(1, 1, 36, 32))


def test_bad_norm_name_rejected():
    with pytest.raises(ValueError, match="norm"):
        AttentionResUNet(norm="layer")


def test_architecture_params_rebuild_identical_structure():
    model = AttentionResUNet(base_width=4, depth=2, dropout=0.1, deep_supervision=True, norm="batch")
    params = model.architecture_params()
    assert params == dict(in_channels=1, out_channels=5, base_width=4, depth=2, dropout=0.1,
                          deep_supervision=True, norm="batch")
    clone = AttentionResUNet(**params)
    assert {k: v.shape for k, v in clone.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


def test_attention_gate_coefficients_in_unit_interval_and_scale_skip():
    torch.manual_seed(0)
    gate = AttentionGate(skip_channels=4, gate_channels=8, inter_channels=2)
    x, g = torch.randn(2, 4, 16, 16) * 5, torch.randn(2, 8, 8, 8) * 5
    out = gate(x, g)
    alpha = gate.last_coefficients
    assert alpha.shape == (2, 1, 16, 16)
    assert float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0
    assert float(alpha.std()) > 0  # it actually varies over the image
    torch.testing.assert_close(out, x * alpha)
    # A strongly negative psi bias closes the gate; a strongly positive one opens it.
    with torch.no_grad():
        gate.psi.bias.fill_(-50.0)
    assert gate(x, g).abs().max() < 1e-6
    with torch.no_grad():
        gate.psi.bias.fill_(50.0)
    torch.testing.assert_close(gate(x, g), x)


def test_model_exposes_attention_maps_per_level():
    model = AttentionResUNet(base_width=4, depth=3).eval()
    model(torch.randn(1, 1, 32, 32))
    maps = model.attention_maps()
    assert [m.shape[-1] for m in maps] == [32, 16, 8]
    assert all(float(m.min()) >= 0 and float(m.max()) <= 1 for m in maps)


def test_residual_block_identity_shortcut_and_projection():
    same = ResidualBlock(8, 8)
    assert isinstance(same.shortcut, nn.Identity)
    # With the residual branch zeroed, the block is act(x): identity on non-negative input.
    nn.init.zeros_(same.norm2.weight)
    x = torch.rand(1, 8, 6, 6)
    torch.testing.assert_close(same.eval()(x), x)
    proj = ResidualBlock(4, 8, stride=2)
    assert isinstance(proj.shortcut[0], nn.Conv2d) and proj.shortcut[0].kernel_size == (1, 1)
    assert proj(torch.randn(1, 4, 8, 8)).shape == (1, 8, 4, 4)


def test_tiny_unet_overfits_one_image():
    torch.manual_seed(0)
    model = AttentionResUNet(base_width=4, depth=2, deep_supervision=True)
    image = torch.zeros(1, 1, 16, 16)
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    ring = ((yy - 8) ** 2 + (xx - 8) ** 2).float().sqrt()
    target[0][ring < 6] = 2
    target[0][ring < 3] = 1
    image[0, 0][ring < 6] = 0.3
    image[0, 0][ring < 3] = 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    model.train()
    for _ in range(100):
        optimizer.zero_grad()
        outputs = model(image)
        loss = sum(nn.functional.cross_entropy(o, target) for o in outputs)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    accuracy = (model.eval()(image).argmax(1) == target).float().mean()
    assert accuracy > 0.95


# ----------------------------------------------------------------------------------------- pix2pix

def test_one_hot_values_and_range_check():
    labels = torch.tensor([[[0, 1], [4, 3]]])
    encoded = one_hot(labels)
    assert encoded.shape == (1, 5, 2, 2) and encoded.dtype == torch.float32
    assert torch.equal(encoded.argmax(1), labels)
    assert torch.equal(encoded.sum(1), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="0..4"):
        one_hot(torch.tensor([[[0, 5]]]))


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return Pix2PixGenerator(base_width=4, depth=4)


def test_generator_same_seed_identical_different_seed_differs(generator):
    labels = torch.randint(0, 5, (2, 32, 32))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = generator.generate(labels, seed=7)
    after_state = torch.rand(1)
    assert torch.equal(before, after_state)  # global RNG untouched by a seeded generate
    second = generator.generate(labels, seed=7)
    other = generator.generate(labels, seed=8)
    assert first.shape == (2, 1, 32, 32)
    assert torch.equal(first, second)
    assert (first - other).abs().max() > 1e-3
    assert float(first.min()) >= -1.0 and float(first.max()) <= 1.0
    assert generator.training  # mode restored


def test_generator_dropout_gives_variety_without_seed(generator):
    labels = torch.randint(0, 5, (1, 32, 32))
    assert not torch.equal(generator.generate(labels), generator.generate(labels))
    no_dropout = Pix2PixGenerator(base_width=4, depth=4, dropout=0.0)
    assert torch.equal(no_dropout.generate(labels), no_dropout.generate(labels))


def test_generator_default_depth_reaches_2x2_and_dropout_on_three_inner_levels():
    gen = Pix2PixGenerator(base_width=2)
    assert gen.architecture_params() == dict(in_channels=5, out_channels=1, base_width=2, depth=6,
                                             dropout=0.5, norm="instance", upsample="transposed")
    x = one_hot(torch.randint(0, 5, (1, 128, 128)))
    inner = x
    for block in gen.down:
        inner = block(inner)
    assert inner.shape[-2:] == (2, 2)
    with_dropout = [lvl for lvl, up in enumerate(gen.up) if any(isinstance(m, nn.Dropout) for m in up)]
    assert with_dropout == [3, 4, 5]
    assert gen.eval()(x).shape == (1, 1, 128, 128)


def test_resize_upsampling_keeps_a_flat_region_flat():
    """A uniform mask gives a uniform image centre with resize + conv; transposed convolutions lay a checkerboard."""
    torch.manual_seed(0)
    x = one_hot(torch.zeros(1, 256, 256, dtype=torch.long))   # all background: flat away from the borders
    centre = {}
    for kind in ("transposed", "resize"):
        gen = Pix2PixGenerator(base_width=4, depth=3, dropout=0.0, upsample=kind).eval()
        with torch.no_grad():
            centre[kind] = gen(x)[0, 0, 96:160, 96:160]
    assert float(centre["resize"].std()) < 1e-5
    # three stacked stride-2 transposed convolutions: a pattern that repeats every 2**3 pixels
    checker = centre["transposed"]
    assert float(checker.std()) > 1e-2
    assert torch.allclose(checker[:-8], checker[8:], atol=1e-5) and torch.allclose(checker[:, :-8], checker[:, 8:],
                                                                                  atol=1e-5)
    resize = Pix2PixGenerator(base_width=4, depth=3, upsample="resize")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in resize.modules())
    assert Pix2PixGenerator(**resize.architecture_params()).architecture_params()["upsample"] == "resize"
    with pytest.raises(ValueError, match="upsample must be one of transposed, resize"):
        Pix2PixGenerator(upsample="bilinear")


def test_injected_noise_starts_silent_and_then_draws_per_pixel_variety():
    torch.manual_seed(0)
    plain = Pix2PixGenerator(base_width=4, depth=4, dropout=0.0, upsample="resize")
    noisy = Pix2PixGenerator(**{**plain.architecture_params(), "noise_levels": 2})
    missing, unexpected = noisy.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["noise.0.scale", "noise.1.scale"] and not unexpected
    assert noisy.noise[0].scale.shape == (1, 8, 1, 1)   # level 0 reads its skip beside the level above: 2 x 4
    labels = torch.randint(0, 5, (1, 32, 32))
    assert torch.equal(noisy.generate(labels, seed=1), plain.generate(labels, seed=1))   # zero weight: the same
    with torch.no_grad():
        for injection in noisy.noise:
            injection.scale.fill_(0.5)
    a, b = noisy.generate(labels, seed=1), noisy.generate(labels, seed=2)
    assert torch.equal(a, noisy.generate(labels, seed=1))   # deterministic per seed
    difference = (a - b)[0, 0]
    assert float(difference.abs().mean()) > 1e-3
    # per pixel, not per block: neighbouring pixels differ independently, not in 2x2 copies of a coarser map
    assert float((difference[:, 1::2] - difference[:, ::2]).abs().mean()) > 0.2 * float(difference.abs().mean())
    assert Pix2PixGenerator(**noisy.architecture_params()).architecture_params()["noise_levels"] == 2
    assert "noise_levels" not in plain.architecture_params()   # cards without noise keep their params
    with pytest.raises(ValueError, match="noise_levels must be 0..4, with resize upsampling"):
        Pix2PixGenerator(base_width=4, depth=4, upsample="transposed", noise_levels=1)


def test_patch_discriminator_shape():
    disc = PatchDiscriminator(base_width=4)
    labels = one_hot(torch.randint(0, 5, (2, 128, 128)))
    image = torch.rand(2, 1, 128, 128) * 2 - 1
    out = disc(labels, image)
    assert out.shape == (2, 1, 14, 14)
    torch.testing.assert_close(disc(torch.cat([labels, image], 1)), out)
    assert disc.architecture_params() == dict(in_channels=6, base_width=4, n_layers=3, norm="instance")
