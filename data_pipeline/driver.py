"""The featurization job: Ray actors turn source chunks into shards; the driver keeps the books.

Resumable by construction: every finished shard has a record under ``parts/``; a re-run with
the same configuration verifies those shards, keeps those whose recorded inputs the source
still yields (see :mod:`data_pipeline.inputs`) and featurizes the rest. The driver
may die at any moment without losing finished work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipeline.config import FeaturizeConfig, source_record
from data_pipeline.inputs import (
    FileIdentities,
    changed_fields,
    comparable,
    config_hash,
    describe_change,
    file_changes,
    recorded_files,
    sample_config,
)
from data_pipeline.sources import Chunk, count_chunks, count_inputs, iter_chunks
from data_pipeline.worker import PARTS_DIR, ChunkFeaturizer, part_path, shard_name
from fmpretrain.data.format import sha256_file
from fmpretrain.data.manifest import MANIFEST_NAME, Manifest, ShardEntry, software_versions
from fmpretrain.files import atomic_open, atomic_write_text

log = logging.getLogger("fmpretrain.featurize")

REJECTS_NAME = "rejects.jsonl"
RAY_SESSION_NAME = ".ray-session.json"
MANIFEST_EVERY_S = 15.0


class ConfigMismatchError(ValueError):
    """The output directory holds shards made with another configuration."""


@dataclass
class FeaturizeResult:
    out: Path
    manifest: Manifest
    reused_shards: int
    new_shards: int
    seconds: float


def run_featurize(cfg: FeaturizeConfig, *, progress: bool = True) -> FeaturizeResult:
    """Featurize the configured source into ``cfg.out``, resuming what is already there.

    A finished chunk is kept only when its record was made with the same configuration hash
    and the source yields the same inputs for it now (file identities, entry ranges, content
    hashes); other chunks are redone, chunks beyond the source's new end removed.
    """
    from fmpretrain.descriptors import get_descriptor

    start_time = time.perf_counter()
    out = Path(cfg.out)
    descriptor = get_descriptor(cfg.descriptor, **cfg.descriptor_params)
    config = sample_config(cfg, descriptor.hash)
    manifest = Manifest(
        descriptor=descriptor.config(),
        descriptor_hash=descriptor.hash,
        dim=descriptor.dim,
        feature_names=descriptor.feature_names,
        fingerprint_dtype=cfg.fingerprint_dtype,
        source=source_record(cfg),
        chunk_size=cfg.chunk_size,
        n_chunks=count_chunks(cfg),
        versions=software_versions(),
        config=config,
        config_hash=config_hash(config),
    )
    old = _prepare_output(out, manifest, overwrite=cfg.overwrite)
    done = _finished_shards(out, manifest.config_hash)
    if old is not None and old.inputs is not None:
        old_files = {i["path"]: i["sha256"] for i in old.inputs}
    else:
        old_files = recorded_files(list(done.values()))
    reused = len(done)
    manifest.shards = [ShardEntry(**r["entry"]) for r in done.values()]
    manifest.save(out)
    if reused:
        log.info("resuming: %d finished shard(s) verified in %s", reused, out)

    identities = FileIdentities()
    resume = _Resume(out, done)
    new = _run_chunks(
        cfg,
        resume.chunks(iter_chunks(cfg, identities=identities)),
        done,
        manifest,
        out,
        progress=progress,
    )

    resume.drop_beyond(resume.n_chunks)
    changes = file_changes(
        old_files,
        {path: i["sha256"] for path, i in identities.seen.items()},
        old_complete=old is not None and old.complete,
    )
    if reused and changes:
        log.warning(
            "inputs changed since the last run (%d chunk(s) redone, %d removed): %s",
            len(resume.redone),
            len(resume.removed),
            "; ".join(changes),
        )
    manifest.shards = [ShardEntry(**r["entry"]) for r in done.values()]
    manifest.n_chunks = resume.n_chunks
    manifest.inputs = list(identities.seen.values())
    manifest.complete = len(done) == manifest.n_chunks
    _write_rejects(out, done)
    manifest.save(out)
    reused = reused - len(resume.redone) - len(resume.removed)
    return FeaturizeResult(out, manifest, reused, new, time.perf_counter() - start_time)


class _Resume:
    """Passes on the chunks to featurize: a finished chunk whose recorded input signature is
    the one the source yields now is kept (not passed on); one whose inputs differ is
    discarded and passed on to be redone."""

    def __init__(self, out: Path, done: dict[int, dict[str, Any]]) -> None:
        self.out, self.done = out, done
        self.n_chunks = 0
        self.redone: list[int] = []
        self.removed: list[int] = []

    def chunks(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            self.n_chunks = chunk.index + 1
            record = self.done.get(chunk.index)
            if record is not None:
                if comparable(record.get("inputs")) == comparable(chunk.inputs):
                    continue
                log.info(
                    "redoing chunk %d: its inputs changed since it was featurized", chunk.index
                )
                self._discard(chunk.index)
                self.redone.append(chunk.index)
            yield chunk

    def drop_beyond(self, n_chunks: int) -> None:
        """Remove the finished chunks at or beyond ``n_chunks`` (the source's new end)."""
        for index in sorted(i for i in self.done if i >= n_chunks):
            log.info("removing chunk %d: the inputs now end before it", index)
            self._discard(index)
            self.removed.append(index)

    def _discard(self, index: int) -> None:
        del self.done[index]
        part_path(self.out, index).unlink(missing_ok=True)  # the record first: see worker.py
        (self.out / shard_name(index)).unlink(missing_ok=True)


def _prepare_output(out: Path, manifest: Manifest, *, overwrite: bool) -> Manifest | None:
    """Refuse (or with ``overwrite`` discard) an output made with another configuration;
    return the manifest found there, if any."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MANIFEST_NAME).exists():
        return None
    old = Manifest.load(out)
    assert manifest.config is not None
    if old.config is not None:
        differences = changed_fields(old.config, manifest.config)
        described = [describe_change(old.config, manifest.config, d) for d in differences]
    else:  # written before the configuration hash: compare what it recorded
        differences = described = [
            what
            for what, a, b in (
                ("descriptor", old.descriptor_hash, manifest.descriptor_hash),
                ("source", old.source, manifest.source),
                ("chunk_size", old.chunk_size, manifest.chunk_size),
                ("fingerprint_dtype", old.fingerprint_dtype, manifest.fingerprint_dtype),
            )
            if a != b
        ]
    if not differences:
        return old
    if not overwrite:
        what = ""
        if "descriptor" in differences:
            what = (
                f" (descriptor {old.descriptor['name']} hash {old.descriptor_hash}, now "
                f"{manifest.descriptor['name']} hash {manifest.descriptor_hash})"
            )
        raise ConfigMismatchError(
            f"{out} holds shards made with a different {', '.join(described)}{what}; choose "
            "another out=DIR, or pass overwrite=true (--overwrite) to discard them"
        )
    log.warning("overwrite: discarding the shards in %s (%s changed)", out, differences)
    for path in out.glob("shard-*.tar*"):
        path.unlink()
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    for name in (MANIFEST_NAME, REJECTS_NAME):
        (out / name).unlink(missing_ok=True)
    return None


def _finished_shards(out: Path, config_hash: str | None) -> dict[int, dict[str, Any]]:
    """Records of shards that are complete, match their record byte for byte and were made
    with configuration ``config_hash`` (whether their inputs still match is checked later)."""
    done: dict[int, dict[str, Any]] = {}
    for tmp in [*out.glob("shard-*.tar.*.tmp"), *(out / PARTS_DIR).glob("*.tmp")]:
        tmp.unlink(missing_ok=True)  # a write interrupted by a crash
    for path in sorted((out / PARTS_DIR).glob("shard-*.json")):
        why = "its shard is missing or does not match"
        try:
            record = json.loads(path.read_text())
            entry = record["entry"]
            shard = out / entry["name"]
            if record.get("config_hash") != config_hash or "inputs" not in record:
                why = "it was made with another configuration (or records no inputs)"
                ok = False
            else:
                ok = (
                    shard.exists()
                    and shard.stat().st_size == entry["bytes"]
                    and sha256_file(shard) == entry["sha256"]
                )
        except (json.JSONDecodeError, KeyError, OSError):
            ok = False
        if ok:
            done[int(entry["index"])] = record
        else:
            log.warning("redoing %s: %s", path.name, why)
            path.unlink()
    return done


def _run_chunks(
    cfg: FeaturizeConfig,
    chunks: Any,
    done: dict[int, dict[str, Any]],
    manifest: Manifest,
    out: Path,
    *,
    progress: bool,
) -> int:
    import ray
    from tqdm import tqdm

    total_inputs = count_inputs(cfg)
    already = sum(r["entry"]["n_inputs"] for r in done.values())
    started_ray = _init_ray(cfg)
    actor_class = ray.remote(num_cpus=1, max_restarts=cfg.max_task_retries)(ChunkFeaturizer)
    actors = [actor_class.remote(cfg) for _ in range(cfg.workers)]
    load = dict.fromkeys(range(len(actors)), 0)
    pending: dict[Any, tuple[Chunk, int, int]] = {}  # ref -> (chunk, actor index, attempt)
    rejected = Counter()
    new_shards = 0
    last_save = time.monotonic()
    bar = tqdm(
        total=total_inputs,
        initial=already,
        desc=f"featurize {cfg.descriptor}",
        unit=" structures",
        disable=not progress or None,
        smoothing=0.1,
    )

    def submit(chunk: Chunk, attempt: int) -> None:
        worker = min(load, key=load.get)
        load[worker] += 1
        pending[actors[worker].run.remote(chunk)] = (chunk, worker, attempt)

    try:
        source_left = True
        while source_left or pending:
            while source_left and len(pending) < cfg.in_flight:
                chunk = next(chunks, None)
                if chunk is None:
                    source_left = False
                else:
                    submit(chunk, 0)
            if not pending:
                break
            [ref], _ = ray.wait(list(pending), num_returns=1)
            chunk, worker, attempt = pending.pop(ref)
            load[worker] -= 1
            try:
                record = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
                if attempt >= cfg.max_task_retries:
                    raise RuntimeError(
                        f"chunk {chunk.index} failed {attempt + 1} times; last error: {err}. "
                        "Finished shards are kept: fix the cause and re-run to resume."
                    ) from err
                log.warning("chunk %d: worker died (%s); retrying", chunk.index, err)
                submit(chunk, attempt + 1)
                continue
            done[chunk.index] = record
            new_shards += 1
            rejected.update(r["stage"] for r in record["rejects"])
            bar.update(record["entry"]["n_inputs"])
            bar.set_postfix(shards=len(done), rejected=sum(rejected.values()), refresh=False)
            if time.monotonic() - last_save > MANIFEST_EVERY_S:
                manifest.shards = [ShardEntry(**r["entry"]) for r in done.values()]
                manifest.save(out)
                last_save = time.monotonic()
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
        if started_ray:
            ray.shutdown()
            (out / RAY_SESSION_NAME).unlink(missing_ok=True)
    return new_shards


def _init_ray(cfg: FeaturizeConfig) -> bool:
    """Join ``cfg.ray_address`` / ``RAY_ADDRESS`` if given, else start a local cluster.

    A local cluster's session is recorded in ``out/.ray-session.json`` until the driver shuts
    it down, so that the next driver of ``out`` can kill what is left of it when this one was
    killed (:func:`_clean_stale_session`).
    """
    import ray

    if ray.is_initialized():
        return False
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        _clean_stale_session(Path(cfg.out))
        ray.init(
            num_cpus=cfg.workers,
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=False,
        )
        _record_session(Path(cfg.out))
    return True


def _record_session(out: Path) -> None:
    import psutil  # ray ships it
    import ray

    node = ray._private.worker._global_node
    me = psutil.Process()
    record = {
        "pid": me.pid,
        "created": me.create_time(),
        "session_dir": node.get_session_dir_path(),
    }
    atomic_write_text(out / RAY_SESSION_NAME, json.dumps(record))


def _clean_stale_session(out: Path) -> None:
    """Kill the processes left of the local Ray cluster of an earlier driver of ``out`` that
    died without shutting it down (raylet, GCS, agents, workers: all name its session dir)."""
    import psutil  # ray ships it

    path = out / RAY_SESSION_NAME
    try:
        record = json.loads(path.read_text())
        pid, created, session = record["pid"], record["created"], record["session_dir"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return
    try:
        if psutil.Process(pid).create_time() == created:
            return  # that driver still runs: its cluster is not stale
    except psutil.Error:
        pass
    left: dict[int, Any] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and session in " ".join(proc.info["cmdline"] or []):
                left.update((p.pid, p) for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            continue
    for proc in left.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(left.values()), timeout=10)
    if left:
        log.warning(
            "killed %d process(es) left of the Ray session %s of an earlier driver of %s that died",
            len(left),
            session,
            out,
        )
    path.unlink(missing_ok=True)


def _write_rejects(out: Path, done: dict[int, dict[str, Any]]) -> None:
    with atomic_open(out / REJECTS_NAME, "w") as handle:
        for index in sorted(done):
            for reject in done[index]["rejects"]:
                handle.write(json.dumps({"shard": shard_name(index), **reject}) + "\n")


def summary(result: FeaturizeResult) -> str:
    m = result.manifest
    stats = m.statistics()
    rate = m.n_inputs / result.seconds if result.seconds > 0 else float("nan")
    lines = [
        f"featurized {m.n_inputs} inputs -> {m.n_samples} samples in {len(m.shards)} shards "
        f"({result.new_shards} new, {result.reused_shards} reused) in {result.seconds:.1f} s "
        f"({rate:.1f} structures/s)",
        f"  descriptor {m.descriptor['name']} dim={m.dim} hash={m.descriptor_hash}; "
        f"{stats.count} atoms",
        f"  rejected   {m.n_rejected} (reasons in {result.out / REJECTS_NAME})",
        *(
            f"  source     {label}: {c['inputs']} inputs, {c['accepted']} accepted, "
            f"{c['rejected']} rejected, {c['atoms']} atoms"
            for label, c in m.source_counts().items()
        ),
        f"  output     {result.out} ({MANIFEST_NAME}, shard-*.tar); "
        f"check with `fmpretrain shards verify {result.out}`",
    ]
    if not m.complete:
        lines.append("  INCOMPLETE: re-run the same command to finish")
    return "\n".join(lines)
