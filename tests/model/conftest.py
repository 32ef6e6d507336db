from __future__ import annotations

import pytest
import torch

from model import T2VParser, create_model


@pytest.fixture(scope="module")
def tiny() -> T2VParser:
    torch.manual_seed(0)
    return create_model("t2v-tiny")


@pytest.fixture
def frames(tiny: T2VParser) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    s = tiny.backbone.preprocess.size
    return torch.randn(3, tiny.config.frames, 3, s, s, generator=g)  # (B, T, 3, S, S)
