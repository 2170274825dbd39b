"""The packages are layered, with no import cycle between them:

    supervisors  <-  wscore  <-  observe  <-  actors  <-  wsup (server assembly, CLI, tools)

supervisors/ is a reusable OTP library that knows nothing of WebSockets;
wscore/ is the protocol core and knows no actors; actors/ knows no server."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ["supervisors", "wscore", "observe", "actors", "wsup"]


def imports_of(package: str) -> set[str]:
    found = set()
    for root, _dirs, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(root, name)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found & set(LAYERS)


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_only_the_layers_below_it(package):
    below = set(LAYERS[:LAYERS.index(package)])
    assert imports_of(package) - {package} <= below, f"{package} imports {imports_of(package) - {package} - below}"
