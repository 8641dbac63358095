"""`python -m recipes list`: what each recipe needs and costs, and the studies.

One row per recipe: the dataset and whether it is prepared in the TFDS data
directory (checked on disk, nothing is downloaded), the wall time of the cpu
preset measured on this project's reference machine (`cpu_times.json`, data
filled by running `python -m recipes run NAME --preset cpu`), and the
accelerator budget of the paper preset where the paper or its code states one
(the recipe's `budget`).
"""

import json
import logging
from pathlib import Path

from recipes import configs, launch

CPU_TIMES = Path(__file__).with_name("cpu_times.json")
NOT_MEASURED = "not measured"


def cpu_times(path=CPU_TIMES):
    """`{recipe: {"seconds": ..., ...}}` from `cpu_times.json` (empty if absent)."""
    path = Path(path)
    return json.loads(path.read_text())["recipes"] if path.exists() else {}


def cpu_time(name, times):
    """The measured cpu-preset time of recipe `name` as text, or "not measured"."""
    entry = times.get(name)
    if not entry or entry.get("seconds") is None:
        return NOT_MEASURED
    minutes = entry["seconds"] / 60
    return f"{minutes:.1f} min" if minutes >= 1 else f"{entry['seconds']:.0f} s"


def budget(recipe):
    """The paper preset's stated accelerator budget as text, or "not stated"."""
    stated = recipe.get("budget")
    return stated["value"] if stated and stated.get("value") else "not stated"


def rows(data_dir=None, times=None):
    """One dict per recipe: name, title, dataset, prepared, cpu_time, budget."""
    times = cpu_times() if times is None else times
    # tfds warns about every missing version folder it looks at; the table says it.
    logging.getLogger("absl").setLevel(logging.ERROR)
    prepared = {}
    result = []
    for name in configs.names():
        recipe = configs.get(name)
        dataset = recipe["data"]["name"]
        if dataset not in prepared:
            prepared[dataset] = launch.is_prepared(dataset, data_dir)
        result.append({"name": name, "title": recipe["title"], "dataset": dataset,
                       "prepared": prepared[dataset], "cpu_time": cpu_time(name, times),
                       "budget": budget(recipe)})
    return result


def render(data_dir=None, times=None):
    """The `list` output: one line per recipe (name first); other lines start with "#"."""
    table = rows(data_dir, times)
    header = ("# recipe", "dataset", "cpu preset here", "paper budget", "title")
    lines = [(r["name"], f"{r['dataset']} ({'prepared' if r['prepared'] else 'missing'})",
              r["cpu_time"], r["budget"], r["title"]) for r in table]
    widths = [max(len(x[i]) for x in [header] + lines) for i in range(len(header) - 1)]
    text = ["  ".join(c.ljust(w) for c, w in zip(line[:-1], widths)) + "  " + line[-1]
            for line in [header] + lines]
    root = launch.data_dir_of(data_dir)
    missing = sorted({r["dataset"] for r in table if not r["prepared"]})
    if missing:
        text.append(f"# data directory {root}; prepare a missing dataset with "
                    f"`tfds build NAME --data_dir {root}` or run with --download")
    text.append(f"# cpu preset times: {CPU_TIMES.name} (measured on a shared 2-core CPU "
                "machine; see its notes)")
    return "\n".join(text + study_lines())


def study_lines():
    """One "#" line per study (`python -m recipes study NAME`): kind, presets, title."""
    from recipes import analysis_studies, studies

    found = [(name, "grid", studies.get(name)) for name in studies.names()]
    found += [(name, "analysis", analysis_studies.get(name)) for name in analysis_studies.names()]
    width = max(len(name) for name, _, _ in found)
    return ["# studies (python -m recipes study NAME):"] + [
        f"#   {name.ljust(width)}  {kind:<8}  presets: {', '.join(study['presets'])}  "
        f"{study['title']}" for name, kind, study in found]
