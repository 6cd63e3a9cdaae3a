"""The recipe registry's record, and a build from a recipe by name.

A recipe module declares `RECIPE = Recipe(...)`: its name, its pure `prepare` function
(corpus -> list[SourceItem]), which arguments `prepare` takes, and its build defaults
(a BuildConfig, plus whether each split gets its own shard set). `avprep.recipes.RECIPES`
collects them. `build_recipe` is what `avprep build NAME` runs: the user's explicit
options overlaid on the recipe's defaults, everything validated before any work.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

from avprep.config import (BuildConfig, ConfigError, check_name, check_ray_address, check_workers, override,
                           validate, with_crop)
from avprep.items import SourceItem

UNSPLIT = "unsplit"       # folder of items without a split in a per-split build


@dataclass(frozen=True)
class Recipe:
    name: str                                        # `avprep build NAME`; the shard prefix by default
    prepare: Callable[..., list[SourceItem]]         # pure: reads the corpus, returns its items
    args: Mapping[str, str] = field(default_factory=lambda: {"root": "root"})
    # ^ argument name (as the CLI spells it, '-' as '_') -> keyword of `prepare`
    required: tuple[str, ...] = ("root",)            # arguments that must be given
    folders: tuple[str, ...] = ("root",)             # corpus folders; stored paths are relative to them
    defaults: BuildConfig = field(default_factory=BuildConfig)
    per_split: bool = False                          # one shard set per split, in OUT/<split>
    summary: str = ""                                # one line for --help

    def config(self, options: Mapping[str, object] | None = None) -> BuildConfig:
        """The recipe's defaults with the given dotted options (None = not given) on top.

        Picking another crop kind than the recipe's brings that kind's defaults (crop
        size, short side; see config.with_crop) under the explicit options."""
        given = {k: v for k, v in (options or {}).items() if v is not None}
        base = self.defaults
        kind = given.get("crop.kind")
        if kind is not None and kind != base.crop.kind:
            base = with_crop(base, kind)
        return override(base, given)

    def check_args(self, args: Mapping[str, object]) -> dict[str, object]:
        """The given (not None) arguments; refuses missing and inapplicable ones."""
        given = {k: v for k, v in args.items() if v is not None}
        extra = [k for k in given if k not in self.args]
        if extra:
            raise ConfigError(f"`avprep build {self.name}` does not take {', '.join(_label(k) for k in extra)}")
        missing = [k for k in self.required if k not in given]
        if missing:
            raise ConfigError(f"`avprep build {self.name}` needs {' and '.join(_label(k) for k in missing)}")
        return given

    def items(self, args: Mapping[str, object]) -> list[SourceItem]:
        """The corpus's items; an unreadable corpus (bad CSV, no permission) is a ConfigError."""
        given = self.check_args(args)
        try:
            return self.prepare(**{self.args[k]: v for k, v in given.items()})
        except ConfigError:
            raise
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the {self.name} corpus: {_reason(e)}") from e

    def root(self, args: Mapping[str, object]) -> str:
        """The folder stored source paths are relative to (the common folder of several)."""
        paths = [str(args[k]) for k in self.folders if args.get(k) is not None]
        if len(paths) == 1:
            return paths[0]
        return os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else ""


def _reason(e: Exception) -> str:
    """An OS error as `PATH: what` (no `[Errno N]`), anything else as it says itself."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def _label(arg: str) -> str:
    return "ROOT (the corpus folder)" if arg == "root" else "--" + arg.replace("_", "-")


@dataclass
class SplitBuild:
    split: str | None        # None: the whole corpus in one shard set
    out_dir: str
    cfg: BuildConfig
    result: object           # avprep.pipeline.BuildResult


def build_recipe(recipe: Recipe, args: Mapping[str, object], out_dir: str,
                 options: Mapping[str, object] | None = None, *, per_split: bool | None = None,
                 workers: int | None = None, ray_address: str | None = None,
                 progress: bool = True, on_done: Callable[[SplitBuild], None] | None = None) -> list[SplitBuild]:
    """Build (or resume) `recipe` into `out_dir`; every value is checked before the
    corpus is listed or a folder is made. `per_split` None = the recipe's default."""
    cfg = recipe.config(options)
    validate(cfg)
    check_workers(workers)
    check_ray_address(ray_address)
    args = {k: _local(v) for k, v in args.items()}
    items = recipe.items(args)
    if not items:
        raise ConfigError(f"the {recipe.name} recipe found no inputs in {recipe.root(args) or 'the given folders'}")
    groups = _split_groups(items) if (recipe.per_split if per_split is None else per_split) else {None: items}
    from avprep.pipeline import build_dataset   # the pipeline (numpy, webdataset) only for real builds
    done = []
    for split, part in groups.items():
        split_cfg = cfg if split is None else override(cfg, {"shard_prefix": f"{cfg.shard_prefix}-{split}"})
        split_dir = out_dir if split is None else os.path.join(out_dir, split)
        result = build_dataset(part, split_dir, split_cfg, workers=workers, ray_address=ray_address,
                               root=recipe.root(args), recipe=recipe.name, progress=progress)
        done.append(SplitBuild(split, split_dir, split_cfg, result))
        if on_done:
            on_done(done[-1])
    return done


def _local(value):
    """Corpus paths given by the user as local paths (fsio.local_path), lists too."""
    from avprep.fsio import local_path
    if isinstance(value, str):
        return local_path(value)
    return [_local(v) for v in value] if isinstance(value, list) else value


def _split_groups(items: list[SourceItem]) -> dict[str, list[SourceItem]]:
    """Items by split name (sorted), each name checked to be a plain folder name."""
    groups: dict[str, list[SourceItem]] = {}
    for item in items:
        groups.setdefault(item.split or UNSPLIT, []).append(item)
    for split in groups:
        check_name("split name", split)
    return dict(sorted(groups.items()))
