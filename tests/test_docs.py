"""The documents name real things: every test a guarantee cites exists, and every
mutation of tests/mutations.py names a guarantee's tests."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def _cited(doc: str) -> list[tuple[str, str | None]]:
    return CITED.findall((ROOT / doc).read_text())


@pytest.mark.parametrize("doc", ["docs/guarantees.md", "README.md"])
def test_every_cited_test_exists(doc):
    cited = _cited(doc)
    assert doc == "README.md" or len(cited) > 50
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert not name or re.search(rf"^def {name}\(", source, re.M), f"{doc}: {path}::{name}"


def test_every_mutation_names_existing_tests():
    import mutations

    for mutation in mutations.MUTATIONS:
        assert (ROOT / mutation.path).is_file(), mutation.name
        for test in mutation.tests:
            path, _, name = test.partition("::")
            assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), (mutation.name, test)
