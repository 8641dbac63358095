"""The `>>>` examples in keras_sparse's docstrings run and give what they show."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import keras_sparse

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(keras_sparse.__path__, prefix="keras_sparse.")
)


def _examples(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [test for test in finder.find(module) if test.examples]


def test_every_module_is_collected():
    # A module that failed to import would silently drop its examples.
    assert "keras_sparse.masks" in MODULES and "keras_sparse.distributions" in MODULES
    with_examples = [name for name in MODULES if _examples(importlib.import_module(name))]
    assert len(with_examples) >= 10, with_examples


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    tests = _examples(module)
    if not tests:
        return
    failures = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    attempted = 0
    for test in tests:
        # Examples may use the usual short names without importing them.
        test.globs = {"np": np, "tf": tf, "ks": keras_sparse, **test.globs}
        attempted += runner.run(test, out=failures.append).attempted
    assert attempted == sum(len(t.examples) for t in tests)
    assert runner.failures == 0, "\n".join(failures)


def test_a_wrong_example_fails():
    # The harness itself: an example whose output differs is reported.
    test = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    runner = doctest.DocTestRunner()
    assert runner.run(test, out=lambda text: None).failed == 1


def test_no_docstring_points_outside_the_repository():
    # Users never have the project's specification file: explain in place.
    root = Path(keras_sparse.__file__).parent
    pattern = re.compile(r"SPEC\b|§|\.\./shared")
    hits = [f"{path.relative_to(root.parent)}:{number}: {line.strip()}"
            for path in sorted(root.rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)]
    assert not hits, "\n".join(hits)


def test_docs_pages_are_linked():
    # docs/README.md indexes every page, and the repository README links the index.
    repo = Path(keras_sparse.__file__).parents[1]
    pages = sorted(p.name for p in (repo / "docs").glob("*.md") if p.name != "README.md")
    index = (repo / "docs" / "README.md").read_text()
    assert pages and all(f"({page})" in index for page in pages), pages
    readme = (repo / "README.md").read_text()
    assert "(docs/README.md)" in readme
    assert all(f"(docs/{page})" in readme for page in pages)
    # Relative links between pages resolve.
    for page in (repo / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), (page.name, target)


@pytest.mark.parametrize("page", sorted(
    p.name for p in (Path(keras_sparse.__file__).parents[1] / "docs").glob("*.md")
    if ">>>" in p.read_text()))
def test_docs_examples(page):
    # The `>>>` examples of the docs pages run too (the ```python blocks are illustrations).
    path = Path(keras_sparse.__file__).parents[1] / "docs" / page
    # A closing ``` fence would read as expected output: blank it.
    text = re.sub(r"^```.*$", "", path.read_text(), flags=re.M)
    test = doctest.DocTestParser().get_doctest(text, {"ks": keras_sparse}, page, str(path), 0)
    failures = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=failures.append)
    assert result.attempted > 0 and result.failed == 0, "\n".join(failures)
