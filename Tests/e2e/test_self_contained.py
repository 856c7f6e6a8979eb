"""The repository tests itself alone: nothing under Tests/, scripts/, benchmarks/, Fuzz/ or .ci/
reads a sibling `shared/` directory (../shared or a path built to it), which a clone of this
repository does not have. The vectors and the seed's client the tests need are kept in the tree
(Tests/RoughtimeTests/Vectors/, Tests/e2e/seed_client.py)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("Tests", "scripts", "benchmarks", "Fuzz", ".ci")

# A written path into shared/: `../shared`, `/shared/...` or `"shared/...`, and `shared` as a
# path component on its own, as pathlib (`/ "shared"`) and Foundation
# (`appendingPathComponent("shared")`) build it. `gcc -shared` and the word in prose do not match.
REFERENCE = re.compile(
    r"""\.\./shared\b"""
    r"""|(?<![\w.-])shared/"""
    r"""|/\s*["']shared["']"""
    r"""|["']shared["']\s*/"""
    r"""|PathComponent\(\s*["']shared\b"""
)


def referring_lines():
    """(path, line number, line) for each line of a scanned text file that refers to shared/;
    this file, which spells the patterns out, is left out."""
    me = Path(__file__).resolve()
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file() or path.resolve() == me:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # binary: corpora, vectors
            for number, line in enumerate(text.splitlines(), 1):
                if REFERENCE.search(line):
                    yield path.relative_to(REPO), number, line.strip()


def test_nothing_refers_to_a_sibling_shared_directory():
    found = [f"{path}:{number}: {line}" for path, number, line in referring_lines()]
    assert not found, "refers to ../shared, which a clone does not have:\n" + "\n".join(found)


def test_the_pattern_catches_what_the_tests_used_to_read():
    for line in ('SEED = REPO.parent / "shared" / "seed" / "seed_client.py"',
                 '.deletingLastPathComponent().appendingPathComponent("shared/vectors/roughtime")',
                 'python3 ../shared/seed/seed_client.py 127.0.0.1 8080',
                 'cp /work/shared/vectors/roughtime/appb.json .'):
        assert REFERENCE.search(line), line
    for line in ('gcc -O2 -shared -fPIC -o "$tmp/malloc_counter.so"', "answered from shared batches",
                 "var shared: (server: TockServer, fd: Int32)?", "Test support shared by the test targets"):
        assert not REFERENCE.search(line), line
