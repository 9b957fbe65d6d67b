"""One batch script over K workers (audiobox.shard, `voice-synth batch --shard I/K`, `--merge`).

Covered: the split is deterministic, keeps a voice's items together unless the voice alone is
more than a fair share, and balances text length; `--shard auto` under a Kubernetes Indexed Job
and a Slurm array (and the recipes shipped in deploy/ use the right fields); three shards of a
script on the tiny real checkpoints give the same files, audio and manifest as the unsharded run;
a shard interrupted half-way is refused by the merge, then resumes and merges.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from audiobox.cli.voice_synth import main
from audiobox.errors import UserError
from audiobox.shard import Shard, assign, merge, parse_shard

ROOT = Path(__file__).resolve().parents[1]
# Fields that say when, how fast or with which neighbours an item was made, not what it is.
VOLATILE = ("finished_at", "started_at", "seconds", "synth_sec", "rtf", "reused", "batched_with")


@dataclass
class Item:
    number: int
    text: str
    voice: str | None = None
    speaker: str | None = None
    variants: int = 1


def test_split_is_deterministic_keeps_voices_together_and_balances_text():
    items = [Item(n, "x" * (10 + n % 7), voice=f"v{n % 4}") for n in range(1, 41)]
    shards = assign(items, 3)
    assert shards == assign(items, 3)
    by_voice = {}
    for item, s in zip(items, shards, strict=True):
        by_voice.setdefault(item.voice, set()).add(s)
    assert all(len(s) == 1 for s in by_voice.values())  # four voices, none over a fair share
    loads = [sum(len(i.text) for i, s in zip(items, shards, strict=True) if s == k) for k in (1, 2, 3)]
    assert max(loads) <= 2 * min(loads)
    # One voice with most of the text is cut into runs; shards stay balanced.
    items = [Item(n, "y" * 50, voice="big") for n in range(1, 31)] + [Item(31, "z" * 40, speaker="ryan")]
    shards = assign(items, 3)
    loads = [sum(len(i.text) for i, s in zip(items, shards, strict=True) if s == k) for k in (1, 2, 3)]
    assert sorted(set(shards)) == [1, 2, 3] and max(loads) - min(loads) <= 100
    # Variants weigh: one item with 6 takes is worth six.
    assert assign(
        [Item(1, "aaaa", voice="a", variants=6), Item(2, "bbbb", voice="b"), Item(3, "cccc", voice="c")], 2
    ) == [
        1,
        2,
        2,
    ]


@pytest.mark.parametrize(
    "spec,env,expected",
    [
        ("2/3", {}, Shard(2, 3)),
        ("auto", {"JOB_COMPLETION_INDEX": "0", "PAB_SHARD_COUNT": "3"}, Shard(1, 3)),
        ("auto/4", {"JOB_COMPLETION_INDEX": "3"}, Shard(4, 4)),
        (
            "auto",
            {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "3"},
            Shard(3, 3),
        ),
    ],
)
def test_shard_specs(spec, env, expected):
    assert parse_shard(spec, env) == expected


@pytest.mark.parametrize("spec", ["0/3", "4/3", "x", "2", "auto"])
def test_bad_shard_specs_are_one_clear_error(spec):
    with pytest.raises(UserError, match="--shard"):
        parse_shard(spec, {})


def test_kubernetes_recipe_is_an_indexed_job_that_covers_every_shard():
    job = yaml.safe_load((ROOT / "deploy/kubernetes/batch-indexed-job.yaml").read_text())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["PAB_SHARD_COUNT"]) == spec["completions"]
    command = container["command"]
    assert command[:2] == ["voice-synth", "batch"] and command[command.index("--shard") + 1] == "auto"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/work", "/cache"} <= mounts and spec["template"]["spec"]["restartPolicy"] == "Never"
    shards = [
        parse_shard("auto", {**env, "JOB_COMPLETION_INDEX": str(i)}) for i in range(spec["completions"])
    ]
    assert shards == [Shard(i, spec["completions"]) for i in range(1, spec["completions"] + 1)]
    merge_job = yaml.safe_load((ROOT / "deploy/kubernetes/batch-merge-job.yaml").read_text())
    merge_cmd = merge_job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--merge" in merge_cmd and merge_cmd[2:5] == command[2:5]  # same script and output dir


def test_slurm_recipe_passes_the_array_task_to_the_shard(tmp_path):
    script = ROOT / "deploy/slurm/batch-array.sh"
    text = script.read_text()
    array = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH --array="))
    first, last = (int(x) for x in array.split("-"))
    recorder = tmp_path / "voice-synth"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$OUT_ARGS"\n')
    recorder.chmod(0o755)
    seen = []
    for task in range(first, last + 1):
        env = {
            "PATH": "/usr/bin:/bin",
            "PAB_RUN": str(recorder),
            "OUT_ARGS": str(tmp_path / f"args-{task}"),
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_ARRAY_TASK_MIN": str(first),
            "SLURM_ARRAY_TASK_COUNT": str(last - first + 1),
        }
        subprocess.run(
            ["bash", str(script), "/shared/s.yaml", "/shared/out"], env=env, check=True, timeout=30
        )
        args = (tmp_path / f"args-{task}").read_text().split()
        assert args == ["batch", "/shared/s.yaml", "--out-exact", "/shared/out", "--shard", "auto"]
        seen.append(parse_shard(args[-1], env))
    assert seen == [Shard(i, last - first + 1) for i in range(1, last - first + 2)]


# ---- on the tiny real checkpoints -------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_cache(tiny_models, tmp_path_factory) -> Path:
    """Two built-in speaker voices on the tiny CustomVoice checkpoint."""
    cache = tmp_path_factory.mktemp("shard_cache")
    for name, speaker in (("narrator", "ryan"), ("guide", "ryan")):
        argv = ["register-builtin", "--voice-name", name, "--speaker", speaker]
        argv += ["--model", str(tiny_models / "custom_voice"), "--cache", str(cache)]
        assert main(argv) == 0
    return cache


def _batch(script: Path, cache: Path, out: Path, *args: str) -> int:
    argv = ["batch", str(script), "--cache", str(cache), "--out-exact", str(out)]
    return main([*argv, "--max-new-tokens", "4", "--seed", "5", "--batch-size", "1", *args])


def _comparable(out: Path, name: str = "manifest.json") -> list[dict]:
    data = json.loads((out / name).read_text())
    return [{k: v for k, v in e.items() if k not in VOLATILE} for e in data["items"]]


def test_three_shards_give_the_unsharded_files_and_manifest_and_resume(registry_cache, tmp_path, monkeypatch):
    script = tmp_path / "s.jsonl"
    lines = [("narrator", "One short line."), ("guide", "Two."), ("narrator", "Three, a little longer."),
             ("guide", "Four is here."), ("narrator", "Five."), ("guide", "Six and the end.")]  # fmt: skip
    script.write_text("".join(json.dumps({"voice": v, "text": t}) + "\n" for v, t in lines))
    whole = tmp_path / "whole"
    assert _batch(script, registry_cache, whole) == 0

    sharded = tmp_path / "sharded"
    assert _batch(script, registry_cache, sharded, "--shard", "1/3") == 0
    # Shard 2 is interrupted after its first item (the manifest is saved after every item).
    import audiobox.batch as batch_mod

    real = batch_mod._Runner.run_batch
    calls = {"n": 0}

    def interrupted(self, model_ref, plans):
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(self, model_ref, plans)

    monkeypatch.setattr(batch_mod._Runner, "run_batch", interrupted)
    assert _batch(script, registry_cache, sharded, "--shard", "2/3") == 130  # like Ctrl-C
    monkeypatch.setattr(batch_mod._Runner, "run_batch", real)
    assert _batch(script, registry_cache, sharded, "--shard", "3/3") == 0
    with pytest.raises(UserError, match="pending"):
        merge(sharded)
    assert (
        main(["batch", str(script), "--cache", str(registry_cache), "--out-exact", str(sharded), "--merge"])
        == 2
    )
    # Shard 2 again: its finished item is kept, the rest rendered; then the merge succeeds.
    assert _batch(script, registry_cache, sharded, "--shard", "2/3") == 0
    part = json.loads((sharded / "manifest.shard-2-of-3.json").read_text())
    assert part["summary"]["reused"] == 1 and part["runs"] == 2
    assert (
        main(["batch", str(script), "--cache", str(registry_cache), "--out-exact", str(sharded), "--merge"])
        == 0
    )

    assert _comparable(sharded) == _comparable(whole)
    wavs = sorted(p.name for p in whole.glob("*.wav"))
    assert wavs == sorted(p.name for p in sharded.glob("*.wav")) and len(wavs) == 6
    for name in wavs:
        assert (whole / name).read_bytes() == (sharded / name).read_bytes(), name
    # Every item is in exactly one shard, and a merge again is the same merge.
    parts = [json.loads((sharded / f"manifest.shard-{i}-of-3.json").read_text()) for i in (1, 2, 3)]
    assert sorted(n for p in parts for n in p["shard"]["items"]) == list(range(1, 7))
    before = (sharded / "manifest.json").read_text()
    merge(sharded)
    assert (sharded / "manifest.json").read_text() == before


def test_merge_refuses_a_missing_shard_and_a_shard_of_another_script(registry_cache, tmp_path):
    script = tmp_path / "s.jsonl"
    script.write_text(
        "".join(json.dumps({"voice": "narrator", "text": f"Line {i}."}) + "\n" for i in range(4))
    )
    out = tmp_path / "out"
    assert _batch(script, registry_cache, out, "--shard", "1/2") == 0
    with pytest.raises(UserError, match="2/2 missing"):
        merge(out)
    other = tmp_path / "other.jsonl"
    other.write_text(script.read_text().replace("Line 3.", "Another line."))
    elsewhere = tmp_path / "elsewhere"
    assert _batch(other, registry_cache, elsewhere, "--shard", "2/2") == 0
    shutil.copy(elsewhere / "manifest.shard-2-of-2.json", out)
    with pytest.raises(UserError, match="another version of the script"):
        merge(out)


# ---- the same over three vast.ai instances (stand-ins: see test_deploy_vast.py) ----------------

from test_deploy_vast import Harness, fake_api, harness, zygote  # noqa: E402, F401  (fixtures)


def _own_processes_with(needle: str) -> list[int]:
    """Processes whose command line holds `needle` (the fake instances run as our children)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_sharded_vast_run_over_three_instances_matches_the_unsharded_run(harness, registry_cache, tmp_path):  # noqa: F811
    """`vast.sh run --shards 3` with the real app on each stand-in instance: one shard's process
    is killed half-way (as an out-of-memory kill would), that shard runs again on a new instance
    from what it had finished, and the merged output equals an unsharded run's."""
    import os
    import signal
    import time

    h: Harness = harness()
    checkout = h.script.parents[1]
    shutil.rmtree(checkout / "apps")
    (checkout / "apps").symlink_to(ROOT / "apps")
    (checkout / "run-direct").unlink()
    shutil.copy(ROOT / "run-direct", checkout / "run-direct")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    script = inputs / "s.jsonl"
    voices = ("narrator", "guide")
    script.write_text(
        "".join(json.dumps({"voice": voices[i % 2], "text": f"Line {i} here."}) + "\n" for i in range(9))
    )
    whole = tmp_path / "whole"
    assert _batch(script, registry_cache, whole) == 0

    tasks = tmp_path / "tasks.txt"
    tasks.write_text(
        "voice-synth batch /cache/inputs/s.jsonl --out-exact /work/out --max-new-tokens 4 --seed 5 --batch-size 1\n"
    )
    h.env["HF_HUB_OFFLINE"] = "1"
    args = ["--shards", "3", "--push-cache", str(registry_cache / "voices"), "--push-cache", str(inputs)]
    proc = h.start("run", *args, "--tasks", str(tasks))
    killed = False
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline and not killed:
            for inst in h.fake.alive():
                if ":2of3:" not in inst["label"]:
                    continue
                part = h.fake.host_root(inst["id"]) / "work" / "out" / "manifest.shard-2-of-3.json"
                try:
                    done = [e for e in json.loads(part.read_text())["items"] if e["status"] == "done"]
                except (OSError, ValueError, KeyError):
                    continue
                if done and len(done) < 3:
                    for pid in _own_processes_with("--shard 2/3"):
                        os.kill(pid, signal.SIGKILL)
                    killed = True
            time.sleep(0.05)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed, "shard 2 was not caught half-way"
    assert proc.returncode == 0, err
    h.assert_all_gone()
    assert len(h.creates()) == 4  # three shards, and shard 2 once more
    summary = h.summary()
    assert summary["instance_destroyed"] is True and summary["merged"]
    merged = h.run_dir / "job1" / "work" / "out"
    part = json.loads((merged / "manifest.shard-2-of-3.json").read_text())
    assert part["runs"] == 2 and part["summary"]["reused"] >= 1  # resumed, not redone
    assert _comparable(merged) == _comparable(whole)
    wavs = sorted(p.name for p in whole.glob("*.wav"))
    assert wavs == sorted(p.name for p in merged.glob("*.wav")) and len(wavs) == 9
    for name in wavs:
        assert (whole / name).read_bytes() == (merged / name).read_bytes(), name
