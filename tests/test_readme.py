"""The README's API example runs as written."""

import os
import re

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_readme_python_example_runs(tmp_path, monkeypatch):
    with open(README, encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)  # it saves a file
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["result"].solved
    assert (namespace["same"].params == namespace["net"].params).all()
    # the family-trees lines: the preset's two phases run, and the net learns the facts (the
    # error alone does not tell: with the letter's settings every output sinks to 0.2 and the
    # error halves too, while not one fact is right)
    assert namespace["fit"].n_sweeps == 1500
    trees, tree = namespace["trees"], namespace["tree"]
    assert trees.correct(tree.predict(trees.X), trees.T).mean() >= 0.95
