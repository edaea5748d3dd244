"""The layers of `bot/` hold, as `bot/__init__.py` draws them: nothing imports upward, no
module takes part in an import cycle, cogs never import each other, and only the Discord side
imports discord and only storage/ a database driver. An `ast` scan of every import in the
product, also those inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("bot", "cogs", "storage")

# Lower layers first; a module imports only from its own layer or the ones before it.
# `model` and `runtime` stand side by side and do not import each other.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("config", ("bot.config", "storage.url", "storage.errors")),  # leaves the settings parse
    ("storage", ("storage",)),
    ("model", ("bot.model",)),
    ("runtime", ("bot.runtime",)),
    ("policy", ("bot.policy",)),
    ("memory", ("bot.memory",)),
    ("engine", ("bot.engine",)),
    ("app", ("bot.app",)),
    ("client", ("bot.client",)),
    ("cogs", ("cogs",)),
    ("entry", ("bot.startup", "bot.health", "bot.logs", "bot.__main__", "bot")),
]
SIDE_BY_SIDE = {frozenset({"model", "runtime"})}
DISCORD_SIDE = {"client", "cogs", "entry"}
DRIVERS = ("aiosqlite", "asyncpg", "sqlite3")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports_of(path: Path, name: str) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def layer_of(module: str) -> int:
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS and bot/__init__.py"
    return best


def project_graph() -> dict[str, set[str]]:
    modules = product_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {
            target for target in imports_of(path, name) if target in modules and target != name
        }
    return graph


def test_every_module_is_in_a_layer_and_imports_only_downward() -> None:
    upward = []
    for module, targets in project_graph().items():
        own = layer_of(module)
        for target in targets:
            theirs = layer_of(target)
            beside = frozenset({LAYERS[own][0], LAYERS[theirs][0]}) in SIDE_BY_SIDE
            if theirs > own or beside:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycle() -> None:
    graph = project_graph()
    cycles = [sorted(component) for component in strongly_connected(graph) if len(component) > 1]
    assert not cycles, cycles


def test_cogs_never_import_each_other() -> None:
    graph = project_graph()
    crossing = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith("cogs.")
        for target in targets
        if target.startswith("cogs")
    ]
    assert not crossing, crossing


def test_only_the_discord_side_imports_discord_and_only_storage_a_driver() -> None:
    found = []
    for name, path in product_modules().items():
        layer = LAYERS[layer_of(name)][0]
        for target in imports_of(path, name):
            top = target.split(".")[0]
            if top == "discord" and layer not in DISCORD_SIDE:
                found.append(f"{name} imports {target}")
            if top in DRIVERS and layer != "storage":
                found.append(f"{name} imports {target}")
    assert not found, found


def test_the_layer_map_in_bot_init_names_every_layer() -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "bot" / "__init__.py").read_text())) or ""
    for layer, _ in LAYERS:
        if layer != "entry":
            assert layer in doc, f"bot/__init__.py's docstring does not draw the {layer} layer"


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components
