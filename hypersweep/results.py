"""Sweep results as Parquet datasets any tool can read.

    OUT/trials/family=<family>/<study>-<number>.parquet   one row per finished trial
    OUT/epochs/family=<family>/<study>-<number>.parquet   that trial's learning curve

One file per trial, named by its Optuna study and trial number, so rewriting a trial (a
resumed sweep, a recovered row) replaces its file instead of duplicating its row. Files are
written under a temporary name and renamed, so a crash never leaves half a file. Every
file of an experiment has the same schema, derived from the config dataclasses' types
(a column never flips between int and float); the schema version is in the metadata.

    load_trials(out) / load_epochs(out) -> pandas.DataFrame
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import types
import typing
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hypersweep import __version__, failpoints
from hypersweep.config import RunConfig, null_if_nan
from hypersweep.counts import param_counts
from hypersweep.vocab import PRUNED, TrainedStatus

if TYPE_CHECKING:
    from hypersweep.search_space import StudySpace, SweepSpec

SCHEMA_VERSION = "1"
TMP_PREFIX = ".tmp-"  # dataset readers skip files starting with "."

# What a trial reports (the trainer's summary and where it ran), kept in its row under the same name.
RESULT_COLUMNS: dict[str, pa.DataType] = {
    "status": pa.string(),  # ok | diverged | pruned | failed
    **{f"{split}_error{stat}": pa.float64() for split in ("val", "test") for stat in ("", "_std", "_max")},
    "replica_disagreement": pa.float64(),
    "train_loss": pa.float64(),
    "wall_s": pa.float64(),
    "samples_per_s": pa.float64(),
    "device": pa.string(),
    "threads": pa.int64(),  # torch threads the trial trained with (= its CPUs)
    "node": pa.string(),
    "node_id": pa.string(),
    "pack": pa.int64(),  # the trials trained as one model share it: the Optuna number of the pack's first
    "pack_size": pa.int64(),  # trials in that pack when it started (1: trained alone)
}
RESULT_KEYS = (*RESULT_COLUMNS, "epoch", "started_at")  # a result's keys a row is made from

TRIAL_COLUMNS: dict[str, pa.DataType] = {
    "experiment": pa.string(),
    "study": pa.string(),  # the Optuna study: <experiment>-<family>[-<variant>]
    "variant": pa.string(),  # e.g. "dim_i=4" when the experiment has variants, else ""
    "trial": pa.int64(),  # the Optuna trial number: with `study`, the trial's key across resumes
    "trial_id": pa.string(),  # Ray Tune's id
    **RESULT_COLUMNS,
    "error": pa.string(),
    "params_primary": pa.int64(),
    "params_conditioner": pa.int64(),
    "params_total": pa.int64(),
    "epochs": pa.int64(),
    "seed": pa.int64(),
    "seeds": pa.int64(),
    "retries": pa.int64(),  # times Ray Tune restarted the trial after a failure
    "started_at": pa.timestamp("ms", tz="UTC"),
    "finished_at": pa.timestamp("ms", tz="UTC"),
    "config_hash": pa.string(),
    "version": pa.string(),
    "git_commit": pa.string(),  # the driver's source_id(): [<commit>+]sha256:<digest of the package's files>
}

EPOCH_COLUMNS: dict[str, pa.DataType] = {
    "experiment": pa.string(),
    "study": pa.string(),
    "variant": pa.string(),
    "trial": pa.int64(),
    "trial_id": pa.string(),
    "epoch": pa.int64(),
    "train_loss": pa.float64(),
    "val_error": pa.float64(),
    "val_error_std": pa.float64(),
    "val_error_max": pa.float64(),
    "replica_disagreement": pa.float64(),
    "config_hash": pa.string(),
}

_ARROW = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}


def config_columns(cfg_type: type, prefix: str = "config") -> dict[str, pa.DataType]:
    """`config.<path>` columns of a config dataclass, typed from its annotations."""
    columns = {}
    for name, tp in typing.get_type_hints(cfg_type).items():
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]
        if dataclasses.is_dataclass(tp):
            columns.update(config_columns(tp, f"{prefix}.{name}"))
        elif typing.get_origin(tp) is typing.Literal:
            columns[f"{prefix}.{name}"] = _ARROW[type(typing.get_args(tp)[0])]
        elif tp in _ARROW:
            columns[f"{prefix}.{name}"] = _ARROW[tp]
        else:
            columns[f"{prefix}.{name}"] = pa.string()  # lists and the like, as JSON
    return columns


def flatten_config(cfg: RunConfig) -> dict[str, Any]:
    """The run config as `config.<path>` values; keys a family does not use are null."""
    flat: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}.{f.name}")
            else:
                flat[f"{prefix}.{f.name}"] = json.dumps(value) if isinstance(value, (list, tuple)) else value

    walk(cfg.task, "config.task")
    walk(cfg.model, "config.model")
    walk(cfg.train, "config.train")
    flat["config.task.name"] = type(cfg.task).__module__.rsplit(".", 1)[-1]
    family = cfg.model.family
    if family != "embedding":
        flat["config.model.embedding_dim"] = None
    if family == "standard":
        flat["config.model.conditioner.width"] = flat["config.model.conditioner.depth"] = None
    return flat


def config_hash(cfg: RunConfig) -> str:
    blob = json.dumps(flatten_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trial_schema(cfg: RunConfig) -> pa.Schema:
    columns = {**TRIAL_COLUMNS, **config_columns(type(cfg.task), "config.task"),
               **config_columns(type(cfg.model), "config.model"),
               **config_columns(type(cfg.train), "config.train"), "config.task.name": pa.string()}
    return pa.schema(columns.items(), metadata={"hypersweep.schema_version": SCHEMA_VERSION})


def epoch_schema() -> pa.Schema:
    return pa.schema(EPOCH_COLUMNS.items(), metadata={"hypersweep.schema_version": SCHEMA_VERSION})


def source_id() -> str:
    """What code this is: `sha256:<16 hex>` of the package's source files (paths and bytes), after
    `<commit>+` (`<commit>-dirty+` with uncommitted changes) when hypersweep runs from a git checkout.

    A cluster node holds no `.git` (`ray up` does not copy it), so its rows carry the digest alone; the
    digest of any checkout, printed by `python -m hypersweep.launch --version`, is what to compare it with.
    """
    return _source_id(Path(__file__).resolve().parent)


@functools.cache
def _source_id(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    files = f"sha256:{digest.hexdigest()[:16]}"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=package)
        changes = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True,
                                 timeout=5, cwd=package)
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine
        return files
    if commit.returncode != 0 or changes.returncode != 0:  # not a checkout: an installed package
        return files
    return f"{commit.stdout.strip()}{'-dirty' if changes.stdout.strip() else ''}+{files}"


def is_remote(out: str) -> bool:
    """True when `out` is a URI (s3://, gs://, ...), not a local path."""
    return "://" in out


class ResultStore:
    """Writes and lists one sweep's Parquet files under `out` (a local path or a URI)."""

    def __init__(self, out: str):
        self.fs, self.root = pafs.FileSystem.from_uri(out) if is_remote(out) else (pafs.LocalFileSystem(),
                                                                                  str(Path(out).resolve()))

    def _path(self, kind: str, family: str, study: str, trial: int) -> str:
        return f"{self.root}/{kind}/family={family}/{study}-{trial:06d}.parquet"

    def _write(self, table: pa.Table, path: str, trial: int) -> None:
        """Write `path` once: under a temporary name, then renamed, never over an existing file."""
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path.rsplit('/', 1)[0]}/{TMP_PREFIX}{uuid.uuid4().hex}"
        pq.write_table(table, tmp, filesystem=self.fs)
        failpoints.reached("before_rename", trial)
        if isinstance(self.fs, pafs.LocalFileSystem):
            try:  # a hard link fails if the name exists: the check and the rename are one step
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path}: a trial's file is written once; it exists already") from None
            finally:
                os.unlink(tmp)
        else:
            if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
                raise FileExistsError(f"{path}: a trial's file is written once; it exists already")
            self.fs.move(tmp, path)

    def read_text(self, name: str) -> str | None:
        """A small file directly under the root (None when it does not exist)."""
        path = f"{self.root}/{name}"
        if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with self.fs.open_input_stream(path) as fh:
            return fh.read().decode()

    def write_text(self, name: str, text: str) -> None:
        self.fs.create_dir(self.root, recursive=True)
        tmp = f"{self.root}/{TMP_PREFIX}{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as fh:
            fh.write(text.encode())
        self.fs.move(tmp, f"{self.root}/{name}")

    def is_empty(self) -> bool:
        """True when the root does not exist or holds nothing."""
        if self.fs.get_file_info(self.root).type == pafs.FileType.NotFound:
            return True
        return not self.fs.get_file_info(pafs.FileSelector(self.root))

    def remove_partial_files(self) -> int:
        """Delete temporary files a crash left behind; return how many."""
        found = [info.path for kind in ("trials", "epochs")
                 for info in self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{kind}", recursive=True,
                                                                      allow_not_found=True))
                 if info.base_name.startswith(TMP_PREFIX)]
        for path in found:
            self.fs.delete_file(path)
        return len(found)

    def remove_corrupt_files(self) -> list[str]:
        """Delete result files whose Parquet footer cannot be read; return their paths.

        A trial's row is rebuilt from its study afterwards (`hypersweep.search.reconcile`).
        """
        corrupt = corrupt_files(self.fs, self.root)
        for path in corrupt:
            self.fs.delete_file(path)
        return corrupt

    def write_trial(self, family: str, study: str, cfg: RunConfig, row: dict[str, Any], epochs: list[dict]) -> None:
        """Write a trial's learning curve, then its row (the row marks it finished).

        A curve written before a crash that came before the row is kept: a row rebuilt from
        the study (which holds no curve) does not replace it.
        """
        key = {k: row.get(k) for k in ("experiment", "study", "variant", "trial", "trial_id")}
        key["config_hash"] = config_hash(cfg)
        curve = [{**{k: null_if_nan(e.get(k)) for k in EPOCH_COLUMNS}, **key} for e in epochs]
        curve_path = self._path("epochs", family, study, row["trial"])
        if self.fs.get_file_info(curve_path).type == pafs.FileType.NotFound:
            self._write(pa.Table.from_pylist(curve, schema=epoch_schema()), curve_path, row["trial"])
        full = {**{k: null_if_nan(v) for k, v in row.items()}, **flatten_config(cfg), "config_hash": key["config_hash"],
                "version": __version__}
        schema = trial_schema(cfg)
        table = pa.Table.from_pylist([{k: full.get(k) for k in schema.names}], schema=schema)
        self._write(table, self._path("trials", family, study, row["trial"]), row["trial"])

    def finished(self, family: str, study: str) -> set[int]:
        """Trial numbers of `study` that have a row."""
        selector = pafs.FileSelector(f"{self.root}/trials/family={family}", allow_not_found=True)
        prefix = f"{study}-"
        return {int(info.base_name[len(prefix):-len(".parquet")]) for info in self.fs.get_file_info(selector)
                if info.base_name.startswith(prefix) and info.base_name[len(prefix):-len(".parquet")].isdigit()}


class CorruptResults(ValueError):
    """Result files that are not readable Parquet (one line naming them and the cure)."""


def corrupt_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """Paths of the trial and epoch files under `root` whose Parquet footer cannot be read."""
    corrupt = []
    for kind in ("trials", "epochs"):
        selector = pafs.FileSelector(f"{root}/{kind}", recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.type != pafs.FileType.File or info.base_name.startswith(TMP_PREFIX):
                continue
            try:
                with fs.open_input_file(info.path) as fh:
                    pq.read_metadata(fh)
            except (OSError, pa.ArrowInvalid):
                corrupt.append(info.path)
    return corrupt


def _load(out: str, kind: str) -> pd.DataFrame:
    store = ResultStore(out)
    path = f"{store.root}/{kind}"
    if store.fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{out}: no {kind}/ dataset (is this a sweep's --out directory?)")
    try:
        dataset = ds.dataset(path, filesystem=store.fs, format="parquet", partitioning="hive")
        frame = dataset.to_table().to_pandas()
    except (OSError, pa.ArrowInvalid):
        bad = corrupt_files(store.fs, store.root)
        if not bad:
            raise
        names = ", ".join(p.removeprefix(f"{store.root}/") for p in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise CorruptResults(f"{out}: {len(bad)} result file(s) are not readable Parquet ({names}); "
                             f"`python -m hypersweep.launch --resume --out {out}` rebuilds them from the study"
                             ) from None
    frame["family"] = frame["family"].astype(str)
    return frame


def load_trials(out: str) -> pd.DataFrame:
    """Every trial of the sweep in `out`, one row each."""
    return _load(out, "trials").sort_values(["family", "study", "trial"], ignore_index=True)


def load_epochs(out: str) -> pd.DataFrame:
    """Every trial's per-epoch metrics (the learning curves)."""
    return _load(out, "epochs").sort_values(["family", "study", "trial", "epoch"], ignore_index=True)


def trial_row(spec: SweepSpec, space: StudySpace, cfg: RunConfig, number: int, trial_id: str | None,
              status: TrainedStatus, result: dict | None, error: str | None) -> dict[str, Any]:
    """One Parquet row; parameter counts come from the config, so failed trials have them too."""
    result = result or {}
    counts = param_counts(cfg.model, *space.dims).as_dict()
    metrics = {k: result.get(k) for k in RESULT_KEYS if k not in ("status", "epoch", "started_at")}
    if status == PRUNED:  # stopped before the test set was evaluated
        metrics.update({k: None for k in metrics if k.startswith("test_")})
    started = result.get("started_at")
    return {
        **metrics,
        "pack": number if metrics["pack"] is None else metrics["pack"],
        "pack_size": metrics["pack_size"] or 1,
        "experiment": spec.experiment,
        "study": space.study,
        "variant": space.label,
        "trial": number,
        "trial_id": trial_id,
        "status": status,
        "error": error,
        **counts,
        "epochs": result.get("epoch"),
        "seed": cfg.train.seed,
        "seeds": cfg.train.seeds,
        "started_at": datetime.fromtimestamp(started, timezone.utc) if started else None,
        "finished_at": datetime.now(timezone.utc),
    }
