"""Deep backbones on tiny random models: official state-dict layouts, position-embedding interpolation, pooling
modules against direct computations, the detector, and deterministic extraction."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrieval.data.download import OfflineError
from retrieval.features.backbones.detector import Detector, no_detector
from retrieval.features.backbones.pooling import gem, relup, rgem, sgem
from retrieval.features.backbones.resnet import ResNet, cvnet_to_torchvision
from retrieval.features.backbones.vit import DinoV2, ViTConfig
from retrieval.features.deep import DeepConfig, DeepExtractor
from retrieval.runtime import _said_alone

TINY_VIT = {"variant": "vitb14", "registers": 4, "img_size": 56, "embed_dim": 32, "depth": 2, "heads": 2}


def official_vit_keys(depth, swiglu):
    keys = {
        "cls_token",
        "pos_embed",
        "register_tokens",
        "mask_token",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "norm.weight",
        "norm.bias",
    }
    mlp = ("mlp.w12", "mlp.w3") if swiglu else ("mlp.fc1", "mlp.fc2")
    for i in range(depth):
        for m in ("norm1", "attn.qkv", "attn.proj", "norm2", *mlp):
            keys |= {f"blocks.{i}.{m}.weight", f"blocks.{i}.{m}.bias"}
        keys |= {f"blocks.{i}.ls1.gamma", f"blocks.{i}.ls2.gamma"}
    return keys


def test_vit_state_dicts_have_the_official_names_and_shapes():
    with torch.device("meta"):
        b = DinoV2(ViTConfig("vitb14", registers=4))
        g = DinoV2(ViTConfig("vitg14", registers=0))
    sb = b.state_dict()
    assert set(sb) == official_vit_keys(12, False)
    assert sb["pos_embed"].shape == (1, 1 + 37 * 37, 768) and sb["register_tokens"].shape == (1, 4, 768)
    assert sb["mask_token"].shape == (1, 768) and sb["patch_embed.proj.weight"].shape == (768, 3, 14, 14)
    assert sb["blocks.0.mlp.fc1.weight"].shape == (3072, 768)
    sg = g.state_dict()
    assert set(sg) == official_vit_keys(40, True) - {"register_tokens"}
    assert sg["blocks.0.mlp.w12.weight"].shape == (8192, 1536) and sg["blocks.39.mlp.w3.weight"].shape == (1536, 4096)


def test_position_embeddings_interpolate_as_the_official_variants():
    torch.manual_seed(0)
    reg = DinoV2(ViTConfig(**TINY_VIT))
    torch.nn.init.normal_(reg.pos_embed)
    assert reg.interpolate_pos_embed(4, 4) is reg.pos_embed  # the trained grid: unchanged
    out = reg.interpolate_pos_embed(3, 6)
    grid = reg.pos_embed[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    direct = F.interpolate(grid, size=(3, 6), mode="bicubic", antialias=True).permute(0, 2, 3, 1).reshape(1, 18, -1)
    torch.testing.assert_close(out[:, 1:], direct)
    torch.testing.assert_close(out[:, :1], reg.pos_embed[:, :1])
    plain = DinoV2(ViTConfig(**{**TINY_VIT, "registers": 0}))
    plain.pos_embed.data.copy_(reg.pos_embed.data)
    out = plain.interpolate_pos_embed(3, 6)
    direct = F.interpolate(grid, scale_factor=(3.1 / 4, 6.1 / 4), mode="bicubic", antialias=False)
    torch.testing.assert_close(out[:, 1:], direct.permute(0, 2, 3, 1).reshape(1, 18, -1))
    with pytest.raises(ValueError, match="multiples of 14"):
        reg.forward_features(torch.zeros(1, 3, 30, 28))


def test_registers_get_no_position_embedding_and_are_dropped_from_the_patch_grid():
    torch.manual_seed(0)
    m = DinoV2(ViTConfig(**TINY_VIT)).eval()
    x = torch.randn(1, 3, 42, 56)
    out = m.forward_features(x)
    assert out["cls"].shape == (1, 32) and out["patch"].shape == (1, 32, 3, 4)
    # changing the register tokens changes the output (they take part) but the patch grid keeps 12 positions
    with torch.no_grad():
        m.register_tokens.add_(1.0)
    assert not torch.allclose(m.forward_features(x)["cls"], out["cls"])


def test_gem_rgem_sgem_relup_against_direct_computation():
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(2, 3, 6, 7))).astype(np.float32)
    t = torch.from_numpy(x)
    direct = (np.maximum(x, 1e-8) ** 4.6).mean(axis=(2, 3)) ** (1 / 4.6)
    np.testing.assert_allclose(gem(t, 4.6, 1e-8).numpy(), direct, rtol=1e-5)
    # regional GeM: a 5x5 window with reflection padding, p 2.5, averaged with the input
    pad = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    r = np.zeros_like(x)
    for i in range(6):
        for j in range(7):
            r[:, :, i, j] = ((pad[:, :, i : i + 5, j : j + 5] ** 2.5).mean(axis=(2, 3))) ** (1 / 2.5)
    np.testing.assert_allclose(rgem(t).numpy(), 0.5 * x + 0.5 * r, rtol=1e-4, atol=1e-6)
    a, b = rng.normal(size=(1, 5)), rng.normal(size=(1, 5))
    na, nb = a / np.linalg.norm(a), b / np.linalg.norm(b)
    m = np.maximum(na, nb)
    np.testing.assert_allclose(
        sgem([torch.from_numpy(a), torch.from_numpy(b)]).numpy(), m / np.linalg.norm(m), rtol=1e-6
    )
    np.testing.assert_array_equal(
        relup(torch.tensor([-1.0, 0.0, 0.01, 0.5])).numpy(), np.float32([0.014, 0.014, 0.014, 0.5])
    )


def test_detector_outputs_and_fallback():
    torch.manual_seed(0)
    det = Detector(8).eval()
    x = torch.randn(1, 8, 3, 4)
    d, w = det(x)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(1, 3, 4))
    assert (w > 0).all() and w.shape == (1, 1, 3, 4)
    direct = F.softplus(det.conv2(F.relu(det.bn(det.conv1(x)))))
    torch.testing.assert_close(w, direct)
    d0, w0 = no_detector(x)
    torch.testing.assert_close(w0[0, 0], x[0].norm(dim=0))
    torch.testing.assert_close(d0 * w0, x)


def _cvnet_names(state):
    """Our (torchvision) names -> CVNet's pycls names with the encoder_q. prefix (the inverse of the documented map)."""

    inv = {
        "conv1.": "f.a.",
        "bn1.": "f.a_bn.",
        "conv2.": "f.b.",
        "bn2.": "f.b_bn.",
        "conv3.": "f.c.",
        "bn3.": "f.c_bn.",
        "downsample.0.": "proj.",
        "downsample.1.": "bn.",
    }
    out = {}
    for k, v in state.items():
        m = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", k)
        if m:
            rest = next(b + m[3][len(a) :] for a, b in inv.items() if m[3].startswith(a))
            out[f"encoder_q.s{m[1]}.b{int(m[2]) + 1}.{rest}"] = v
        elif k.startswith("conv1."):
            out["encoder_q.stem.conv." + k[6:]] = v
        elif k.startswith("bn1."):
            out["encoder_q.stem.bn." + k[4:]] = v
        elif k.startswith("fc."):
            out["encoder_q.head.fc." + k[3:]] = v
    out["encoder_q.head.pool.p"] = torch.tensor([3.0])
    return out


def test_resnet_torchvision_names_and_cvnet_mapping():
    torch.manual_seed(0)
    net = ResNet(depth=50, fc_dim=16, width=4)
    keys = set(net.state_dict())
    assert {
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.downsample.0.weight",
        "layer3.5.bn3.num_batches_tracked",
        "layer4.2.conv3.weight",
        "fc.weight",
    } <= keys
    assert not any(k.startswith("layer3.6") for k in keys)  # ResNet-50: 6 blocks in conv4
    mapped = cvnet_to_torchvision(_cvnet_names(net.state_dict()))
    assert set(mapped) == keys
    with pytest.raises(ValueError, match="without a mapping"):
        cvnet_to_torchvision({"encoder_q.s1.b1.zz.weight": torch.zeros(1)})
    out = net.eval().forward_features(torch.randn(1, 3, 64, 80))
    assert out["local"].shape == (1, 64, 4, 5) and out["global_map"].shape == (1, 128, 2, 3)  # width 4: 4*4*4, 4*8*4
    assert net.local_dim == 64 and net.global_dim == 128
    assert (out["local"] < 0).any()  # taken before the ReLU


def test_relup_changes_the_global_map_only_the_local_features_are_the_trained_networks():
    # SuperGlobal's ReLU+ is a change to the global descriptor; AMES's CVNet local features (and its detector) are
    # those of the network as trained. Until 2026-12-02 ReLU+ reached the local features too (25% relative change).
    torch.manual_seed(0)
    plain = ResNet(depth=50, width=8).eval()
    plus = ResNet(depth=50, width=8, relup_alpha=0.014).eval()
    plus.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        a, b = plain.forward_features(x), plus.forward_features(x)
    torch.testing.assert_close(b["local"], a["local"], rtol=0, atol=0)
    assert (b["local"] < 0).any()  # still before the activation
    assert (b["global_map"] - a["global_map"]).norm() > 0.01 * a["global_map"].norm()


def _image(seed=0, h=90, w=120):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("backbone", ["dinov2", "resnet"])
def test_extraction_loads_saved_checkpoints_and_is_deterministic(tmp_path, backbone):
    if backbone == "dinov2":
        cfg = {
            "checkpoint": "random",
            "model": TINY_VIT,
            "image_size": 70,
            "scales": [1.0, 0.7],
            "k": 20,
            "device": "cpu",
        }
    else:
        cfg = {
            "checkpoint": "random",
            "model": {"depth": 50, "width": 4, "head": "fc", "fc_dim": 16},
            "pooling": {"gemp": True, "rgem": True, "sgem": True, "relup": True},
            "image_size": 160,
            "scales": [0.7071, 1.0],
            "k": 20,
            "device": "cpu",
        }
    ex = DeepExtractor(DeepConfig.from_dict(backbone, cfg))
    img = _image()
    row, g = ex.extract(img, crop=[10, 5, 110, 85])
    row2, g2 = ex.extract(img, crop=[10, 5, 110, 85])
    np.testing.assert_array_equal(row["descriptors"], row2["descriptors"])
    np.testing.assert_array_equal(g, g2)
    assert len(row["descriptors"]) == 20 and (np.diff(row["weight"]) <= 0).all()
    np.testing.assert_allclose(np.linalg.norm(row["descriptors"].astype(np.float32), axis=1), 1, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(g), 1, atol=1e-5)
    # inside the crop [10, 110) x [5, 85): pixel 10 spans [9.5, 10.5) in the ResNet's pixel-centre convention
    assert (row["xy"][:, 0] >= 9.5).all() and (row["xy"][:, 0] <= 110).all() and (row["xy"][:, 1] >= 4.5).all()
    assert set(np.unique(row["scale"]).tolist()) <= set(np.float32(cfg["scales"]).tolist())
    assert tuple(row["image_size"]) == (120, 90)
    # the weights saved in the official layout (a plain state dict, or under 'state') load and give the same output
    path = tmp_path / "weights.pth"
    torch.save(ex.net.state_dict(), path)
    det = Detector(ex.local_dim)
    torch.manual_seed(1)
    torch.nn.init.normal_(det.bn.running_mean)
    torch.save({"state": det.state_dict()}, tmp_path / "detector.pt")
    loaded = DeepExtractor(DeepConfig.from_dict(backbone, {**cfg, "checkpoint": str(path)}))
    # torchvision's names mean torchvision's RGB-trained weights (a review: they were given BGR, CVNet's order);
    # DINOv2 takes RGB whatever its weights; random weights keep BGR
    assert loaded.rgb and loaded.describe()["channels"] == "rgb" and ex.rgb == (backbone == "dinov2")
    if backbone == "resnet":
        bgr_tensor = ex._tensor(img)
        torch.testing.assert_close(loaded._tensor(img), bgr_tensor.flip(1), rtol=0, atol=0)
        ex.rgb = True  # the same weights in the same order: the same output
        row, g = ex.extract(img, crop=[10, 5, 110, 85])
    row3, g3 = loaded.extract(img, crop=[10, 5, 110, 85])
    np.testing.assert_array_equal(row["descriptors"], row3["descriptors"])
    np.testing.assert_array_equal(g, g3)
    with_det = DeepExtractor(
        DeepConfig.from_dict(backbone, {**cfg, "checkpoint": str(path), "detector": str(tmp_path / "detector.pt")})
    )
    row4, g4 = with_det.extract(img)
    np.testing.assert_array_equal(g4, loaded.extract(img)[1])  # the detector changes local descriptors only
    assert not np.array_equal(row4["descriptors"], loaded.extract(img)[0]["descriptors"])
    if backbone == "resnet":  # a CVNet checkpoint loads through the key mapping
        # as CVNet saves it (pycls's checkpoint: the state dict under 'model_state', beside the epoch; it was refused)
        torch.save({"epoch": 10, "model_state": _cvnet_names(ex.net.state_dict())}, tmp_path / "cvnet.pth")
        cv = DeepExtractor(DeepConfig.from_dict(backbone, {**cfg, "checkpoint": str(tmp_path / "cvnet.pth")}))
        assert not cv.rgb and cv.describe()["channels"] == "bgr"  # CVNet (pycls) was trained on BGR
        ex.rgb = False
        np.testing.assert_array_equal(cv.extract(img)[1], ex.extract(img)[1])
        # read as RGB the same weights give other features (the tiny random net's global vector hardly moves)
        assert not np.array_equal(cv.extract(img)[0]["descriptors"], loaded.extract(img)[0]["descriptors"])
        # GeM+ off: CVNet's own learned p (SuperGlobal's "modules off"), not a fixed 3 (until 2026-12-02)
        off = {**cfg, "pooling": {**cfg["pooling"], "gemp": False}}
        cvnet = _cvnet_names(ex.net.state_dict())
        cvnet["encoder_q.head.pool.p"] = torch.tensor([4.2])
        torch.save({"model": cvnet}, tmp_path / "cvnet_p.pth")
        learned = DeepExtractor(DeepConfig.from_dict(backbone, {**off, "checkpoint": str(tmp_path / "cvnet_p.pth")}))
        plain = DeepExtractor(DeepConfig.from_dict(backbone, {**off, "checkpoint": str(path)}))
        assert learned.gem_p == pytest.approx(4.2) and learned.describe()["gem_p"] == pytest.approx(4.2)
        assert plain.gem_p == 3.0
        plain.gem_p = learned.gem_p  # the same weights pooled with 4.2: the same descriptor
        np.testing.assert_array_equal(learned.extract(img)[1], plain.extract(img)[1])
        plain.gem_p = 3.0  # (a small random network's map is nearly flat: p moves the descriptor by about 1e-5)
        assert not np.array_equal(learned.extract(img)[1], plain.extract(img)[1])


def test_resnet_channel_order_follows_the_weights_and_can_be_set(tmp_path):
    """auto: CVNet's names -> BGR (pycls trained on BGR); torchvision's names -> RGB (torchvision's ImageNet weights),
    unless the fc is square, CVNet's 2048 -> 2048 head renamed by cvnet_to_torchvision (a review: such a file was
    given RGB); ``channels: rgb | bgr`` overrides; random weights keep BGR."""
    cfg = {
        "checkpoint": "random",
        "model": {"depth": 50, "width": 4, "head": "fc", "fc_dim": 128},  # global_dim 128: a square head
        "image_size": 96,
        "scales": [1.0],
        "k": 10,
        "device": "cpu",
    }
    ex = DeepExtractor(DeepConfig.from_dict("resnet", cfg))
    assert not ex.rgb
    state = ex.net.state_dict()
    torch.save(_cvnet_names(state), tmp_path / "cvnet.pth")
    torch.save(cvnet_to_torchvision(_cvnet_names(state)), tmp_path / "renamed.pth")
    classifier = {k: v for k, v in state.items() if not k.startswith("fc.")}
    torch.save({**classifier, "fc.weight": torch.zeros(1000, 128), "fc.bias": torch.zeros(1000)}, tmp_path / "tv.pth")
    head_none = {**cfg, "model": {**cfg["model"], "head": "none"}}

    def channels(path, c=None, base=cfg):
        d = {**base, "checkpoint": str(tmp_path / path), **({"channels": c} if c else {})}
        return DeepExtractor(DeepConfig.from_dict("resnet", d)).describe()["channels"]

    assert channels("cvnet.pth") == "bgr" and channels("renamed.pth") == "bgr"
    assert channels("tv.pth", base=head_none) == "rgb"  # torchvision's classifier is dropped with head: none
    assert channels("tv.pth", "bgr", base=head_none) == "bgr" and channels("cvnet.pth", "rgb") == "rgb"
    # torchvision's classifier under the default head: fc is named as such, with the setting to use (helper-108)
    with pytest.raises(
        ValueError, match=r"fc.weight \(1000, 128\) for \(128, 128\).*set extract.resnet.model.head: none"
    ):
        channels("tv.pth")
    with pytest.raises(ValueError, match="extract.resnet.channels: 'RGB' is not one of auto, rgb, bgr"):
        DeepConfig.from_dict("resnet", {**cfg, "channels": "RGB"})


def test_resnet_positions_are_pixel_centres_mapped_through_the_resize():
    """Receptive-field centre j sits on pixel 16 j (pixel i at i, as SIFT's); through a resize by s it is stored at
    (16 j + 0.5) / s - 0.5 plus the crop's offset (16 j / s until resnet 3: 0.9-2.3 px off on a phone photo)."""
    cfg = {"checkpoint": "random", "model": {"depth": 50, "width": 4, "head": "none"}, "k": 10_000, "device": "cpu"}
    img = _image(h=150, w=200)
    for size, scale in ((100, 1.0), (400, 0.7071)):
        ex = DeepExtractor(DeepConfig.from_dict("resnet", {**cfg, "image_size": size, "scales": [scale]}))
        row, _ = ex.extract(img, crop=[20, 10, 180, 130])
        _, sx, sy = ex._resize(img[10:130, 20:180], scale)
        xs, ys = np.unique(row["xy"][:, 0]), np.unique(row["xy"][:, 1])
        np.testing.assert_allclose(xs, (16 * np.arange(len(xs)) + 0.5) / sx - 0.5 + 20, rtol=0, atol=1e-4)
        np.testing.assert_allclose(ys, (16 * np.arange(len(ys)) + 0.5) / sy - 0.5 + 10, rtol=0, atol=1e-4)


def test_checkpoint_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"blocks.0.nope": torch.zeros(1)}, bad)
    cfg = {"checkpoint": str(bad), "model": TINY_VIT, "device": "cpu"}
    with pytest.raises(ValueError, match="bad.pth") as e:  # a ValueError: one line on the console, not a traceback
        DeepExtractor(DeepConfig.from_dict("dinov2", cfg))
    assert _said_alone(type(e.value)) and str(e.value).startswith(str(bad))  # KeyError quoted its message
    # another architecture's weights (a ResNet file under dinov2, helper-140): named with the keys
    resnet = DeepExtractor(DeepConfig.from_dict("resnet", {"checkpoint": "random", "model": {"depth": 50, "width": 4}}))
    torch.save(resnet.net.state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match=r"resnet.pth: state dict does not match the DinoV2 configuration; missing"):
        DeepExtractor(DeepConfig.from_dict("dinov2", {**cfg, "checkpoint": str(tmp_path / "resnet.pth")}))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        DeepExtractor(DeepConfig.from_dict("dinov2", {**cfg, "checkpoint": str(tmp_path / "missing.pth")}))
    for text in ("not a checkpoint", "hello", "this is not a checkpoint"):  # torch: KeyError: 101, IndexError: pop...
        (tmp_path / "text.pth").write_text(text)
        with pytest.raises(
            ValueError, match=r"text.pth: not a loadable dinov2 state dict \(not a torch file: it starts"
        ):
            DeepExtractor(DeepConfig.from_dict("dinov2", {**cfg, "checkpoint": str(tmp_path / "text.pth")}))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.pth: not a loadable dinov2 state dict \(an empty file"):
        DeepExtractor(DeepConfig.from_dict("dinov2", {**cfg, "checkpoint": str(tmp_path / "empty.pth")}))
    # the right names in other shapes (a wider model: a ViT-S file under variant vitb14): torch raised a RuntimeError
    # listing every tensor, without the file; one line names the file and the first shapes
    wider = DeepExtractor(
        DeepConfig.from_dict("dinov2", {**cfg, "checkpoint": "random", "model": {**TINY_VIT, "embed_dim": 64}})
    )
    torch.save(wider.net.state_dict(), tmp_path / "wider.pth")
    with pytest.raises(
        ValueError,
        match=r"wider.pth: state dict does not match the DinoV2 configuration: \d+ tensors of another shape, e.g. cls_token \(1, 1, 64\) for \(1, 1, 32\)",
    ):
        DeepExtractor(DeepConfig.from_dict("dinov2", {**cfg, "checkpoint": str(tmp_path / "wider.pth")}))


def test_dinov2_without_weights_names_the_file_the_hub_cache_needs(tmp_path, monkeypatch):
    """checkpoint null, offline and not cached: the message named the hub folder, where torch looks in its
    checkpoints/ folder (a new user's trial); it now names the file torch would read."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(OfflineError) as e:  # said in one line, as a refusal, not with a traceback (helper-145)
        DeepExtractor(DeepConfig.from_dict("dinov2", {"checkpoint": None, "model": TINY_VIT, "device": "cpu"}))
    assert _said_alone(type(e.value))
    want = tmp_path / "hub" / "checkpoints" / ViTConfig(**TINY_VIT).hub_url.rsplit("/", 1)[-1]
    assert f"(as {want})" in str(e.value) and "OSError: no network" in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__  # not printed after torch's socket errors
