"""Archives (issue 28): files/s of ``stmt prepare`` and ``stmt classify`` on a folder of
recorded clips at several ``--workers``, in one run (a benchmark, not a test).

The folder: ``--bandai`` Bandai-Namco BVH takes and ``--hdm05`` HDM05 ASF/AMC clips
(each with its performer's ``.asf``), picked evenly from the sorted files of a realmix
checkout (``--data``, as ``datasets/realmix/README.md`` clones it) and linked into a
work folder (nothing is written under ``--data``). Then, for each ``--workers`` value,
in a fresh interpreter each (interpreter start, torch import and listing included, as a
user runs them):

    stmt prepare --dataset realmix --data CLIPS --out CACHE --workers N --quiet
    stmt classify CLIPS --recursive --ckpt CKPT --workers N --out PRED.csv

Reported per run: wall time, files/s, the speed-up over ``--workers 0``, CPU time of
the process and its workers, peak memory of the whole process tree (the sum of the
processes' PSS, sampled every 0.2 s: pages the forked workers share with the command
are counted once), the peak RSS of the command's process and of its largest worker,
and the 1-minute load average before the run. It also checks that every run wrote the
same cache (sha256 of each file) and the same predictions.

    python benchmarks/bm_archive.py --data /path/to/realmix --workers 0 1 2 --repeat 3

With ``--repeat R`` the settings take turns R times (round 1: every setting, round 2:
every setting, ...) and the table shows each setting's run of median wall time, with
every round's wall time and the CPU time the hypervisor stole meanwhile (on a shared VM
a slow spell would otherwise fall on one setting and bend its ratio), and the speed-up
round by round (each setting's wall time over ``--workers 0``'s of the same round) with
the median of those. The default folder, 560 + 240 clips, is a workload of 30+ s at
``--workers 0`` on the 2-core development box. On a machine with more cores:

    python benchmarks/bm_archive.py --data data/realmix --workers 0 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE_FILES = ("vertices.npy", "centres.npy", "bounds.npy", "template.npz", "index.json")


def pick(files: list[Path], count: int) -> list[Path]:
    """``count`` of ``files`` spread evenly over the sorted list."""
    files = sorted(files)
    if count >= len(files):
        return files
    return [files[i * len(files) // count] for i in range(count)]


def link_clips(data: Path, out: Path, bandai: int, hdm05: int) -> int:
    """Link the picked clips (and the HDM05 performers' .asf files) under ``out``."""
    chosen = pick(list(data.rglob("dataset-[12]_*.bvh")), bandai)
    for f in chosen:
        (out / "bandai").mkdir(parents=True, exist_ok=True)
        (out / "bandai" / f.name).symlink_to(f.resolve())
    amc = pick([f for f in data.rglob("HDM_*_120.amc") if "first" not in f.name], hdm05)
    for f in amc:
        folder = out / "hdm05" / f.parent.relative_to(f.parents[2])  # train|test/<class>
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f.name).symlink_to(f.resolve())
        asf = f.with_name(f"HDM_{f.name.split('_')[1]}.asf")
        if not (folder / asf.name).exists():
            (folder / asf.name).symlink_to(asf.resolve())
    return len(chosen) + len(amc)


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += [p for p, pp in parents.items() if pp == pid]
    return tree


def _field(path: str, name: str) -> int:
    """Bytes of the ``name`` line (in kB) of a /proc file, 0 when gone."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _steal() -> float:
    """Seconds of CPU time the hypervisor took from this machine's cores so far (/proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def run(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; wall and CPU time, peak PSS of its process tree, peak RSS of one process,
    and the CPU time stolen from the machine meanwhile (a noisy neighbour on a VM)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    stolen = _steal()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0, 0, 0]  # the tree's PSS; peak RSS (VmHWM) of the command, of one worker

    def sample() -> None:
        while proc.poll() is None:
            tree = _tree(proc.pid)
            peak[0] = max(peak[0], sum(_field(f"/proc/{p}/smaps_rollup", "Pss:") for p in tree))
            rss = [_field(f"/proc/{p}/status", "VmHWM:") for p in tree]
            peak[1] = max(peak[1], rss[0])
            peak[2] = max(peak[2], 0, *rss[1:])
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return {"wall": wall, "cpu": cpu, "pss": peak[0], "rss": peak[1], "worker": peak[2],
            "load": load, "status": proc.returncode, "steal": _steal() - stolen}  # fmt: skip


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table(rows: dict[tuple[str, int], list[dict]], files: int) -> str:
    """One line per command and --workers: the run of median wall time of its rounds."""
    head = ("| command | --workers | wall s (median; every round) | files/s | vs --workers 0 | "
            "vs --workers 0, round by round: median (every round) | CPU s | peak memory, all "
            "processes (PSS) | peak RSS, command | peak RSS, a worker | load before | "
            "stolen CPU s |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    median = {
        k: sorted(runs, key=lambda r: r["wall"])[(len(runs) - 1) // 2] for k, runs in rows.items()
    }
    for (cmd, n), r in median.items():
        base = median.get((cmd, 0))
        speed = f"{base['wall'] / r['wall']:.2f}x" if base else "-"
        walls = ", ".join(f"{x['wall']:.1f}" for x in rows[(cmd, n)])
        lines.append(
            f"| {cmd} | {n} | {r['wall']:.1f} ({walls}) | {files / r['wall']:.2f} | {speed} | "
            f"{paired(rows.get((cmd, 0)), rows[(cmd, n)])} | "
            f"{r['cpu']:.1f} | {r['pss'] / 1e9:.2f} GB | {r['rss'] / 1e9:.2f} GB | "
            f"{r['worker'] / 1e9:.2f} GB | {r['load']:.2f} | {r['steal']:.1f} |"
        )
    return "\n".join(lines)


def paired(base: list[dict] | None, runs: list[dict]) -> str:
    """The speed-up over ``--workers 0`` within each round (the two runs minutes apart,
    so a slow spell of the shared machine bends both): their median and each."""
    if not base:
        return "-"
    ratios = [b["wall"] / r["wall"] for b, r in zip(base, runs)]
    each = ", ".join(f"{x:.2f}" for x in ratios)
    return f"{sorted(ratios)[(len(ratios) - 1) // 2]:.2f}x ({each})"


def _one(cmd, n, rnd, clips, work, ckpt, stmt, env) -> tuple[dict, tuple]:
    """One timed run of ``cmd`` with ``--workers n`` into fresh outputs; its outputs' sha256."""
    if cmd == "prepare":
        out = work / f"cache-w{n}-r{rnd}"
        argv = [
            "prepare",
            "--dataset",
            "realmix",
            "--data",
            str(clips),
            "--out",
            str(out),
            "--quiet",
        ]
    else:
        out = work / f"pred-w{n}-r{rnd}.csv"
        argv = ["classify", str(clips), "--recursive", "--ckpt", str(ckpt), "--out", str(out)]
    r = run([*stmt, *argv, "--workers", str(n)], env)
    if cmd == "prepare":
        digests = tuple(digest(out / f) for f in CACHE_FILES)
    else:
        digests = (digest(out),)
    return r, digests


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="realmix checkout (Bandai, HDM05)")
    p.add_argument("--bandai", type=int, default=560, help="Bandai-Namco takes")
    p.add_argument("--hdm05", type=int, default=240, help="HDM05 clips")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ckpt", type=Path, default=ROOT / "checkpoints" / "stmt-realmix.ckpt")
    p.add_argument("--commands", nargs="+", default=["prepare", "classify"])
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    p.add_argument("--repeat", type=int, default=1, help="rounds; the table shows the median")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        clips = work / "clips"
        files = link_clips(a.data, clips, a.bandai, a.hdm05)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        stmt = [sys.executable, "-m", "stmt"]
        print(f"{files} clips ({a.bandai} Bandai BVH, {a.hdm05} HDM05 AMC asked) under {clips}")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")  # fmt: skip
        warm = [*stmt, "classify", str(next(clips.rglob("*.bvh"))), "--ckpt", str(a.ckpt)]
        run(warm, env)  # the template and rig caches filled, the files in the page cache
        rows: dict[tuple[str, int], list[dict]] = {}
        outputs: dict[str, set] = {}
        for rnd in range(a.repeat):  # rounds interleaved, so a slow spell hits every setting
            for cmd in a.commands:
                for n in a.workers:
                    r, digests = _one(cmd, n, rnd, clips, work, a.ckpt, [*stmt], env)
                    print(f"round {rnd + 1}: {cmd} --workers {n}: {r['wall']:.1f} s "
                          f"(exit {r['status']}, {r['steal']:.1f} s stolen)", flush=True)  # fmt: skip
                    rows.setdefault((cmd, n), []).append(r)
                    outputs.setdefault(cmd, set()).add(digests)
        print()
        print(table(rows, files))
        for cmd, seen in outputs.items():
            same = "the same" if len(seen) == 1 else f"{len(seen)} DIFFERENT"
            print(f"{cmd}: every --workers wrote {same} output (sha256)")


if __name__ == "__main__":
    main()
