"""Compaction: a sweep's results end as a few files per family, each row in exactly one of them,
whatever is killed when and whoever reads meanwhile (hypersweep.results.ResultStore)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from hypersweep.results import GENERATIONS, ResultStore, load_epochs, load_trials
from hypersweep.tasks import load_config
from tests.compaction_writer import FAMILIES, curve, row, write

WRITER = str(Path(__file__).with_name("compaction_writer.py"))


def files(out, kind: str, family: str) -> list[Path]:
    return sorted((Path(out) / kind / f"family={family}").glob("*.parquet"))


def assert_each_row_once(out: str, trials: int) -> None:
    """Every reader sees `trials` rows per family, each once, and three epochs for each."""
    rows = load_trials(out)
    assert not rows.duplicated(["study", "trial"]).any()
    assert rows.groupby("family").size().to_dict() == {f: trials for f in FAMILIES}
    epochs = load_epochs(out)
    assert not epochs.duplicated(["study", "trial", "epoch"]).any()
    assert (epochs.groupby(["study", "trial"]).size() == 3).all() and len(epochs) == 3 * len(rows)
    if "://" not in out:  # a plain reader of the directory, as the README shows
        plain = pd.read_parquet(Path(out) / "trials")
        assert len(plain) == len(rows) and not plain.duplicated(["study", "trial"]).any()


def test_small_files_are_merged_as_they_gather_and_every_row_stays_once(tmp_path):
    out = str(tmp_path / "out")
    store = write(out, 0, 42, merge_at=4, fan_in=3)
    for family in FAMILIES:  # 4 small files at most, and at most 2 merged ones per level
        assert len(files(out, "trials", family)) <= 4 + 2 * 3, files(out, "trials", family)
    assert_each_row_once(out, 42)
    before = load_trials(out)
    write(str(tmp_path / "one"), 0, 1, merge_at=4, fan_in=3)  # a trial's own file, as first written
    small_schema = pq.read_schema(files(tmp_path / "one", "trials", "hyper")[0])

    store.compact(final=True)
    for family in FAMILIES:
        assert len(files(out, "trials", family)) == len(files(out, "epochs", family)) == 1
    assert_each_row_once(out, 42)
    pd.testing.assert_frame_equal(load_trials(out), before)
    merged_schema = pq.read_schema(files(out, "trials", "hyper")[0])
    assert merged_schema.remove_metadata() == small_schema.remove_metadata()  # no column changed its type
    assert merged_schema.metadata[b"hypersweep.schema_version"] == small_schema.metadata[b"hypersweep.schema_version"]

    again = ResultStore(out)  # a resumed sweep reads which trials have rows from the merged files
    assert again.finished("hyper", "x-hyper") == set(range(42))
    with pytest.raises(FileExistsError, match="written once"):
        again.write_trial("hyper", "x-hyper", load_config({"task": {"name": "teacher"}, "model": {"family": "hyper"}}),
                          row("hyper", 5), curve(5))


def test_a_compacted_trial_row_costs_under_a_kilobyte(tmp_path):
    store = write(str(tmp_path), 0, 150, merge_at=64, fan_in=8)
    store.compact(final=True)
    size = sum(p.stat().st_size for f in FAMILIES for p in files(tmp_path, "trials", f))
    assert size / (150 * len(FAMILIES)) < 1024, size


def test_other_readers_see_each_row_once_too(tmp_path):
    write(str(tmp_path), 0, 10, merge_at=4, fan_in=3).compact()
    duckdb = pytest.importorskip("duckdb")
    polars = pytest.importorskip("polars")
    glob = str(tmp_path / "trials" / "*" / "*.parquet")
    assert duckdb.sql(f"select count(distinct (study, trial)), count(*) from read_parquet('{glob}', "
                      "hive_partitioning = true)").fetchall() == [(20, 20)]
    assert polars.read_parquet(glob, hive_partitioning=True).height == 20


@pytest.mark.slow  # one writer process per failpoint: ~3 s each
@pytest.mark.parametrize("point", ["compact_before_swap", "compact_after_swap"])
def test_a_kill_at_each_step_of_a_compaction_then_a_resume_keeps_every_row_once(tmp_path, point):
    out = str(tmp_path / "out")
    killed = subprocess.run([sys.executable, WRITER, out, "0", "30", "4", "3"],
                            env={**os.environ, "HYPERSWEEP_FAILPOINT": f"{point}@3"}, cwd=Path(__file__).parents[1])
    assert killed.returncode == -signal.SIGKILL
    done = {f: ResultStore(out).finished(f, f"x-{f}") for f in FAMILIES}
    assert 0 < len(done["hyper"]) < 30 and done["hyper"] == set(range(len(done["hyper"])))
    rows = load_trials(out)  # before any recovery, readers see what was written, each once
    assert len(rows) == sum(map(len, done.values())) and not rows.duplicated(["study", "trial"]).any()

    store = ResultStore(out)  # the resume: what a sweep's clean_up does, then the rest of the trials
    store.recover()
    write(out, 0, 30, 4, 3).compact(final=True)
    assert_each_row_once(out, 30)
    generations = sorted(p.name for p in (Path(out) / GENERATIONS).iterdir())
    assert len(generations) <= 2 * 3, generations  # the current and the two before it, per kind
    assert not list(Path(out).rglob(".tmp-*"))


@pytest.mark.slow
def test_readers_during_compactions_never_see_a_row_twice(tmp_path):
    out = str(tmp_path / "out")
    writer = subprocess.Popen([sys.executable, WRITER, out, "0", "120", "3", "2"], cwd=Path(__file__).parents[1])
    while not (Path(out) / "trials").exists():
        time.sleep(0.01)
    seen, reads = 0, 0
    while writer.poll() is None or reads == 0:
        try:
            plain = pd.read_parquet(Path(out) / "trials")
        except FileNotFoundError:  # listed just before a swap: the file it names left with the old generation
            continue
        rows = load_trials(out)
        for frame in (plain, rows):
            assert not frame.duplicated(["study", "trial"]).any()
        assert len(rows) >= seen  # rows only ever arrive
        seen, reads = len(rows), reads + 1
    assert writer.returncode == 0 and reads > 5
    assert_each_row_once(out, 120)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """An S3-compatible server (moto, from PyPI) on a free local port, with one bucket; its URI prefix."""
    if not shutil.which("moto_server", path=str(Path(sys.executable).parent)):
        pytest.skip("moto_server (pip install 'moto[server]') is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keys = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        import pyarrow.fs as pafs
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.time() < deadline, "moto_server did not start"
                time.sleep(0.2)
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                               allow_bucket_creation=True)
        fs.create_dir("results")
        yield f"s3://results/{{}}?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    finally:
        server.terminate()
        server.wait()
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.slow  # a writer process per failpoint against an S3 server: ~5 s each
@pytest.mark.parametrize("point", ["compact_before_move", "compact_before_delete", "compact_deleting"])
def test_a_remote_out_keeps_every_row_once_through_a_kill_in_a_compaction(s3, point):
    out = s3.format(point)
    killed = subprocess.run([sys.executable, WRITER, out, "0", "30", "4", "3"],
                            env={**os.environ, "HYPERSWEEP_FAILPOINT": f"{point}@3"}, cwd=Path(__file__).parents[1])
    assert killed.returncode == -signal.SIGKILL
    rows = load_trials(out)  # a merged file and some of the files it replaces may both be listed: dropped here
    assert not rows.duplicated(["study", "trial"]).any()
    store = ResultStore(out)
    listed = ds.dataset(f"{store.root}/trials", filesystem=store.fs, partitioning="hive").count_rows()
    assert listed == len(rows) if point == "compact_before_move" else listed > len(rows)
    store.recover()
    store.remove_partial_files()
    write(out, 0, 30, 4, 3).compact(final=True)
    assert_each_row_once(out, 30)
    for kind in ("trials", "epochs"):  # and the plain listing holds each row once: one file per family
        assert {i.base_name.startswith("compacted-") for i in store._files(kind)} == {True}
        assert len(store._files(kind)) == len(FAMILIES)


def test_a_reader_before_the_first_file_lands_gets_no_rows_and_every_key_column(tmp_path):
    store = ResultStore(str(tmp_path))
    store._ensure("trials")  # what the first write does before its file lands
    store._ensure("epochs")
    assert load_trials(str(tmp_path)).empty and {"study", "trial", "family"} <= set(load_trials(str(tmp_path)))
    assert load_epochs(str(tmp_path)).empty and "epoch" in load_epochs(str(tmp_path))
