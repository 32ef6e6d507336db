"""T2VParser: CLIP backbone + shared decomposition tokens + ADT decoders -> token-level sets.

Video and text have separate entry points (`encode_videos`, `encode_texts`): the indexer runs
only the first, the service only the second.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .adt import ADTDecoder, FeedForward
from .backbone import ClipBackbone
from .config import T2VConfig
from .scoring import partial_alignment_scores
from .temporal import TemporalBranch


@dataclass
class VideoSets:
    vectors: Tensor  # (B, T+K, D) rows L2-normalised: [frames ; views]
    views: Tensor | None = None  # (B, K, D) raw decoder outputs
    views_plus: Tensor | None = None  # (B, K, D) the views after "plus" (the diversity loss's input)


@dataclass
class TextSets:
    vectors: Tensor  # (B, L+K, D) rows L2-normalised: [tokens ; views], padding rows zero
    mask: Tensor  # (B, L+K) True for valid rows
    views: Tensor | None = None  # (B, K, D) raw decoder outputs
    views_plus: Tensor | None = None  # (B, K, D) the views after "plus"


class T2VParser(nn.Module):
    def __init__(self, config: T2VConfig, backbone: ClipBackbone) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        d = backbone.dim
        self.dim = d
        self.checkpoint_sha256: str | None = None  # set when loaded from a checkpoint
        if config.zeroshot or config.meanp:  # no decomposition modules
            self.query_tokens = None
            self.frame_mlp = None
            self.video_decoder = None
            self.text_decoder = None
        else:
            k, layers, heads = config.num_tokens, config.decoder_layers, config.decoder_heads
            # one parameter shared by both decoders: the same K "views" on both sides
            self.query_tokens = nn.Parameter(torch.randn(k, d) * 0.1)  # (K, D), N(0, 0.1)
            self.frame_mlp = FeedForward(d)  # M_v = MLP_v(F), no residual
            self.video_decoder = ADTDecoder(d, layers, heads, config.pre_norm)
            self.text_decoder = ADTDecoder(d, layers, heads, config.pre_norm)
        # Built last: the other modules get the same initial weights as without it, for a seed.
        # Named "visual_*" so that every name-based split of the video side (drop_visual, the
        # store's text-side weights fingerprint) counts it with the image tower.
        self.visual_temporal: TemporalBranch | None = None
        if config.temporal_layers > 0:
            self.visual_temporal = TemporalBranch(
                d, config.frames, config.temporal_layers, config.temporal_heads, config.temporal_window
            )

    @property
    def num_video_vectors(self) -> int:
        """n_v = T + K rows per stored clip (1 for meanP: the mean frame vector)."""
        return 1 if self.config.meanp else self.config.frames + self.config.num_tokens

    def _plus(self, views: Tensor, global_vec: Tensor) -> Tensor:
        # views: (B, K, D), global_vec: (B, D)
        out = F.normalize(views, dim=-1)
        if self.config.plus:
            out = out + F.normalize(global_vec, dim=-1).unsqueeze(1)
        return out

    def encode_videos(self, frames: Tensor) -> VideoSets:
        """frames: (B, T, 3, H, W) preprocessed -> (B, T+K, D) video sets."""
        feats = self.backbone.encode_frames(frames).float()  # (B, T, D)
        return self.video_sets_from_features(feats)

    def frame_vectors(self, feats: Tensor) -> Tensor:
        """Image-tower frame vectors (B, T, D) in time order -> the frame rows every later step
        uses (memory, global vector, stored rows): through the temporal branch when it is on."""
        return feats if self.visual_temporal is None else self.visual_temporal(feats)

    def video_sets_from_features(self, feats: Tensor) -> VideoSets:
        """The part after the image tower: (B, T, D) frame vectors -> (B, T+K, D) video sets."""
        image = feats  # (B, T, D) the image tower's, each frame on its own
        feats = self.frame_vectors(feats)  # (B, T, D)
        if self.config.zeroshot:
            return VideoSets(vectors=F.normalize(feats, dim=-1))
        if self.config.meanp:  # one vector per clip; the score then reduces to a cosine
            return VideoSets(vectors=F.normalize(feats.mean(dim=1), dim=-1).unsqueeze(1))  # (B, 1, D)
        assert self.frame_mlp is not None and self.video_decoder is not None
        assert self.query_tokens is not None
        memory = self.frame_mlp(feats)  # (B, T, D)
        views = self.video_decoder(self.query_tokens, memory)  # (B, K, D)
        views_plus = self._plus(views, feats.mean(dim=1))  # (B, K, D)
        rows = image if self.config.temporal_rows == "views" else feats  # (B, T, D) stored frame rows
        vectors = F.normalize(torch.cat([rows, views_plus], dim=1), dim=-1)  # (B, T+K, D)
        return VideoSets(vectors=vectors, views=views, views_plus=views_plus)

    def tokenize(self, texts: list[str]) -> Tensor:
        return self.backbone.tokenize(texts)

    def encode_texts(self, texts: list[str] | Tensor) -> TextSets:
        """Texts (strings or token ids (B, L)) -> (B, n_t, D) query sets with validity mask."""
        device = next(self.parameters()).device
        tokens = self.tokenize(texts) if isinstance(texts, list) else texts
        out = self.backbone.encode_tokens(tokens.to(device))
        token_vecs, mask, pooled = out.tokens.float(), out.mask, out.pooled.float()
        if self.config.zeroshot or self.config.meanp:
            # text set = {e}: the pooled EOT vector only
            return TextSets(
                vectors=F.normalize(pooled, dim=-1).unsqueeze(1),
                mask=torch.ones(pooled.shape[0], 1, dtype=torch.bool, device=device),
            )
        assert self.text_decoder is not None and self.query_tokens is not None
        views = self.text_decoder(self.query_tokens, token_vecs, memory_pad=~mask)  # (B, K, D)
        views_plus = self._plus(views, pooled)  # (B, K, D)
        vectors = torch.cat([token_vecs, views_plus], dim=1)  # (B, L+K, D)
        full_mask = torch.cat([mask, torch.ones_like(mask[:, : views.shape[1]])], dim=1)
        vectors = F.normalize(vectors, dim=-1) * full_mask.unsqueeze(-1)  # zero the padding rows
        return TextSets(vectors=vectors, mask=full_mask, views=views, views_plus=views_plus)

    def score(self, text: TextSets, videos: Tensor, video_mask: Tensor | None = None) -> Tensor:
        """(Q, N) partial-alignment scores of query sets against stored video sets (N, n_v, D)."""
        return partial_alignment_scores(text.vectors, videos, text.mask, video_mask, tau=self.config.tau)

    def drop_visual(self) -> None:
        """Keep only what query encoding needs (the service's text side)."""
        self.backbone.drop_visual()
        self.frame_mlp = None
        self.video_decoder = None
        self.visual_temporal = None

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, new-module parameters): they get different learning rates."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in backbone}
        new = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return backbone, new
