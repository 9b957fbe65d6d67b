"""Fault injection, part 2: concurrent writers, kill -9 at chosen points, leftovers, file modes.

A kill is injected by running the real code in a child process whose chosen call (a rename, a file
write, a download progress report) is wrapped to SIGKILL the process itself: the state on disk is
exactly what a `kill -9` at that point leaves. The next run must lose nothing and leave no leftover.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audiobox.audio import write_audio
from audiobox.fsutil import STALE_AFTER_S
from audiobox.voices import VoiceRegistry

LIB = str(Path(__file__).resolve().parents[1] / "lib")

KILL_AT = """
import os, signal, sys
sys.path.insert(0, {lib!r})
import {module} as target
real = getattr(target, {name!r})
calls = [0]
def dying(*args, **kwargs):
    calls[0] += 1
    if calls[0] == {nth}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(target, {name!r}, dying)
{body}
"""


def run_killed(module: str, name: str, nth: int, body: str) -> None:
    """Run `body` in a child that SIGKILLs itself on the nth call of module.name."""
    expect_killed(KILL_AT.format(lib=LIB, module=module, name=name, nth=nth, body=body))


def expect_killed(code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    time.sleep(STALE_AFTER_S)  # what the dead process left is now old enough to count as stale


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.name != ".registry.lock")


def clone_voice(registry: VoiceRegistry, slug: str, text: str):
    from audiobox.tts.prompts import ClonePrompt

    prompt = ClonePrompt(
        speaker_embedding=np.ones(8, np.float32),
        ref_code=np.zeros((3, 2), np.int64),
        ref_text=text,
        x_vector_only=False,
        model={"ref": "m", "tag": "base", "model_type": "base", "fingerprint": {}},
    )
    return registry.create(
        slug,
        {"engine": "clone_prompt", "description": text},
        prompts=((prompt, None, None),),
        replace=registry.exists(slug),
    )


@pytest.fixture()
def exported(tmp_path) -> Path:
    """A bundle of voice `v` described as 'new', to import over an existing 'old' one."""
    src = VoiceRegistry(tmp_path / "src")
    clone_voice(src, "v", "new")
    return src.export_zip("v", tmp_path / "v.zip")


IMPORT = "from audiobox.voices import VoiceRegistry; VoiceRegistry({root!r}).import_zip({zip!r}, force=True)"


@pytest.mark.parametrize(
    "module,name,nth,expect",
    [
        ("audiobox.voices", "write_new_file", 2, "old"),  # mid-way through unpacking into staging
        ("audiobox.fsutil", "_fsync_dir", 1, "old"),  # voice.json of the staging folder written
        ("os", "replace", 3, "old"),  # old voice moved to .trash-*, new one not yet in place
        ("shutil", "rmtree", 1, "new"),  # new voice in place, old copy not yet removed
    ],
    ids=["unpacking", "staged", "between-renames", "after-install"],
)
def test_import_replace_killed_anywhere_loses_nothing(tmp_path, exported, module, name, nth, expect):
    registry = VoiceRegistry(tmp_path / "voices")
    clone_voice(registry, "v", "old")
    clone_voice(registry, "other", "other")
    body = IMPORT.format(root=str(registry.root), zip=str(exported))
    run_killed(module, name, nth, body)
    voices, problems = registry.list()  # the next registry open rolls back or forward
    assert [v.slug for v in voices] == ["other", "v"] and not problems
    assert registry.get("v").data["description"] == expect
    assert leftovers(registry.root) == []
    registry.import_zip(exported, force=True)  # and the registry works as before
    assert registry.get("v").data["description"] == "new" and leftovers(registry.root) == []


def test_killed_prompt_write_is_cleaned_by_the_next_write(tmp_path):
    registry = VoiceRegistry(tmp_path / "voices")
    clone_voice(registry, "v", "old")
    body = (
        "from audiobox.voices import VoiceRegistry\n"
        "import numpy as np\nfrom audiobox.tts.prompts import ClonePrompt\n"
        f"r = VoiceRegistry({str(registry.root)!r})\n"
        "p = ClonePrompt(np.ones(8, np.float32), None, None, True, {'ref': 'm', 'tag': 'base'})\n"
        "r.add_prompt('v', p)\n"
    )
    run_killed("os", "replace", 1, body)  # the prompt's tensor file written, not yet renamed
    assert [Path(p).name.startswith(".partial-base_xvec_v1") for p in leftovers(registry.root)] == [True]
    registry.update("v", lambda record, _dir: None)
    assert leftovers(registry.root) == [] and len(registry.get("v").prompts) == 1


WRITER = """
import sys
sys.path.insert(0, {lib!r})
import numpy as np
from audiobox.audio import write_audio
samples = np.full(48000, {value}, dtype=np.float32)
for _ in range(25):
    write_audio({path!r}, samples, 24000)
"""


def test_eight_concurrent_writers_of_one_file_never_mix(tmp_path):
    target = tmp_path / "out" / "take.wav"
    values = [round(0.1 * (k + 1), 1) for k in range(8)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER.format(lib=LIB, value=v, path=str(target))], stderr=subprocess.PIPE
        )
        for v in values
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    data, rate = sf.read(target, dtype="float32")
    assert rate == 24000 and len(data) == 48000
    assert (
        len(set(np.round(data, 3).tolist())) == 1 and round(float(data[0]), 1) in values
    )  # one writer's take
    assert sorted(p.name for p in target.parent.iterdir()) == ["take.wav"]


@pytest.mark.parametrize("span", [None, (5.0, 10.0)], ids=["whole", "range"])
def test_a_killed_download_leaves_nothing_after_the_next_run(tmp_path, loopback_media, span):
    from audiobox.sources import TrimRange, download_source

    url = f"{loopback_media}/podcast.wav"
    span_arg = "" if span is None else f", span=TrimRange{span!r}"
    body = (
        f"import os, signal, sys\nsys.path.insert(0, {LIB!r})\n"
        "from audiobox.sources import TrimRange, download_source\n"
        f"download_source({url!r}, __import__('pathlib').Path({str(tmp_path / 'dl')!r}){span_arg},"
        " progress=lambda event: event.done and os.kill(os.getpid(), signal.SIGKILL))\n"
    )
    expect_killed(body)
    media_files = [p for p in (tmp_path / "dl").rglob("*") if p.suffix == ".wav"]
    assert all(".partial-" in str(p) for p in media_files)  # only the partial download, no final file
    assert [p.name for p in (tmp_path / "dl").rglob(".partial-*")]  # the kill left a partial download
    media = download_source(url, tmp_path / "dl", span=TrimRange(*span) if span else TrimRange())
    assert media.path.is_file() and not list((tmp_path / "dl").rglob(".partial-*"))


def test_a_download_is_on_disk_before_its_name_is(tmp_path, loopback_media, monkeypatch):
    """The finished media is fsynced, then renamed into the cache (a crash never leaves a final name
    over data still in the page cache), like every file the project writes."""
    import audiobox.fsutil as fsutil
    from audiobox.sources import download_source

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", f"{src} -> {dst}"))
        return real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    monkeypatch.setattr(fsutil.os, "replace", replace)
    media = download_source(f"{loopback_media}/podcast.mp3", tmp_path / "dl")
    (moved,) = [
        i for i, (kind, what) in enumerate(events) if kind == "replace" and what.endswith(str(media.path))
    ]
    source = events[moved][1].split(" -> ")[0]
    assert ("fsync", source) in events[:moved]


def test_no_file_is_written_around_the_atomic_helper():
    """Every file lib/ writes goes through audiobox.fsutil (unique temp, fsync, rename): writers that
    need a path write into `with atomic_path(target) as tmp`. The only exceptions are appended logs
    and the lock file that holds its owner's line."""
    import re

    lib = Path(LIB) / "audiobox"
    plain = re.compile(r"\.write_(text|bytes)\(|open\([^)]*[\"'][wax]b?\+?[\"']|shutil\.copy|sf\.write\(")
    allowed = {"fsutil.py", "cloud/vastapi.py", "cloud/lifecycle.py"}  # the helper; append-only log; lock
    found = [
        f"{path.relative_to(lib)}:{number}: {line.strip()}"
        for path in lib.rglob("*.py")
        if str(path.relative_to(lib)) not in allowed
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if plain.search(line) and not re.search(r"\btmp\b", line)  # into an atomic_path temp: the helper's
    ]
    assert found == []


def test_one_file_mode_for_everything_following_the_umask(tmp_path):
    old = os.umask(0o002)  # a group-shared cache
    try:
        wav = write_audio(tmp_path / "out" / "a.wav", np.zeros(100, np.float32), 24000)
        registry = VoiceRegistry(tmp_path / "voices")
        voice = clone_voice(registry, "v", "x")
    finally:
        os.umask(old)
    files = [wav, voice.dir / "voice.json", *(voice.dir / "prompts").iterdir()]
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o664"}
    assert {oct(p.stat().st_mode & 0o777) for p in (voice.dir, voice.dir / "prompts")} == {"0o775"}
