"""The shared avcorr run (tests/conftest.py `avcorr_run`), trained in its own process so that
it runs on the second core while the other tests run: `python tests/avcorr_train.py ROOT`.

Writes ROOT/train-*.tar (96 clips, no annotations), ROOT/test-000000.tar (32 clips) with
the annotations, the run in ROOT/run, and train()'s last record in ROOT/last.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def config(root: Path):
    """The run's GLCMConfig: the `avcorr` preset on ROOT's shards, one thread."""
    from glcm.config import avcorr as avcorr_preset
    cfg = avcorr_preset()
    cfg.data.shards, cfg.train.out = str(root / "train-{000000..000005}.tar"), str(root / "run")
    return cfg


def main(root: Path) -> None:
    from avprep.testing import avcorr
    from glcm.train import train
    avcorr.write_shards(avcorr.make_clips(96, seed=1, obj=22), str(root), per_shard=16, prefix="train",
                        annotations=False)
    avcorr.write_shards(avcorr.make_clips(32, seed=2, obj=22), str(root), per_shard=32, prefix="test")
    last = train(config(root))
    (root / "last.json").write_text(json.dumps(last, default=float))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
