"""The Parquet layout: one file per trial, stable dtypes, atomic writes, read whole by any tool."""
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from hypersweep.results import SCHEMA_VERSION, ResultStore, config_hash, load_epochs, load_trials, source_id
from hypersweep.tasks import load_config


def cfg(family: str, width: int = 4):
    return load_config({"task": {"name": "teacher"}, "model": {"family": family, "primary": {"width": width}}})


def row(trial: int, **fields):
    return {"experiment": "x", "study": "x-hyper", "variant": "", "trial": trial, "trial_id": f"r{trial}",
            "status": "ok", "val_error": 0.1, "test_error": 0.2, "params_primary": 17, "params_conditioner": 5,
            "params_total": 5, "epochs": 3, "finished_at": datetime.now(timezone.utc), **fields}


def test_each_trial_is_one_file_written_once(tmp_path):
    store = ResultStore(str(tmp_path))
    curve = [{"epoch": e, "val_error": 1 / e, "train_loss": 1.0} for e in (1, 2, 3)]
    store.write_trial("hyper", "x-hyper", cfg("hyper"), row(0), curve)
    store.write_trial("hyper", "x-hyper", cfg("hyper"), row(1, status="diverged", val_error=math.nan), curve)
    with pytest.raises(FileExistsError, match="written once"):  # a second row for trial 1 would mix two runs
        store.write_trial("hyper", "x-hyper", cfg("hyper"), row(1, status="ok", val_error=0.05), curve)
    assert store.finished("hyper", "x-hyper") == {0, 1}
    trials = load_trials(str(tmp_path))
    assert list(trials["trial"]) == [0, 1] and list(trials["status"]) == ["ok", "diverged"]
    assert load_epochs(str(tmp_path)).groupby("trial").size().tolist() == [3, 3]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_every_file_has_the_same_schema_so_any_reader_sees_every_column(tmp_path):
    store = ResultStore(str(tmp_path))
    store.write_trial("hyper", "x-hyper", cfg("hyper"), row(0), [])
    store.write_trial("standard", "x-standard", cfg("standard", 8), row(0, study="x-standard",
                                                                         params_conditioner=0), [])
    store.write_trial("embedding", "x-embedding", cfg("embedding"), row(0, study="x-embedding"), [])
    schemas = {f: pq.read_schema(f) for f in tmp_path.glob("trials/*/*.parquet")}
    assert len({s.remove_metadata() for s in schemas.values()}) == 1
    assert all(s.metadata[b"hypersweep.schema_version"] == SCHEMA_VERSION.encode() for s in schemas.values())
    schema = next(iter(schemas.values()))
    # Typed from the config dataclasses, not from the values: null-able ints stay ints.
    assert schema.field("config.model.embedding_dim").type == pa.int64()
    assert schema.field("config.train.lr").type == pa.float64()
    assert schema.field("params_total").type == pa.int64()

    by_pandas = pd.read_parquet(tmp_path / "trials")
    by_arrow = ds.dataset(tmp_path / "trials", partitioning="hive").to_table()
    assert len(by_pandas) == by_arrow.num_rows == 3
    embedding_dim = by_pandas.set_index(by_pandas["family"].astype(str))["config.model.embedding_dim"]
    assert embedding_dim["embedding"] == 16 and pd.isna(embedding_dim["hyper"])  # unused keys are null


def test_the_config_hash_names_a_configuration():
    assert config_hash(cfg("hyper")) == config_hash(cfg("hyper"))
    assert config_hash(cfg("hyper")) != config_hash(cfg("hyper", 5))


def test_partial_files_are_invisible_and_removed(tmp_path):
    store = ResultStore(str(tmp_path))
    store.write_trial("hyper", "x-hyper", cfg("hyper"), row(0), [])
    crashed = tmp_path / "trials" / "family=hyper" / ".tmp-deadbeef"
    crashed.write_bytes(b"PAR1 half a file")
    assert len(load_trials(str(tmp_path))) == 1
    assert store.remove_partial_files() == 1 and not crashed.exists()


def test_small_text_files_and_emptiness(tmp_path):
    store = ResultStore(str(tmp_path / "out"))
    assert store.is_empty() and store.read_text("sweep.json") is None
    store.write_text("sweep.json", "{}")
    assert store.read_text("sweep.json") == "{}" and not store.is_empty()


def test_the_source_identifier_names_the_code_with_or_without_git(tmp_path):
    # A cluster node holds a copy of the package without .git: its rows carry the digest of the files,
    # which the checkout they came from reports too (`python -m hypersweep.launch --version`).
    import shutil
    import subprocess

    import hypersweep
    from hypersweep.results import _source_id

    package = Path(hypersweep.__file__).parent
    copy = tmp_path / "node" / "hypersweep"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    on_node = _source_id(copy)
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", on_node)
    assert source_id().endswith(f"+{on_node}") or source_id() == on_node  # a checkout: <commit>[-dirty]+digest
    (copy / "models.py").write_text((copy / "models.py").read_text() + "\n# changed\n")
    assert _source_id.__wrapped__(copy) != on_node

    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    subprocess.run(["git", "-C", str(copy), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(copy), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "y"],
                   check=True)
    commit = subprocess.run(["git", "-C", str(copy), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert _source_id.__wrapped__(copy) == f"{commit.strip()}+{_source_id.__wrapped__(copy).split('+')[1]}"
    (copy / "train.py").write_text("# edited, not committed\n")
    assert _source_id.__wrapped__(copy).startswith(f"{commit.strip()}-dirty+sha256:")
