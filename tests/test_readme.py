"""The README's example runs as written (shortened to a few steps)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    section = text[text.index("## Example"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "ks.sparsify" in code and "model.fit" in code
    code = code.replace("epochs=2,", "epochs=1, steps_per_epoch=20,")
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    report = namespace["ks"].sparsity_report(namespace["model"])
    assert abs(report[-1]["sparsity"] - 0.9) < 1e-3
    assert "SparseModel" not in type(namespace["plain"]).__name__
