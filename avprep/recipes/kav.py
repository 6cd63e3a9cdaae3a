"""K-AV (the paper's pretraining set): N random videos from Kinetics and from AVSpeech, mixed."""
from __future__ import annotations

import random

from avprep.config import BuildConfig, ConfigError
from avprep.items import SourceItem
from avprep.recipes.avspeech import prepare_avspeech
from avprep.recipes.kinetics import prepare_kinetics
from avprep.recipes.registry import Recipe


def sample_items(items: list[SourceItem], n: int, seed: int, only_present: bool) -> list[SourceItem]:
    pool = [i for i in items if not i.missing] if only_present else list(items)
    rng = random.Random(seed)
    return rng.sample(pool, n) if n < len(pool) else pool


def prepare_kav(kinetics_root: str, avspeech_root: str, per_source: int = 120_000, seed: int = 0,
                only_present: bool = False, kinetics_csvs: list[str] | None = None,
                avspeech_csvs: list[str] | None = None) -> list[SourceItem]:
    """`per_source` random items from each source (fewer if a source has fewer), shuffled.

    Deterministic for the same listings and seed. With `only_present`, rows whose file is
    missing are not drawn; otherwise they are drawn and end as `missing` outcomes."""
    if per_source < 1:
        raise ConfigError(f"per_source must be >= 1, got {per_source}")
    kin = sample_items(prepare_kinetics(kinetics_root, kinetics_csvs), per_source, seed, only_present)
    avs = sample_items(prepare_avspeech(avspeech_root, avspeech_csvs), per_source, seed + 1, only_present)
    mixed = kin + avs
    random.Random(seed + 2).shuffle(mixed)
    return mixed


RECIPE = Recipe("k-av", prepare_kav,
                args={"kinetics": "kinetics_root", "avspeech": "avspeech_root", "per_source": "per_source",
                      "seed": "seed", "only_present": "only_present"},
                required=("kinetics", "avspeech"), folders=("kinetics", "avspeech"),
                defaults=BuildConfig(shard_prefix="k-av"),
                summary="the paper's mix: --per-source random videos from --kinetics and from --avspeech, mixed")
