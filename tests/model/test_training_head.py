"""The authors' training objective: DCM head, summed InfoNCE, diversity after "plus", ablation switches."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model import T2VParser, diversity, get_config, info_nce
from model.config import ConfigError
from model.heads import dcm_logits
from model.train import TrainConfig, Trainer

TEXTS = ["a red circle moving left", "a cat", "two blue squares slide down over a green field"]


def _softmax(xs: list[float], tau: float) -> list[float]:
    m = max(xs)
    e = [math.exp(tau * (x - m)) for x in xs]
    return [v / sum(e) for v in e]


def _dcm_pair(q: list[list[float]], x: list[list[float]], tau: float) -> float:
    """The formula for ONE pair, in plain Python: q, x are the valid rows only."""
    s = [[sum(qi * xi for qi, xi in zip(qr, xr, strict=True)) for xr in x] for qr in q]
    a = [sum(w * v for w, v in zip(_softmax(row, tau), row, strict=True)) for row in s]
    cols = [[s[i][j] for i in range(len(q))] for j in range(len(x))]
    b = [sum(w * v for w, v in zip(_softmax(col, tau), col, strict=True)) for col in cols]
    wq, wx = _softmax(a, tau), _softmax(b, tau)
    q_star = [sum(wq[i] * q[i][d] for i in range(len(q))) for d in range(len(q[0]))]
    x_star = [sum(wx[j] * x[j][d] for j in range(len(x))) for d in range(len(x[0]))]
    return sum(u * v for u, v in zip(q_star, x_star, strict=True))


def _ragged_sets(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Texts with 2, 5 and 3 valid token rows (+ 2 view rows), padding rows holding garbage;
    videos with 6, 4, 5 and 6 valid rows."""
    g = torch.Generator().manual_seed(seed)
    d, length, k = 8, 6, 2
    text = F.normalize(torch.randn(3, length + k, d, generator=g), dim=-1)
    mask = torch.zeros(3, length + k, dtype=torch.bool)
    for row, n in enumerate((2, 5, 3)):
        mask[row, :n] = True
    mask[:, length:] = True  # the K views are always valid
    text = torch.where(mask.unsqueeze(-1), text, 1e3 * torch.randn(text.shape, generator=g))
    text[0, 4, 0] = float("nan")  # garbage of the worst kind
    videos = F.normalize(torch.randn(4, 6, d, generator=g), dim=-1)
    vmask = torch.ones(4, 6, dtype=torch.bool)
    vmask[1, 4:] = False
    vmask[2, 5:] = False
    videos = torch.where(vmask.unsqueeze(-1), videos, -7e2 * torch.ones(()))
    return text, mask, videos, vmask


@pytest.mark.parametrize("tau", [100.0, 5.0])
@pytest.mark.parametrize("chunk_elements", [1 << 22, 1])
def test_batched_head_equals_per_pair_loop(tau: float, chunk_elements: int) -> None:
    text, mask, videos, vmask = _ragged_sets()
    got = dcm_logits(text, videos, mask, vmask, tau=tau, chunk_elements=chunk_elements)
    assert got.shape == (3, 4)
    for t in range(3):
        q = text[t][mask[t]].double().tolist()
        for v in range(4):
            x = videos[v][vmask[v]].double().tolist()
            assert got[t, v].item() == pytest.approx(_dcm_pair(q, x, tau), abs=1e-5)


def test_head_without_masks_and_padding_garbage_does_not_matter() -> None:
    text, mask, videos, vmask = _ragged_sets()
    clean = torch.where(mask.unsqueeze(-1), text, torch.zeros(()))
    assert torch.allclose(dcm_logits(text, videos, mask, vmask), dcm_logits(clean, videos, mask, vmask))
    full = videos[[0, 3]]  # all rows valid: no mask needed
    assert torch.allclose(dcm_logits(clean, full, mask), dcm_logits(clean, full, mask, vmask[[0, 3]]))


def test_head_logit_is_not_renormalised() -> None:
    # the pooled vectors are convex combinations of unit rows: |logit| <= 1, < 1 when spread
    text, mask, videos, vmask = _ragged_sets()
    got = dcm_logits(text, videos, mask, vmask, tau=5.0)
    assert got.abs().max() < 1.0
    one = F.normalize(torch.randn(1, 1, 8), dim=-1)
    assert dcm_logits(one, one).item() == pytest.approx(1.0, abs=1e-6)


def test_head_gradients_flow_and_chunking_keeps_them() -> None:
    text, mask, videos, vmask = _ragged_sets()
    grads = []
    for chunk in (1 << 22, 1):  # one chunk; one video per chunk, recomputed in backward
        t = text.clone().requires_grad_(True)
        v = videos.clone().requires_grad_(True)
        logits = dcm_logits(t, v, mask, vmask, tau=100.0, chunk_elements=chunk)
        info_nce(logits[:, :3]).backward()
        assert t.grad is not None and v.grad is not None
        assert torch.isfinite(t.grad).all() and torch.isfinite(v.grad).all()
        assert t.grad[mask].abs().sum() > 0 and v.grad[vmask].abs().sum() > 0
        assert torch.all(t.grad[~mask] == 0) and torch.all(v.grad[~vmask] == 0)
        grads.append((t.grad, v.grad))
    # gradients reach ~20 (scale 100 x tau 100): equal up to float32 summation order
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-3)


def test_head_runs_in_float32_under_autocast() -> None:
    # training runs the towers in bfloat16; the tau = 100 soft-maxes must not
    text, mask, videos, vmask = _ragged_sets()
    t16, v16 = text.bfloat16(), videos.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = dcm_logits(t16, v16, mask, vmask)
    assert got.dtype == torch.float32
    assert torch.equal(got, dcm_logits(t16.float(), v16.float(), mask, vmask))


def test_sum_is_exactly_twice_mean() -> None:
    scores = torch.randn(5, 5) * 0.3
    assert torch.equal(info_nce(scores, reduction="sum"), 2 * info_nce(scores, reduction="mean"))
    target = torch.arange(5)
    by_hand = F.cross_entropy(100 * scores, target) + F.cross_entropy(100 * scores.T, target)
    assert torch.allclose(info_nce(scores), by_hand)  # the default is the authors' sum
    with pytest.raises(ValueError):
        info_nce(scores, reduction="max")  # type: ignore[arg-type]


def _hand_diversity(views: torch.Tensor) -> float:
    total = 0.0
    b, k, _ = views.shape
    for s in range(b):
        rows = [F.normalize(views[s, i], dim=0) for i in range(k)]
        pairs = [float(rows[i] @ rows[j]) for i in range(k) for j in range(k) if i != j]
        total += sum(pairs) / len(pairs)
    return total / b


def test_diversity_after_plus(tiny: T2VParser, frames: torch.Tensor) -> None:
    with torch.no_grad():
        video = tiny.encode_videos(frames)
        text = tiny.encode_texts(TEXTS)
    for sets in (video, text):
        assert sets.views is not None and sets.views_plus is not None
        plus = sets.views_plus
        assert plus.shape == sets.views.shape
        # plus = normalize(view) + normalize(global): every row differs from the raw view's direction
        assert not torch.allclose(F.normalize(plus, dim=-1), F.normalize(sets.views, dim=-1), atol=1e-3)
        assert diversity(plus).item() == pytest.approx(_hand_diversity(plus), abs=1e-5)
        assert diversity(plus).item() != pytest.approx(diversity(sets.views).item(), abs=1e-4)
    # the stored video rows T.. are the plus-ed views, normalised
    t = tiny.config.frames
    assert video.views_plus is not None
    assert torch.allclose(video.vectors[:, t:], F.normalize(video.views_plus, dim=-1), atol=1e-6)
    feats = tiny.backbone.encode_frames(frames).float()
    want = F.normalize(video.views, dim=-1) + F.normalize(feats.mean(1), dim=-1).unsqueeze(1)
    assert torch.allclose(video.views_plus, want, atol=1e-5)


def _trainer(tmp_path: Path, model: str, **switches: str) -> Trainer:
    cfg = TrainConfig(train="x", out_dir=str(tmp_path), batch_size=3, **switches)  # type: ignore[arg-type]
    torch.manual_seed(0)
    return Trainer(cfg, get_config(model), "cpu")


def test_switches_select_the_objectives(tmp_path: Path, frames: torch.Tensor) -> None:
    default = _trainer(tmp_path / "a", "t2v-tiny")
    old = _trainer(tmp_path / "b", "t2v-tiny", head="simple", nce_reduction="mean", diversity_on="raw")
    model = default.model
    old.model.load_state_dict(model.state_dict())
    with torch.no_grad():
        video = model.encode_videos(frames)
        text = model.encode_texts(TEXTS)
        new_loss, new_parts = default.objective(text, video)
        old_loss, old_parts = old.objective(text, video)
    target = torch.arange(3)
    w = model.config.diversity_weight
    assert text.views is not None and video.views is not None
    assert text.views_plus is not None and video.views_plus is not None

    # the previous objective, written out: test-time score, directions averaged, raw views
    s = 100 * model.score(text, video.vectors)
    div_raw = (diversity(text.views) + diversity(video.views)) / 2
    want_old = (F.cross_entropy(s, target) + F.cross_entropy(s.T, target)) / 2 + w * div_raw
    assert old_loss.item() == pytest.approx(want_old.item(), abs=1e-6)
    assert old_parts["diversity"] == pytest.approx(div_raw.item(), abs=1e-6)

    # the authors': DCM logits, directions summed, views after plus
    d = 100 * dcm_logits(text.vectors, video.vectors, text.mask, tau=model.config.tau)
    div_plus = (diversity(text.views_plus) + diversity(video.views_plus)) / 2
    want_new = F.cross_entropy(d, target) + F.cross_entropy(d.T, target) + w * div_plus
    assert new_loss.item() == pytest.approx(want_new.item(), abs=1e-6)
    assert new_parts["diversity"] == pytest.approx(div_plus.item(), abs=1e-6)
    assert new_loss.item() != pytest.approx(old_loss.item(), abs=1e-3)


def test_meanp_training_is_unchanged(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "t2v-tiny-meanp")  # default switches
    assert trainer.cfg.reduction_for(trainer.model.config) == "mean"
    model = trainer.model
    s = model.backbone.preprocess.size
    frames = torch.randn(3, model.config.frames, 3, s, s, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        video, text = model.encode_videos(frames), model.encode_texts(TEXTS)
        loss, parts = trainer.objective(text, video)
        logits = 100 * model.score(text, video.vectors)
    target = torch.arange(3)
    want = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert loss.item() == pytest.approx(want.item(), abs=1e-6)
    assert "diversity" not in parts


def test_objective_switches_are_validated_and_guard_resume(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="head"):
        TrainConfig(train="x", head="fancy")  # type: ignore[arg-type]
    # a state written before the switches existed was trained with the earlier objective
    old = _trainer(tmp_path, "t2v-tiny", head="simple", nce_reduction="mean", diversity_on="raw")
    old.save_state()
    state_path = tmp_path / "state.pt"
    state = torch.load(state_path, weights_only=False)
    for key in ("head", "nce_reduction", "diversity_on"):
        del state["train_config"][key]
    torch.save(state, state_path)
    assert _trainer(
        tmp_path, "t2v-tiny", head="simple", nce_reduction="mean", diversity_on="raw"
    ).maybe_resume()
    with pytest.raises(ConfigError, match="objective"):
        _trainer(tmp_path, "t2v-tiny").maybe_resume()


def test_a_train_step_with_the_default_head(tmp_path: Path) -> None:
    from model.train import TrainData

    trainer = _trainer(tmp_path, "t2v-tiny")
    s, t = trainer.model.backbone.preprocess.size, trainer.model.config.frames
    rng = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 255, (4, t, 1, s, s, 3), generator=rng, dtype=torch.uint8).numpy()
    trainer.set_data(TrainData(frames=frames, captions=TEXTS + ["a dog"], caption_clip=[0, 1, 2, 3]))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    parts = trainer.train_step()
    assert set(parts) >= {"nce", "diversity", "loss"} and math.isfinite(parts["loss"])
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("video_decoder") for n in changed)
    assert any(n.startswith("text_decoder") for n in changed)
    assert "query_tokens" in changed


def test_default_train_configs_use_the_new_objective() -> None:
    root = Path(__file__).resolve().parents[2] / "model" / "configs" / "train"
    t2v = TrainConfig.from_file(root / "synth-t2v.json")
    assert (t2v.head, t2v.nce_reduction, t2v.diversity_on) == ("dcm", "sum", "plus")
    meanp = TrainConfig.from_file(root / "synth-meanp.json")
    assert meanp.reduction_for(get_config(meanp.model)) == "mean"
