"""Check that every package the image installs claims the image's Python, on both CPU architectures.

The image installs two sets: Airflow's environment (`apache-airflow==<the build's Airflow>` plus
requirements.txt) and the dbt venv (dbt-requirements.lock). Each set is resolved with uv for the image's
Python on manylinux x86_64 and aarch64, wheels only, as the image build would install it. Then each
pinned package's wheel metadata is read and the package is flagged when

- its Requires-Python excludes the image's Python, or
- it is one of this project's own pins (requirements.txt, every line of dbt-requirements.lock) and its
  trove classifiers list Python 3 minor versions but not the image's, although the wheel was uploaded
  after that Python's first release: its maintainers could have claimed it and did not (dbt-core 1.11
  lists 3.10-3.13 and fails at import on 3.14).

Classifier gaps that are no such evidence are printed as notes (`--notes` lists them): a wheel older
than the Python cannot name it (text-unidecode 1.3, from 2019, lists 3.4-3.7), and the packages Airflow
and the providers pull in are theirs to vouch for: the image already holds Astronomer's build of
Airflow for each of its Pythons. A Requires-Python that excludes the image's Python always fails.

Wheel metadata comes from the package index: the simple index (PEP 691 JSON) names the files and their
hashes, and the wheel's METADATA is read from the file itself, since the index here serves no separate
`.metadata` files (PEP 658) and ignores range requests. What was read is cached by the wheel's sha256, so
only new pins download anything.

    python -m tools.image_deps                    # the Dockerfile's Python, x86_64 and aarch64
    python -m tools.image_deps --python 3.14      # what a move to another Python would meet
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from tools.astro_image import PROJECT_ROOT, runtime_image

# Runtime 3 images are built on Debian; manylinux_2_28 wheels (glibc 2.28) are the newest tag every
# package here publishes and an older floor than the image's glibc, so a wheel this accepts installs
# there. A package that ships only newer manylinux wheels is flagged rather than assumed to fit.
GLIBC = (2, 28)
ARCHITECTURES = ("x86_64", "aarch64")
DEFAULT_INDEX = "https://pypi.org/simple"
TIMEOUT_S = 120
NETWORK_ATTEMPTS = 4
DOWNLOAD_WORKERS = 6
CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xcom-backends" / "wheel-metadata"
)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")
# First final release of each Python the Runtime images ship (python.org release dates).
PYTHON_RELEASED = {"3.12": "2023-10-02", "3.13": "2024-10-07", "3.14": "2025-10-07"}
_MINOR = re.compile(r"^Programming Language :: Python :: 3\.(\d+)$")


@dataclass(frozen=True)
class PackageSet:
    name: str
    requirements: tuple[str, ...]
    # Whose classifiers must claim the image's Python; None: every pin of the set.
    own_pins: frozenset[str] | None = None


@dataclass(frozen=True)
class WheelMetadata:
    filename: str
    requires_python: str | None
    python_minors: tuple[str, ...]
    uploaded: str = ""


@dataclass(frozen=True)
class Finding:
    package_set: str
    architecture: str
    package: str
    problem: str
    # A note is printed but does not fail the check.
    note: bool = False

    def __str__(self) -> str:
        return f"{self.package_set} on {self.architecture}: {self.package}: {self.problem}"


class PackageIndexError(RuntimeError):
    """The package index did not answer as expected."""


def requirement_names(path: Path) -> frozenset[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line.split("#", 1)[0].strip()):
            names.add(canonicalize_name(match.group(1)))
    return frozenset(names)


def package_sets(root: Path = PROJECT_ROOT) -> list[PackageSet]:
    airflow = runtime_image(root / "Dockerfile").airflow
    requirements = root / "requirements.txt"
    return [
        PackageSet(
            "airflow (requirements.txt)",
            (f"apache-airflow=={airflow}", f"-r {requirements}"),
            requirement_names(requirements) | {"apache-airflow"},
        ),
        PackageSet("dbt venv (dbt-requirements.lock)", (f"-r {root / 'dbt-requirements.lock'}",)),
    ]


def platform_name(architecture: str) -> str:
    return f"{architecture}-manylinux_{GLIBC[0]}_{GLIBC[1]}"


def supported_tags(python: str, architecture: str) -> list[Tag]:
    """Wheel tags pip would accept on the image, most specific first."""
    version = tuple(int(part) for part in python.split("."))
    platforms = [f"manylinux_{GLIBC[0]}_{minor}_{architecture}" for minor in range(GLIBC[1], 4, -1)]
    platforms += [f"manylinux2014_{architecture}"]
    return [*cpython_tags(version, platforms=platforms), *compatible_tags(version, "cp", platforms)]


def uv_executable() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise SystemExit("uv not found: run `make setup` (it installs uv into .venv)")
    return found


def resolve(package_set: PackageSet, python: str, architecture: str) -> tuple[dict[str, str], str | None]:
    """Pins uv resolves for the target, wheels only; on failure, ({}, uv's explanation)."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.in"
        requirements.write_text("\n".join(package_set.requirements) + "\n", encoding="utf-8")
        command = [
            uv_executable(),
            "pip",
            "compile",
            str(requirements),
            "--python-version",
            python,
            "--python-platform",
            platform_name(architecture),
            "--only-binary",
            ":all:",
            "--no-header",
            "--no-annotate",
            "--quiet",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        return {}, result.stderr.strip() or f"uv exited with {result.returncode}"
    pins = {}
    for line in result.stdout.splitlines():
        if match := _PIN.match(line.strip()):
            pins[canonicalize_name(match.group(1))] = match.group(2)
    if not pins:
        return {}, f"uv resolved nothing:\n{result.stdout}"
    return pins, None


def index_url() -> str:
    return (os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


def _get(url: str, accept: str | None = None) -> bytes:
    """The body at url. A lookup or connection that fails for a moment (DNS answering EAI_AGAIN under
    many parallel requests, a reset) is tried again a bounded number of times; an HTTP error answer is
    final, and the last network error is raised with the URL named."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    for attempt in range(1, NETWORK_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.read()
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if attempt == NETWORK_ATTEMPTS:
                raise PackageIndexError(f"{url}: {NETWORK_ATTEMPTS} attempts, last: {error}") from error
            print(f"  {url}: {error}; trying again ({attempt}/{NETWORK_ATTEMPTS})", file=sys.stderr)
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


@cache
def release_files(name: str) -> list[dict]:
    """Every file the index lists for a project (PEP 691 JSON form of the simple index)."""
    body = _get(f"{index_url()}/{name}/", accept="application/vnd.pypi.simple.v1+json")
    try:
        return json.loads(body)["files"]
    except (ValueError, KeyError) as error:
        raise PackageIndexError(f"{index_url()}/{name}/ did not answer in PEP 691 JSON: {error}") from error


def pick_wheel(files: Iterable[dict], name: str, version: str, tags: Sequence[Tag]) -> dict | None:
    """The wheel of name==version an installer would choose on the target (most specific tag first)."""
    rank = {tag: position for position, tag in enumerate(tags)}
    best: tuple[int, dict] | None = None
    for entry in files:
        filename = entry["filename"]
        if not filename.endswith(".whl") or entry.get("yanked"):
            continue
        try:
            wheel_name, wheel_version, _, wheel_tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            # Old uploads predate the filename rules; none of them is a pinned release here.
            continue
        if wheel_name != canonicalize_name(name) or str(wheel_version) != version:
            continue
        position = min((rank[tag] for tag in wheel_tags if tag in rank), default=None)
        if position is not None and (best is None or position < best[0]):
            best = (position, entry)
    return best[1] if best else None


def wheel_metadata(entry: dict) -> WheelMetadata:
    """Requires-Python and the Python 3 minors a wheel's METADATA lists, cached by the file's sha256."""
    sha256 = entry["hashes"]["sha256"]
    cached = CACHE_DIR / f"{sha256}.json"
    if cached.is_file():
        data = json.loads(cached.read_text(encoding="utf-8"))
        return WheelMetadata(
            entry["filename"], data["requires_python"], tuple(data["python_minors"]), _uploaded(entry)
        )
    text = _metadata_file(entry) if entry.get("core-metadata") else _metadata_in_wheel(entry)
    metadata = parse_metadata(entry["filename"], text, _uploaded(entry))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached.write_text(
        json.dumps({"requires_python": metadata.requires_python, "python_minors": metadata.python_minors}),
        encoding="utf-8",
    )
    return metadata


def _checked(name: str, body: bytes, sha256: str) -> bytes:
    if (digest := hashlib.sha256(body).hexdigest()) != sha256:
        raise PackageIndexError(f"{name}: sha256 {digest} is not the index's {sha256}")
    return body


def _metadata_file(entry: dict) -> str:
    # PEP 658/714: the index serves the wheel's METADATA on its own, a few KB instead of the wheel.
    hashes = entry["core-metadata"] if isinstance(entry["core-metadata"], dict) else {}
    body = _get(entry["url"].split("#", 1)[0] + ".metadata")
    if "sha256" in hashes:
        body = _checked(f"{entry['filename']}.metadata", body, hashes["sha256"])
    return body.decode("utf-8", errors="replace")


def _metadata_in_wheel(entry: dict) -> str:
    body = _checked(entry["filename"], _get(entry["url"]), entry["hashes"]["sha256"])
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise PackageIndexError(f"{entry['filename']}: expected one .dist-info/METADATA, found {names}")
        return archive.read(names[0]).decode("utf-8", errors="replace")


def _uploaded(entry: dict) -> str:
    # PEP 700 (simple API 1.1): an ISO timestamp; the date is enough to compare with a release date.
    return (entry.get("upload-time") or "")[:10]


def parse_metadata(filename: str, text: str, uploaded: str = "") -> WheelMetadata:
    message = email.parser.Parser().parsestr(text, headersonly=True)
    minors = sorted(
        {
            f"3.{m.group(1)}"
            for value in message.get_all("Classifier", [])
            if (m := _MINOR.match(value.strip()))
        },
        key=lambda minor: int(minor.split(".")[1]),
    )
    return WheelMetadata(filename, message.get("Requires-Python"), tuple(minors), uploaded)


def problems(metadata: WheelMetadata, python: str, own_pin: bool = True) -> list[tuple[str, bool]]:
    """(why this wheel's metadata does not claim `python`, is it only a note); empty when it does."""
    found = []
    if metadata.requires_python:
        try:
            allowed = SpecifierSet(metadata.requires_python)
        except InvalidSpecifier:
            found.append((f"unreadable Requires-Python {metadata.requires_python!r}", False))
        else:
            # The first patch release stands for the minor version, as uv's --python-version does.
            if not allowed.contains(f"{python}.0", prereleases=True):
                found.append((f"Requires-Python {metadata.requires_python} excludes Python {python}", False))
    if metadata.python_minors and python not in metadata.python_minors:
        listed = (
            f"classifiers list Python {', '.join(metadata.python_minors)} but not {python}"
            f" ({metadata.filename}, uploaded {metadata.uploaded or 'on an unknown date'})"
        )
        released = PYTHON_RELEASED.get(python)
        if released and metadata.uploaded and metadata.uploaded < released:
            found.append((f"{listed}, before Python {python} was released ({released})", True))
        elif not own_pin:
            found.append((f"{listed}; pulled in by Airflow or a provider", True))
        else:
            found.append((listed, False))
    return found


def check_set(package_set: PackageSet, python: str, architecture: str) -> tuple[int, list[Finding]]:
    """(number of pins checked, findings) for one package set on one target."""
    pins, error = resolve(package_set, python, architecture)
    if error:
        return 0, [Finding(package_set.name, architecture, "(resolution)", f"does not resolve:\n{error}")]
    tags = supported_tags(python, architecture)

    def one(item: tuple[str, str]) -> list[Finding]:
        name, version = item
        wheel = pick_wheel(release_files(name), name, version, tags)
        if wheel is None:
            return [Finding(package_set.name, architecture, f"{name}=={version}", "no wheel for this target")]
        return [
            Finding(package_set.name, architecture, f"{name}=={version}", problem, note)
            for problem, note in problems(
                wheel_metadata(wheel), python, package_set.own_pins is None or name in package_set.own_pins
            )
        ]

    with ThreadPoolExecutor(DOWNLOAD_WORKERS) as pool:
        findings = [finding for found in pool.map(one, sorted(pins.items())) for finding in found]
    return len(pins), findings


def main(argv: Sequence[str] | None = None) -> int:
    image = runtime_image()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=image.python, help=f"default: the Dockerfile's ({image.python})")
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES, help="default: both")
    parser.add_argument("--notes", action="store_true", help="list the notes, not only their number")
    args = parser.parse_args(argv)
    print(f"{image.image}: Airflow {image.airflow}; checking Python {args.python}, wheels only")
    targets = [(arch, package_set) for arch in args.arch or ARCHITECTURES for package_set in package_sets()]
    # The resolutions wait on the index, not on this machine: run them side by side.
    try:
        with ThreadPoolExecutor(len(targets)) as pool:
            results = list(pool.map(lambda target: check_set(target[1], args.python, target[0]), targets))
    except PackageIndexError as error:
        print(f"The package index could not be read, so nothing was checked: {error}", file=sys.stderr)
        return 2
    findings: list[Finding] = []
    for (architecture, package_set), (checked, found) in zip(targets, results, strict=True):
        failed = sum(1 for finding in found if not finding.note)
        print(
            f"  {package_set.name} on {platform_name(architecture)}: {checked} pins, "
            f"{failed} flagged, {len(found) - failed} note(s)"
        )
        findings += found
    flagged = [finding for finding in findings if not finding.note]
    for finding in findings:
        if not finding.note or args.notes:
            print(f"{'NOTE' if finding.note else 'FLAGGED'} {finding}")
    if flagged:
        print(f"{len(flagged)} pinned package(s) do not claim Python {args.python}: see FLAGGED above")
        return 1
    print(f"Every pinned package claims Python {args.python} on {', '.join(args.arch or ARCHITECTURES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
