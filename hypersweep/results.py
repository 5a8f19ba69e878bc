"""Sweep results as Parquet datasets any tool can read.

    OUT/trials/family=<family>/<study>-<number>.parquet   one finished trial's row, as it was written
    OUT/trials/family=<family>/compacted-L<n>-c<id>.parquet   many trials' rows, merged (ResultStore.compact)
    OUT/epochs/family=<family>/...                         the same for the learning curves

A finished trial is written at once as a file of its own, named by its Optuna study and trial
number; small files are merged as they gather and into one file per family when a run ends, and
every reader sees each row exactly once meanwhile (ResultStore's docstring says how). A trial's
row is written once: a second one for a trial that has a row is refused. Files are written under
a temporary name and renamed, so a crash never leaves half a file. Every file of an experiment
has the same schema, derived from the config dataclasses' types (a column never flips between
int and float); the schema version is in the metadata.

    load_trials(out) / load_epochs(out) -> pandas.DataFrame
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
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
KINDS = ("trials", "epochs")

# Compaction (ResultStore.compact): every MERGE_AT small files of a family are merged into one, and every
# FAN_IN merged files of a level into one of the next; a reader may still be listing one of the last
# KEEP_GENERATIONS generations a local compaction replaced, so those are kept.
MERGE_AT = 64
FAN_IN = 8
LAST_LEVEL = 9  # what the final compaction of a sweep writes
KEEP_GENERATIONS = 2
GENERATIONS = ".results"  # OUT/.results/<kind>.<number>: what OUT/<kind> links to (local --out)
SMALL_FILE = re.compile(r"^(?P<study>.+)-(?P<trial>[0-9]+)\.parquet$")  # one trial: <study>-<number>
MERGED_FILE = re.compile(r"^compacted-L(?P<level>[0-9])-c[0-9a-f]{32}\.parquet$")  # never ends in digits only
CORRUPT = "corrupt"  # OUT/corrupt/: result files that were not readable Parquet, moved aside
REPLACES_KEY = b"hypersweep.replaces"  # a merged file's metadata: the names of the files it replaced
# A one-trial file lives until its merge: encoding it plainly (no dictionaries, statistics or compression,
# which pay off only over many rows) saves a quarter of its write. Merged files use pyarrow's defaults.
SMALL_FILE_OPTIONS = {"use_dictionary": False, "write_statistics": False, "compression": "NONE"}

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


@functools.cache  # deriving it from the type hints cost each written trial a millisecond
def trial_schema(task: type, model: type, train: type) -> pa.Schema:
    """The columns of a trial row for these config types."""
    columns = {**TRIAL_COLUMNS, **config_columns(task, "config.task"), **config_columns(model, "config.model"),
               **config_columns(train, "config.train"), "config.task.name": pa.string()}
    return pa.schema(columns.items(), metadata={"hypersweep.schema_version": SCHEMA_VERSION})


@functools.cache
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


def generation(kind: str, number: int) -> str:
    """The name of a local dataset's generation directory under OUT/.results/."""
    return f"{kind}.{number:06d}"


def generation_number(path: Path) -> int:
    return int(path.name.rsplit(".", 1)[1])


class ResultStore:
    """Writes, compacts and lists one sweep's Parquet files under `out` (a local path or a URI).

    Each finished trial is written at once as its own small file, so a reader sees it as soon as it
    finished. Compaction then merges small files into larger ones (`compact`), so a sweep of any size
    holds a handful of files per family, each row in one file only:

    - local --out: `OUT/trials` and `OUT/epochs` are symbolic links to generations
      (`OUT/.results/trials.000003`). A compaction builds the next generation (hard links to the files
      it keeps, plus the merged ones) and swaps the link in one rename, so a reader listing the
      directory sees the old generation or the new one, each holding every row once. A kill before the
      swap leaves an unfinished generation nobody links to; `recover` deletes it.
    - remote --out (s3://, ...): an object store renames nothing atomically. A merged file is written
      first, then the files it replaces (named in its metadata, `REPLACES_KEY`) are deleted; `recover`
      finishes a deletion a kill interrupted, and `load_trials` / `load_epochs` drop the duplicate rows
      a reader listing during those seconds would see.
    """

    def __init__(self, out: str, merge_at: int = MERGE_AT, fan_in: int = FAN_IN,
                 small_files: dict[str, Any] = SMALL_FILE_OPTIONS):
        self.fs, self.root = pafs.FileSystem.from_uri(out) if is_remote(out) else (pafs.LocalFileSystem(),
                                                                                  str(Path(out).resolve()))
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.merge_at, self.fan_in, self.small_files = merge_at, fan_in, small_files
        self._keys: dict[tuple[str, str], set[tuple[str, int]]] = {}  # (kind, family) -> its (study, trial)s
        # (kind, family) -> the small files this store wrote since it last merged them, by name: what a
        # merge would otherwise read back (most of a write's cost)
        self._fresh: dict[tuple[str, str], dict[str, pa.Table]] = {}
        self.merges = 0  # merges this store made: the number failpoints of a compaction are reached with

    def _path(self, kind: str, family: str, study: str, trial: int) -> str:
        return f"{self.root}/{kind}/family={family}/{study}-{trial:06d}.parquet"

    def _ensure(self, kind: str) -> None:
        """A local dataset starts as a link to its first generation (see the class docstring)."""
        link = Path(self.root) / kind
        if self.local and not link.is_symlink() and not link.exists():
            (Path(self.root) / GENERATIONS / generation(kind, 0)).mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"{GENERATIONS}/{generation(kind, 0)}")

    def _write(self, table: pa.Table, path: str, trial: int) -> None:
        """Write `path` once: under a temporary name, then renamed, never over an existing file."""
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path.rsplit('/', 1)[0]}/{TMP_PREFIX}{uuid.uuid4().hex}"
        pq.write_table(table, tmp, filesystem=self.fs, **self.small_files)
        failpoints.reached("before_rename", trial)
        if self.local:
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
        found = [info.path for kind in KINDS
                 for info in self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{kind}", recursive=True,
                                                                      allow_not_found=True))
                 if info.base_name.startswith(TMP_PREFIX)]
        for path in found:
            self.fs.delete_file(path)
        return len(found)

    def remove_corrupt_files(self) -> list[tuple[str, str]]:
        """Move result files whose Parquet footer cannot be read to OUT/corrupt/ (out of every reader's
        way, kept for whoever can mend them); return each one's path and where it went.

        A trial's row is rebuilt from its study afterwards (`hypersweep.search.reconcile`); a learning
        curve is not (the study keeps none), so a merged curve file's trials lose theirs.
        """
        moved = []
        for path in corrupt_files(self.fs, self.root):
            aside = f"{self.root}/{CORRUPT}/{uuid.uuid4().hex[:8]}-{path.rsplit('/', 1)[1]}"
            self.fs.create_dir(aside.rsplit("/", 1)[0], recursive=True)
            self.fs.move(path, aside)
            moved.append((path, aside))
        self._keys.clear()
        return moved

    def write_trial(self, family: str, study: str, cfg: RunConfig, row: dict[str, Any], epochs: list[dict]) -> None:
        """Write a trial's learning curve, then its row (the row marks it finished); then compact
        when enough small files have gathered.

        A curve written before a crash that came before the row is kept: a row rebuilt from
        the study (which holds no curve) does not replace it.
        """
        key = {k: row.get(k) for k in ("experiment", "study", "variant", "trial", "trial_id")}
        key["config_hash"] = config_hash(cfg)
        number = row["trial"]
        if (study, number) not in self._have("epochs", family):
            curve = [{**{k: null_if_nan(e.get(k)) for k in EPOCH_COLUMNS}, **key} for e in epochs]
            self._add("epochs", family, study, number, pa.Table.from_pylist(curve, schema=epoch_schema()))
        if (study, number) in self._have("trials", family):
            raise FileExistsError(f"{self.root}/trials/family={family}: trial {number} of {study} is written once; "
                                  "it has a row already")
        full = {**{k: null_if_nan(v) for k, v in row.items()}, **flatten_config(cfg), "config_hash": key["config_hash"],
                "version": __version__}
        schema = trial_schema(type(cfg.task), type(cfg.model), type(cfg.train))
        self._add("trials", family, study, number, pa.Table.from_pylist([{k: full.get(k) for k in schema.names}],
                                                                        schema=schema))
        for kind in KINDS:
            if len(self._fresh.get((kind, family), ())) >= self.merge_at:
                # The other families are usually close behind: merging those half-way there in the same
                # generation saves a generation each, and every generation links again what it keeps.
                self._compact(kind, final=False, least=self.merge_at // 2)

    def _add(self, kind: str, family: str, study: str, number: int, table: pa.Table) -> None:
        """Write one trial's small file of `kind`."""
        self._ensure(kind)
        path = self._path(kind, family, study, number)
        self._write(table, path, number)
        self._have(kind, family).add((study, number))
        self._fresh.setdefault((kind, family), {})[path.rsplit("/", 1)[1]] = table

    def finished(self, family: str, study: str) -> set[int]:
        """Trial numbers of `study` that have a row."""
        return {trial for s, trial in self._have("trials", family) if s == study}

    def _have(self, kind: str, family: str) -> set[tuple[str, int]]:
        """The (study, trial) pairs of `family` that `kind` holds, read once and then kept up to date."""
        if (kind, family) not in self._keys:
            keys = set()
            for info in self._files(kind, family):
                if small := SMALL_FILE.match(info.base_name):
                    keys.add((small["study"], int(small["trial"])))
                else:
                    with self.fs.open_input_file(info.path) as fh:
                        t = pq.read_table(fh, columns=["study", "trial"])
                    keys.update(zip(t.column("study").to_pylist(), t.column("trial").to_pylist()))
            self._keys[(kind, family)] = keys
        return self._keys[(kind, family)]

    def _files(self, kind: str, family: str | None = None) -> list[pafs.FileInfo]:
        """The finished Parquet files of `kind` (of one family, or of all), in name order."""
        base = f"{self.root}/{kind}" + (f"/family={family}" if family else "")
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=family is None, allow_not_found=True))
        return sorted((i for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
                       and not i.base_name.startswith(TMP_PREFIX)), key=lambda i: i.path)

    # --- compaction -------------------------------------------------------------------------------

    def compact(self, final: bool = False) -> int:
        """Merge small files into larger ones; return how many files were merged away.

        Every `merge_at` small files of a family become one level-0 file (the other families' join
        in at half that, to share the generation), and every `fan_in` files of
        one level one file of the next, so a row is rewritten about log(trials) / log(fan_in) times
        and a family holds fewer than `merge_at` + `fan_in` x levels files. `final` (the end of a
        sweep) merges each family into one file.
        """
        return sum(self._compact(kind, final, self.merge_at) for kind in KINDS)

    def _compact(self, kind: str, final: bool, least: int) -> int:
        """Merge, in one generation, each family of `kind` with at least `least` small files (any, if `final`)."""
        plan = {family: group for family, infos in self._by_family(kind).items()
                if (group := self._plan(infos, final, least))}
        return self._merge(kind, plan, final) if plan else 0

    def _by_family(self, kind: str) -> dict[str, list[pafs.FileInfo]]:
        families: dict[str, list[pafs.FileInfo]] = {}
        for info in self._files(kind):
            parent = info.path.rsplit("/", 2)[-2]
            if parent.startswith("family="):
                families.setdefault(parent.removeprefix("family="), []).append(info)
        return families

    def _plan(self, infos: list[pafs.FileInfo], final: bool, least: int) -> tuple[list[pafs.FileInfo], int] | None:
        """The files of one family to merge now, with the level of the file they become (None: none)."""
        if final:
            return (infos, LAST_LEVEL) if len(infos) > 1 else None
        levels: dict[int, list[pafs.FileInfo]] = {}
        for info in infos:
            if merged := MERGED_FILE.match(info.base_name):
                levels.setdefault(int(merged["level"]), []).append(info)
        inputs = [i for i in infos if SMALL_FILE.match(i.base_name)]
        if len(inputs) < least:
            return None
        level = 0
        # The new file would make `fan_in` files at its level: merge those into the next level at once.
        while level < LAST_LEVEL - 1 and len(levels.get(level, [])) + 1 >= self.fan_in:
            inputs, level = inputs + levels[level], level + 1
        return inputs, level

    def _merge(self, kind: str, plan: dict[str, tuple[list[pafs.FileInfo], int]], final: bool) -> int:
        """Write each family's group as one file that replaces its inputs (see the class docstring); the
        final merge also sorts the rows by study and trial (sorting every merge would cost each row a
        sort per level)."""
        order = [(c, "ascending") for c in ("study", "trial", "epoch")[:3 if kind == "epochs" else 2]]
        merged: dict[str, tuple[str, pa.Table, list[str]]] = {}
        for family, (infos, level) in plan.items():
            fresh, tables = self._fresh.pop((kind, family), {}), []
            for info in infos:
                if info.base_name in fresh:
                    tables.append(fresh[info.base_name])
                    continue
                with self.fs.open_input_file(info.path) as fh:
                    tables.append(pq.read_table(fh))
            table = pa.concat_tables(tables, promote_options="default")
            table = table.sort_by(order) if final else table
            replaces = [i.base_name for i in infos]
            metadata = {**(table.schema.metadata or {}), REPLACES_KEY: json.dumps(replaces).encode()}
            merged[family] = (f"compacted-L{level}-c{uuid.uuid4().hex}.parquet",
                              table.replace_schema_metadata(metadata), replaces)
        self.merges += 1
        if self.local:
            self._next_generation(kind, merged)
        else:
            self._replace_in_place(kind, merged)
        return sum(len(replaces) for _, _, replaces in merged.values())

    def _next_generation(self, kind: str, merged: dict[str, tuple[str, pa.Table, list[str]]]) -> None:
        link = Path(self.root) / kind
        if not link.is_symlink():  # a sweep from before compaction, or a copy that followed the link
            generations = Path(self.root) / GENERATIONS
            generations.mkdir(exist_ok=True)
            first = 1 + max((generation_number(p) for p in generations.glob(f"{kind}.*")), default=-1)
            os.replace(link, generations / generation(kind, first))
            link.symlink_to(f"{GENERATIONS}/{generation(kind, first)}")
        current = link.resolve()
        number = generation_number(current) + 1
        new = current.with_name(generation(kind, number))
        shutil.rmtree(new, ignore_errors=True)  # what a kill left of an earlier try
        for directory in (d for d in current.iterdir() if d.is_dir()):
            (new / directory.name).mkdir(parents=True)
            _, _, replaces = merged.get(directory.name.removeprefix("family="), (None, None, []))
            for path in directory.iterdir():
                if path.name.endswith(".parquet") and path.name not in replaces:
                    os.link(path, new / directory.name / path.name)
        for family, (name, table, _) in merged.items():
            pq.write_table(table, new / f"family={family}" / name)
        failpoints.reached("compact_before_swap", self.merges)
        swap = Path(self.root) / f"{TMP_PREFIX}{kind}-link"
        swap.unlink(missing_ok=True)
        swap.symlink_to(f"{GENERATIONS}/{new.name}")
        os.replace(swap, link)  # the one step that makes the new generation what readers see
        failpoints.reached("compact_after_swap", self.merges)
        self._drop_old_generations(kind, keep_from=number - KEEP_GENERATIONS)

    def _drop_old_generations(self, kind: str, keep_from: int, newest: int | None = None) -> None:
        """Delete generations older than `keep_from` (readers still listing one get a little time) and
        any newer than `newest` (a compaction a kill interrupted before its swap)."""
        for path in (Path(self.root) / GENERATIONS).glob(f"{kind}.*"):
            number = generation_number(path)
            if number < keep_from or (newest is not None and number > newest):
                shutil.rmtree(path, ignore_errors=True)

    def _replace_in_place(self, kind: str, merged: dict[str, tuple[str, pa.Table, list[str]]]) -> None:
        for family, (name, table, replaces) in merged.items():
            base = f"{self.root}/{kind}/family={family}"
            tmp = f"{base}/{TMP_PREFIX}{uuid.uuid4().hex}"
            pq.write_table(table, tmp, filesystem=self.fs)
            failpoints.reached("compact_before_move", self.merges)
            self.fs.move(tmp, f"{base}/{name}")
            failpoints.reached("compact_before_delete", self.merges)
            for k, old in enumerate(replaces):
                self.fs.delete_file(f"{base}/{old}")
                if k == 0:
                    failpoints.reached("compact_deleting", self.merges)

    def recover(self) -> None:
        """Finish or undo a compaction a kill interrupted (see the class docstring)."""
        for kind in KINDS:
            link = Path(self.root) / kind
            if self.local and link.is_symlink():
                number = generation_number(link.resolve())
                self._drop_old_generations(kind, keep_from=number - KEEP_GENERATIONS, newest=number)
                (Path(self.root) / f"{TMP_PREFIX}{kind}-link").unlink(missing_ok=True)
                continue
            for family, infos in self._by_family(kind).items():  # remote: delete what a merged file replaced
                names = {i.base_name for i in infos}
                for info in infos:
                    if MERGED_FILE.match(info.base_name):
                        try:
                            with self.fs.open_input_file(info.path) as fh:
                                meta = pq.read_schema(fh).metadata or {}
                        except (OSError, pa.ArrowInvalid):  # not readable: remove_corrupt_files moves it aside
                            continue
                        for old in json.loads(meta.get(REPLACES_KEY, b"[]")):
                            if old in names:
                                self.fs.delete_file(f"{info.path.rsplit('/', 1)[0]}/{old}")
                                names.discard(old)
        self._keys.clear()


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
    if store.local:  # one generation throughout, though a compaction may swap the link meanwhile
        path = os.path.realpath(path)
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
    if "family" not in frame:  # no file yet (the first trial's is being written): no row, every key column
        columns = EPOCH_COLUMNS if kind == "epochs" else TRIAL_COLUMNS
        frame = pa.schema(columns.items()).empty_table().to_pandas().assign(family=pd.Series(dtype=str))
    frame["family"] = frame["family"].astype(str)
    if not store.local:  # listed while a compaction replaced files in place: a row may be there twice
        frame = frame.drop_duplicates(["study", "trial"] + (["epoch"] if kind == "epochs" else []), ignore_index=True)
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
