"""Profile one benchmark cell and print where its client CPU goes.

    python benchmarks/profile_cell.py finalpos-async retrieve            # cProfile, window only
    python benchmarks/profile_cell.py finalpos-sync retrieve --py-spy    # sampling, all threads

cProfile measures only the timed window but adds overhead to every Python call (so it
overstates pure-Python layers) and sees one thread. `--py-spy` samples the whole process
(start-up and warm-up included, so use a large `--n`) at low overhead and sees every thread;
it needs `py-spy` on PATH (`pip install py-spy`). Both print the functions with the largest own
time and the SDK modules with the largest inclusive share.
"""

from __future__ import annotations

import argparse
import collections
import pstats
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import peer_client  # noqa: E402  (benchmarks/ is not a package)
import server  # noqa: E402


def _cell_cmd(args: argparse.Namespace, url: str, peer: str | None) -> list[str]:
    cmd = [sys.executable, str(BENCH_DIR / "variants.py"), args.variant, args.operation]
    cmd += ["--url", url, "--n", str(args.n), "--warmup", str(max(1, args.n // 10))]
    if peer:
        cmd += ["--peer", peer]
    return cmd


def _print_cprofile(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values())
    print(f"cProfile: {total:.3f} s of profiled time in the window")
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    print(f"{'own %':>6} {'cum %':>6} {'calls':>9}  function")
    for (file, line, name), (_cc, calls, tt, ct, _callers) in rows:
        where = _short(file)
        print(f"{tt / total:6.1%} {ct / total:6.1%} {calls:9d}  {name} ({where}:{line})")
    by_module: collections.Counter[str] = collections.Counter()
    for (file, _line, _name), (_cc, _nc, tt, _ct, _callers) in raw.items():
        by_module[_module_of(file)] += tt
    print("\nown time by module:")
    for module, tt in by_module.most_common(top):
        print(f"{tt / total:6.1%}  {module}")


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _module_of(file: str) -> str:
    short = _short(file)
    if short.startswith(("finalpos_async/", "finalpos_sync/")):
        return short
    return short.split("/", 1)[0] if "/" in short else short


def _print_pyspy(path: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    sdk_inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        for module in {f.split("(", 1)[-1].split(":", 1)[0] for f in frames}:
            if "finalpos_" in module:
                sdk_inclusive[module] += count
    print(f"py-spy: {total} samples")
    print(f"{'own %':>6}  function")
    for frame, count in own.most_common(top):
        print(f"{count / total:6.1%}  {frame}")
    print(f"\n{'incl %':>6}  function")
    for frame, count in inclusive.most_common(top):
        print(f"{count / total:6.1%}  {frame}")
    print(f"\n{'incl %':>6}  SDK module")
    for module, count in sdk_inclusive.most_common(top):
        print(f"{count / total:6.1%}  {module}")


def main() -> None:
    """Command-line entry: profile one cell against the benchmark server."""
    parser = argparse.ArgumentParser(description="Profile one benchmark cell.")
    parser.add_argument("variant")
    parser.add_argument("operation", choices=("retrieve", "create", "list"))
    parser.add_argument("--n", type=int, default=4000, help="operations (walks for list)")
    parser.add_argument("--py-spy", action="store_true", help="sample with py-spy instead")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--server", choices=("auto", "nginx", "aiohttp"), default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="finalpos-profile-") as tmp_text:
        tmp = Path(tmp_text)
        peer = None
        if args.variant.startswith("generated"):
            generated = peer_client.generate(
                REPO / "finalpos_async/spec/finalpos-openapi.json", tmp
            )
            if generated.path is None:
                sys.exit(generated.reason)
            peer = str(generated.path)
        with server.run_server(args.server) as srv:
            cmd = _cell_cmd(args, srv.url, peer)
            out = tmp / "profile.out"
            if args.py_spy:
                spy = shutil.which("py-spy") or shutil.which(
                    "py-spy", path=str(Path(sys.executable).parent)
                )
                if spy is None:
                    sys.exit("py-spy is not on PATH (pip install py-spy)")
                spy_cmd = [spy, "record", "--format", "raw", "--rate", "250", "--threads"]
                cmd = [*spy_cmd, "--nonblocking", "-o", str(out), "--", *cmd]
            else:
                cmd += ["--profile", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
            print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr)
        if not out.exists():
            sys.exit(f"no profile written: {proc.stderr.strip()[-500:]}")
        if args.py_spy:
            _print_pyspy(out, args.top)
        else:
            _print_cprofile(out, args.top)


if __name__ == "__main__":
    main()
