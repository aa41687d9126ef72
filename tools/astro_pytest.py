"""`astro dev pytest` without Docker: the project's tests as they run inside the built image.

The Astro CLI builds the image, then runs `docker create --env-file .env <image> pytest tests/`: the
container holds the build context less `.dockerignore` (so no `airflow_settings.yaml`, `.venv`,
`node_modules`), the image's Python and packages (Airflow plus requirements.txt, none of the dev tools),
the variables of `.env` and no compose network. This reproduces that with plain processes:

1. the project is copied to a temporary directory less what `.dockerignore` excludes (Docker's rules);
2. a virtualenv with the image's Python (from the Dockerfile's FROM line) gets only
   `apache-airflow==<the build's Airflow>`, requirements.txt and pytest, cached by a hash of those
   inputs, so a second run starts at once;
3. `.env.example` is read as the `.env` a user copies from it, the way `docker create --env-file` reads
   a file (no quote processing, `#` lines are comments), over a bare environment without CI;
4. `pytest tests/` runs from the copy's root.

What this cannot reproduce: Astronomer's own build of Airflow (`3.3.2+astro.N`, here PyPI's 3.3.2), the
packages the Runtime image adds (its providers, its pytest), the dbt venv and manifest the Dockerfile
builds, and the image's OS. The pytest pin is the one in requirements-dev.lock (read from there, not
installed from it).

    make astro-pytest                      # or: python -m tools.astro_pytest [-- pytest args]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.astro_image import PROJECT_ROOT, runtime_image

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xcom-backends" / "astro-pytest"
ENV_FILE = ".env.example"
# Bounded: a hung test must end the run, not CI's clock.
PYTEST_TIMEOUT_S = 1800
INSTALL_TIMEOUT_S = 900


class AstroPytestError(RuntimeError):
    """Something the reproduction needs is missing or malformed; the message names it."""


# --- .dockerignore, as Docker reads it ------------------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    text: str
    regex: re.Pattern[str]
    exclusion: bool


def _translate(pattern: str) -> str:
    """Docker's pattern syntax (Go's filepath.Match plus `**`) as a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")  # any number of directories, none included
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise AstroPytestError(f".dockerignore: unclosed '[' in pattern {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "^" + re.sub(r"([\\\]])", r"\\\1", body[1:])
            else:
                body = re.sub(r"([\\\]^])", r"\\\1", body)
            out.append(f"[{body}]")
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def parse_dockerignore(text: str) -> list[IgnorePattern]:
    """Patterns in file order; like Docker, each is cleaned (leading `/`, `./` and trailing `/` dropped)."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        cleaned = os.path.normpath(line.lstrip("/")).replace(os.sep, "/")
        if cleaned in {".", ""}:
            continue
        patterns.append(IgnorePattern(cleaned, re.compile(_translate(cleaned)), exclusion))
    return patterns


def is_ignored(path: str, patterns: Sequence[IgnorePattern]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        if any(pattern.regex.fullmatch(candidate) for candidate in candidates):
            ignored = not pattern.exclusion
    return ignored


def copy_build_context(source: Path, target: Path) -> int:
    """Copy `source` into `target` less what its .dockerignore excludes; returns the number of files."""
    dockerignore = source / ".dockerignore"
    patterns = parse_dockerignore(dockerignore.read_text(encoding="utf-8")) if dockerignore.is_file() else []
    # With an exclusion pattern a file inside an ignored directory may come back, so nothing is pruned.
    prune = not any(pattern.exclusion for pattern in patterns)
    copied = 0
    for directory, dirnames, filenames in os.walk(source):
        relative_dir = Path(directory).relative_to(source)
        kept = []
        for name in sorted(dirnames):
            relative = (relative_dir / name).as_posix()
            if prune and is_ignored(relative, patterns):
                continue
            if (Path(directory) / name).is_symlink():
                filenames.append(name)  # copied as a link below, not followed
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            relative = (relative_dir / name).as_posix()
            if is_ignored(relative, patterns):
                continue
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            origin = Path(directory) / name
            if origin.is_symlink():
                destination.symlink_to(os.readlink(origin))
            else:
                shutil.copy2(origin, destination)
            copied += 1
    return copied


# --- the env file, as `docker create --env-file` reads it -----------------------------------------------


def parse_env_file(text: str, source: str, host: Mapping[str, str]) -> dict[str, str]:
    """Docker's env-file format: `NAME=value` taken literally (quotes included), `#` lines and blank
    lines skipped, a bare `NAME` copied from the host's environment when set there."""
    variables = {}
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        name, has_value, value = line.partition("=")
        name = name.lstrip(" \t")
        if not name:
            raise AstroPytestError(f"{source}:{number}: no variable name before '=': {raw!r}")
        if re.search(r"\s", name):
            raise AstroPytestError(f"{source}:{number}: variable {name!r} contains whitespace")
        if has_value:
            variables[name] = value
        elif name in host:
            variables[name] = host[name]
    return variables


# --- the image's Python and packages ---------------------------------------------------------------------


def find_python(minor: str) -> Path:
    """An interpreter of the image's Python version on this machine."""
    configured = os.environ.get("ASTRO_PYTEST_PYTHON")
    candidates = [configured] if configured else []
    candidates += [shutil.which(f"python{minor}") or ""]
    candidates += sorted(
        glob.glob(str(Path.home() / f".pyenv/versions/{minor}.*/bin/python{minor}")), reverse=True
    )
    for candidate in filter(None, candidates):
        result = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip() == minor:
            return Path(candidate)
    raise AstroPytestError(
        f"the image runs Python {minor} ({runtime_image().image}) and no python{minor} was found on PATH or"
        f" under ~/.pyenv/versions; install it or set ASTRO_PYTEST_PYTHON to one"
    )


def pytest_pin(root: Path = PROJECT_ROOT) -> str:
    lock = (root / "requirements-dev.lock").read_text(encoding="utf-8")
    match = re.search(r"^pytest==(\S+)", lock, re.MULTILINE)
    if not match:
        raise AstroPytestError("requirements-dev.lock pins no pytest (`pytest==X`); run `make lock`")
    return f"pytest=={match.group(1)}"


def uv_executable() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise AstroPytestError("uv not found: run `make setup` (it installs uv into .venv)")
    return found


def image_venv(root: Path = PROJECT_ROOT) -> Path:
    """The image's packages in a virtualenv of the image's Python, reused while its inputs are unchanged."""
    image = runtime_image(root / "Dockerfile")
    python = find_python(image.python)
    requirements = root / "requirements.txt"
    packages = [f"apache-airflow=={image.airflow}", pytest_pin(root)]
    uv = uv_executable()
    python_build = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    uv_version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256(
        "\0".join([python_build, uv_version, *packages, requirements.read_text(encoding="utf-8")]).encode()
    ).hexdigest()[:16]
    venv = CACHE_ROOT / f"venv-{key}"
    done = venv / ".installed"
    if done.is_file():
        print(f"astro-pytest: reusing {venv} (Python {image.python}, inputs unchanged)", flush=True)
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    print(f"astro-pytest: building {venv}: Python {image.python}, {' '.join(packages)}, -r requirements.txt")
    started = time.monotonic()
    subprocess.run([uv, "venv", "--quiet", "--python", str(python), str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            *packages,
            "-r",
            str(requirements),
        ],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    done.write_text(f"{' '.join(packages)}\n", encoding="utf-8")
    print(f"astro-pytest: venv ready in {time.monotonic() - started:.0f} s", flush=True)
    # Older venvs belong to inputs that no longer exist.
    for stale in CACHE_ROOT.glob("venv-*"):
        if stale != venv:
            shutil.rmtree(stale, ignore_errors=True)
    return venv


# --- the run -------------------------------------------------------------------------------------------


def container_env(venv: Path, project: Path, home: Path, env_file: Path) -> dict[str, str]:
    """The container's environment: the image's basics, then the env file; nothing else of this shell."""
    base = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        # The Runtime image's AIRFLOW_HOME is the project directory (/usr/local/airflow).
        "AIRFLOW_HOME": str(project),
    }
    variables = parse_env_file(env_file.read_text(encoding="utf-8"), str(env_file), os.environ)
    return {**base, **variables}


def run(pytest_args: Sequence[str], keep: bool = False, root: Path = PROJECT_ROOT) -> int:
    venv = image_venv(root)
    workdir = Path(tempfile.mkdtemp(prefix="astro-pytest-"))
    try:
        project, home = workdir / "airflow", workdir / "home"
        home.mkdir()
        files = copy_build_context(root, project)
        print(f"astro-pytest: build context less .dockerignore: {files} files in {project}", flush=True)
        env = container_env(venv, project, home, root / ENV_FILE)
        command = [str(venv / "bin" / "pytest"), "tests/", *pytest_args]
        print(f"astro-pytest: {' '.join(command)} (env: {ENV_FILE} as .env, CI unset)", flush=True)
        started = time.monotonic()
        try:
            result = subprocess.run(command, cwd=project, env=env, timeout=PYTEST_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            print(f"astro-pytest: pytest did not finish within {PYTEST_TIMEOUT_S} s", flush=True)
            return 1
        print(f"astro-pytest: pytest exited {result.returncode} after {time.monotonic() - started:.0f} s")
        return result.returncode
    finally:
        if keep:
            print(f"astro-pytest: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the copied project for a look afterwards")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest after `tests/`")
    args = parser.parse_args(argv)
    try:
        return run(args.pytest_args, keep=args.keep)
    except AstroPytestError as error:
        print(f"astro-pytest: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
