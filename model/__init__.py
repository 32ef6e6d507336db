"""T2VParser model package: configs, CLIP backbone, ADT decomposition, partial-alignment scoring."""

from .backbone import ClipBackbone, PreprocessCfg, TokenOutput
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint, state_hash
from .config import ConfigError, T2VConfig, get_config, list_models
from .factory import create_model, model_identity
from .loss import diversity, info_nce, t2v_loss
from .scoring import one_query_scores, partial_alignment_scores, score_matrix_components
from .t2vparser import T2VParser, TextSets, VideoSets
from .weights import WeightsNotFoundError, resolve_pretrained

__all__ = [
    "CheckpointError",
    "ClipBackbone",
    "ConfigError",
    "PreprocessCfg",
    "T2VConfig",
    "T2VParser",
    "TextSets",
    "TokenOutput",
    "VideoSets",
    "WeightsNotFoundError",
    "create_model",
    "diversity",
    "get_config",
    "info_nce",
    "list_models",
    "model_identity",
    "one_query_scores",
    "partial_alignment_scores",
    "read_checkpoint",
    "resolve_pretrained",
    "save_checkpoint",
    "score_matrix_components",
    "state_hash",
    "t2v_loss",
]
