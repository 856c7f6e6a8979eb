"""The repository tests itself alone: nothing under Tests/, scripts/, benchmarks/, Fuzz/ or .ci/
reads the input directory that sits beside the repository during development (its name is
`SIBLING` below), which a clone of this repository does not have. The vectors and the seed's
client the tests need are kept in the tree (Tests/RoughtimeTests/Vectors/, Tests/e2e/seed_client.py).

The name is assembled at run time, so this file holds no path to that directory itself."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("Tests", "scripts", "benchmarks", "Fuzz", ".ci")
SIBLING = "sha" + "red"
NAME = re.escape(SIBLING)

# A written path into the sibling directory: one level up, `/NAME/...` or `"NAME/...`, and NAME as
# a path component on its own, as pathlib (`/ "NAME"`) and Foundation
# (`appendingPathComponent("NAME")`) build it. `gcc -NAME` and the word in prose do not match.
REFERENCE = re.compile(
    rf"""\.\./{NAME}\b"""
    rf"""|(?<![\w.-]){NAME}/"""
    rf"""|/\s*["']{NAME}["']"""
    rf"""|["']{NAME}["']\s*/"""
    rf"""|PathComponent\(\s*["']{NAME}\b"""
)


def referring_lines():
    """(path, line number, line) for each line of a scanned text file that refers to the sibling
    directory."""
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # binary: corpora, vectors
            for number, line in enumerate(text.splitlines(), 1):
                if REFERENCE.search(line):
                    yield path.relative_to(REPO), number, line.strip()


def test_nothing_refers_to_the_sibling_directory():
    found = [f"{path}:{number}: {line}" for path, number, line in referring_lines()]
    assert not found, "refers to a directory beside the repository, which a clone does not have:\n" + "\n".join(found)


def test_the_pattern_catches_what_the_tests_used_to_read():
    s = SIBLING
    for line in (f'SEED = REPO.parent / "{s}" / "seed" / "seed_client.py"',
                 f'.deletingLastPathComponent().appendingPathComponent("{s}/vectors/roughtime")',
                 f'python3 ../{s}/seed/seed_client.py 127.0.0.1 8080',
                 f'cp /work/{s}/vectors/roughtime/appb.json .'):
        assert REFERENCE.search(line), line
    for line in (f'gcc -O2 -{s} -fPIC -o "$tmp/malloc_counter.so"', f"answered from {s} batches",
                 f"var {s}: (server: TockServer, fd: Int32)?", f"Test support {s} by the test targets"):
        assert not REFERENCE.search(line), line
