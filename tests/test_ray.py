"""The same shard tasks on a local Ray instance give the same bytes as the local executor."""
from __future__ import annotations

import pytest

from avprep.config import BuildConfig
from avprep.pipeline import build_dataset
from avprep.recipes import prepare_videos

from conftest import folder_digest, read_outcomes


def test_ray_local_matches_local_executor(small_videos, tmp_path):
    ray = pytest.importorskip("ray")
    items = prepare_videos(str(small_videos))
    cfg = BuildConfig(videos_per_shard=2, shard_prefix="vid")
    local = tmp_path / "local"
    build_dataset(items, str(local), cfg, workers=1, root=str(small_videos), recipe="videos", progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        viaray = tmp_path / "ray"
        build_dataset(items, str(viaray), cfg, ray_address="local", root=str(small_videos), recipe="videos",
                      progress=False)
    finally:
        ray.shutdown()
    a, b = folder_digest(local), folder_digest(viaray)
    assert len([n for n in a if n.endswith(".tar")]) == 3
    assert a == b
    assert read_outcomes(local) == read_outcomes(viaray)
