"""Shapes, masks, the shared query tokens, gradients and zero-shot mode of T2VParser."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model import T2VParser, create_model, t2v_loss

TEXTS = ["a red circle moving left", "a cat", "two blue squares slide down over a green field"]


def test_video_sets_shape_and_normalisation(tiny: T2VParser, frames: torch.Tensor) -> None:
    with torch.no_grad():
        out = tiny.encode_videos(frames)
    t, k, d = tiny.config.frames, tiny.config.num_tokens, tiny.dim
    assert out.vectors.shape == (3, t + k, d)
    assert out.views is not None and out.views.shape == (3, k, d)
    assert torch.allclose(out.vectors.norm(dim=-1), torch.ones(3, t + k), atol=1e-5)
    # the first T rows are the (normalised) frame vectors from the image tower
    feats = tiny.backbone.encode_frames(frames)
    assert torch.allclose(out.vectors[:, :t], F.normalize(feats, dim=-1), atol=1e-5)


def test_text_sets_mask_follows_tokens(tiny: T2VParser) -> None:
    with torch.no_grad():
        out = tiny.encode_texts(TEXTS)
    tokens = tiny.tokenize(TEXTS)
    length, k = tokens.shape[1], tiny.config.num_tokens
    assert out.vectors.shape == (3, length + k, tiny.dim)
    # valid = SOT..EOT inclusive, then the K views
    n_words = (tokens != 0).sum(dim=1)
    assert torch.equal(out.mask[:, :length].sum(dim=1), n_words)
    assert out.mask[:, length:].all()
    norms = out.vectors.norm(dim=-1)
    assert torch.allclose(norms[out.mask], torch.ones(int(out.mask.sum())), atol=1e-5)
    assert torch.all(norms[~out.mask] == 0)
    # a longer text has more valid rows
    assert out.mask[2].sum() > out.mask[1].sum()


def test_padding_does_not_change_text_sets(tiny: T2VParser) -> None:
    # the same caption alone and next to a longer one gets the same valid rows and score
    with torch.no_grad():
        alone = tiny.encode_texts([TEXTS[1]])
        batch = tiny.encode_texts(TEXTS)
    assert torch.allclose(alone.vectors[0][alone.mask[0]], batch.vectors[1][batch.mask[1]], atol=1e-5)


def test_query_tokens_are_one_shared_parameter(tiny: T2VParser) -> None:
    params = [n for n, _ in tiny.named_parameters() if "query_tokens" in n]
    assert params == ["query_tokens"]
    assert tiny.query_tokens is not None
    assert tiny.query_tokens.shape == (tiny.config.num_tokens, tiny.dim)
    assert tiny.video_decoder is not tiny.text_decoder
    # perturbing the tokens changes both sides' views
    with torch.no_grad():
        s = tiny.backbone.preprocess.size
        fr = torch.randn(1, tiny.config.frames, 3, s, s)
        v0, t0 = tiny.encode_videos(fr).views, tiny.encode_texts(["x"]).views
        saved = tiny.query_tokens.clone()
        tiny.query_tokens.add_(1.0)
        v1, t1 = tiny.encode_videos(fr).views, tiny.encode_texts(["x"]).views
        tiny.query_tokens.copy_(saved)
    assert not torch.allclose(v0, v1) and not torch.allclose(t0, t1)


def test_gradients_reach_every_part(frames: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = create_model("t2v-tiny").train()
    videos = model.encode_videos(frames)
    texts = model.encode_texts(TEXTS)
    scores = model.score(texts, videos.vectors)  # (3, 3)
    loss, parts = t2v_loss(scores, texts.views, videos.views, model.config.diversity_weight)
    loss.backward()
    assert set(parts) == {"nce", "diversity", "loss"}

    def has_grad(module: torch.nn.Module) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert model.query_tokens is not None and model.query_tokens.grad is not None
    assert model.query_tokens.grad.abs().sum() > 0
    assert model.video_decoder is not None and has_grad(model.video_decoder)
    assert model.text_decoder is not None and has_grad(model.text_decoder)
    assert model.frame_mlp is not None and has_grad(model.frame_mlp)
    assert has_grad(model.backbone.clip.visual) and has_grad(model.backbone.text_tower.transformer)


def test_frozen_backbone_gets_no_gradient(frames: torch.Tensor) -> None:
    model = create_model("t2v-tiny").train()
    model.backbone.requires_grad_(False)
    backbone, new = model.param_groups()
    assert backbone == [] and len(new) > 0
    scores = model.score(model.encode_texts(TEXTS), model.encode_videos(frames).vectors)
    scores.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())


def test_zero_shot_equals_softmax_pooling_of_eot(frames: torch.Tensor) -> None:
    model = create_model("t2v-tiny-zeroshot")
    assert model.query_tokens is None and model.num_video_vectors == model.config.frames
    with torch.no_grad():
        videos = model.encode_videos(frames).vectors  # (B, T, D)
        texts = model.encode_texts(TEXTS)
        got = model.score(texts, videos)  # (Q, B)
        eot = F.normalize(model.backbone.clip.encode_text(model.tokenize(TEXTS)), dim=-1)  # (Q, D)
        feats = F.normalize(model.backbone.clip.encode_image(frames.flatten(0, 1)), dim=-1)
        feats = feats.view(frames.shape[0], frames.shape[1], -1)  # (B, T, D)
        sims = torch.einsum("qd,btd->qbt", eot, feats)
        want = (torch.softmax(100 * sims, dim=-1) * sims).sum(-1)
    assert texts.vectors.shape[1] == 1
    assert torch.allclose(got, want, atol=1e-5)


def test_text_only_model_encodes_queries(tiny: T2VParser) -> None:
    model = create_model("t2v-tiny", text_only=True)
    assert model.backbone.clip.visual is None and model.video_decoder is None
    with torch.no_grad():
        out = model.encode_texts(["a red circle"])
    assert out.vectors.shape[0] == 1


def test_token_vectors_equal_full_context_computation(tiny: T2VParser) -> None:
    """Running the causal text tower on the trimmed prefix gives the full-context outputs."""
    tokens = tiny.tokenize(TEXTS)
    tower = tiny.backbone.text_tower
    with torch.no_grad():
        out = tiny.backbone.encode_tokens(tokens)
        x = tower.token_embedding(tokens) + tower.positional_embedding
        x = tower.ln_final(tower.transformer(x, attn_mask=tower.attn_mask)) @ tower.text_projection
        pooled = tiny.backbone.clip.encode_text(tokens)
    assert torch.allclose(out.tokens[out.mask], x[out.mask], atol=1e-5)
    assert torch.allclose(out.pooled, pooled, atol=1e-5)
    assert torch.all(out.tokens[~out.mask] == 0)
